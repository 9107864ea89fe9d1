"""The jobs board: a page the API serves for producers and ops (server-rendered, no build step).

``GET /board`` renders the page (templates ``pipeline/templates/board*.html``): jobs with a
progress bar per stage, filters by state and event, each failure's code, message and the tail
of its stage's log (ffmpeg's or yt-dlp's output among it, from ``pipeline.ops.joblog``), the
queues and alerts, and a chart (inline SVG) of throughput and queue depth over the last hour.
The page polls ``GET /board/fragments`` every ``ops.board_refresh_s`` and swaps the parts it
gets back, rendered by the same templates, so progress moves without a reload.

Reading needs an API token unless ``ops.public_board`` is set (``workers.api.auth``): a
browser logs in with the form ``/board`` answers with (401), which sets the board's HttpOnly
cookie; scripts send ``Authorization: Bearer``. Retry and cancel from the page post to
``/board/jobs/{id}/retry|cancel`` (``workers.api.board_actions``). Pages carry a
Content-Security-Policy whose scripts and styles are allowed by a nonce made per response.
Sources, error messages and log lines show URLs without credentials (``pipeline.core.redact``).
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse
from jinja2 import Environment, PackageLoader, select_autoescape

from pipeline.core.errors import ErrorCode, RecastError
from pipeline.core.job import JobStatus
from pipeline.core.redact import public_text
from pipeline.core.stage import Queue
from pipeline.ops.joblog import read_tails, render_line
from pipeline.ops.opshistory import Sample, throughput
from pipeline.ops.opsview import JobLine, OpsView, Snapshot
from workers.api.auth import SESSION_S, BoardAccess
from workers.api.models import (
    HTML_PAGE,
    JOB_ID_PATTERN,
    SLUG_PATTERN,
    BoardFragments,
    JobLog,
    json_refusals,
    refusals,
)

TAIL_LINES = 30
JOBS_SHOWN = 100
CHART_WINDOW_S = 3600.0
CHART_WIDTH, CHART_HEIGHT = 640, 140
CHART_BUCKETS = 30
MIN_BUCKET_S = 10.0
ACTIONS = {
    JobStatus.QUEUED: ("cancel",),
    JobStatus.RUNNING: ("cancel",),
    JobStatus.FAILED: ("retry",),
    JobStatus.CANCELLED: ("retry",),
    JobStatus.SUCCEEDED: (),
}


@dataclass
class BoardJob:
    line: JobLine
    actions: tuple[str, ...]
    tail: list[str] = field(default_factory=list)


@dataclass
class Chart:
    """The board's chart: throughput (jobs finished per minute) and stages waiting."""

    throughput: str
    depth: str
    max_throughput: float
    max_depth: int
    start: str
    end: str
    points: int


def environment() -> Environment:
    env = Environment(
        loader=PackageLoader("pipeline", "templates"),
        autoescape=select_autoescape(["html"]),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["clock"] = _clock
    return env


def _clock(value: datetime | None) -> str:
    return value.astimezone(UTC).strftime("%H:%M:%S") if value is not None else ""


def chart(samples: list[Sample], width: int = CHART_WIDTH, height: int = CHART_HEIGHT) -> Chart:
    """Equal buckets from the first sample to the last (at most CHART_BUCKETS, none shorter
    than MIN_BUCKET_S): jobs finished per minute in each, and the stages waiting at its end."""
    samples = sorted(samples, key=lambda s: s.time)
    if len(samples) < 2:
        return Chart("", "", 0.0, 0, "", "", len(samples))
    start, end = samples[0].time, samples[-1].time
    span = max(end - start, 1e-3)
    count = max(1, min(CHART_BUCKETS, int(span // MIN_BUCKET_S)))
    finished = throughput(samples[:-1], samples[-1], span, count).buckets
    bucket_s = span / count
    rates = [(start, 0.0)] + [
        (b.end.timestamp(), (b.succeeded + b.failed + b.cancelled) / bucket_s * 60)
        for b in finished
    ]
    depths = [(s.time, sum(s.depth.values())) for s in samples]
    top_rate = max([r for _, r in rates] + [1.0])
    top_depth = max([d for _, d in depths] + [1])

    def points(series: list[tuple[float, Any]], top: float) -> str:
        return " ".join(
            f"{(t - start) / span * width:.1f},{height - v / top * (height - 8):.1f}"
            for t, v in series
        )

    stamp = [datetime.fromtimestamp(t, UTC).strftime("%H:%M") for t in (start, end)]
    return Chart(
        throughput=points(rates, top_rate),
        depth=points(depths, top_depth),
        max_throughput=round(top_rate, 1),
        max_depth=top_depth,
        start=stamp[0],
        end=stamp[1],
        points=len(samples),
    )


_FINISHED = ("succeeded", "failed", "cancelled")


def board_jobs(
    view: OpsView, status: JobStatus | None, event: str | None, limit: int = JOBS_SHOWN
) -> list[BoardJob]:
    """The jobs to show, newest first, with the log tail of each failed stage."""
    page = view.store.list_jobs(status=status, event=event, limit=limit)
    jobs = [BoardJob(JobLine.of(r), ACTIONS[r.state.status]) for r in page.jobs]
    wanted = [(j.line.id, j.line.failed_stage) for j in jobs if j.line.failed_stage]
    tails = read_tails(view.redis, view.store.prefix, wanted, TAIL_LINES)
    for job in jobs:
        if job.line.failed_stage:
            raw = tails.get((job.line.id, job.line.failed_stage), [])
            job.tail = [public_text(render_line(line)) for line in raw]
    return jobs


def known_events(view: OpsView, limit: int = 200) -> list[str]:
    keys = view.store.keys
    scanned = view.redis.scan_iter(match=keys.jobs_by_event_pattern, count=500)
    found = (keys.event_of(k) for k in scanned)
    return sorted({slug for slug in found if slug is not None})[:limit]


def page_csp(nonce: str) -> str:
    """The board's pages: their one inline script and style by nonce, data from this origin."""
    return (
        f"default-src 'none'; script-src 'nonce-{nonce}'; style-src 'nonce-{nonce}'; "
        "img-src 'self' data:; connect-src 'self'; form-action 'self'; base-uri 'none'; "
        "frame-ancestors 'none'"
    )


def render_page(env: Environment, template: str, status: int = 200, **values: Any) -> HTMLResponse:
    """An HTML page of the board with a fresh nonce and its policy; never cached."""
    nonce = secrets.token_urlsafe(18)
    text = env.get_template(template).render(nonce=nonce, **values)
    headers = {"Cache-Control": "no-store", "Content-Security-Policy": page_csp(nonce)}
    return HTMLResponse(text, status_code=status, headers=headers)


def root_of(request: Request) -> str:
    """The API's path prefix behind a proxy (uvicorn's ``root_path``), "" when none."""
    return str(request.scope.get("root_path", "")).rstrip("/")


def login_page(
    env: Environment, request: Request, status: int = 200, message: str = ""
) -> HTMLResponse:
    return render_page(
        env,
        "board_login.html",
        status,
        root=root_of(request),
        message=message,
        session_hours=SESSION_S // 3600,
    )


def router(view: Callable[[], OpsView], access: BoardAccess) -> APIRouter:
    env = environment()
    routes = APIRouter(tags=["board"])

    def parts(
        status: JobStatus | None, event: str | None
    ) -> tuple[Snapshot, list[BoardJob], Chart]:
        current = view()
        snapshot = current.snapshot()
        if not snapshot.redis:
            raise RecastError(ErrorCode.SERVICE_UNAVAILABLE, "Redis is unreachable.")
        jobs = board_jobs(current, status, event)
        return snapshot, jobs, chart(current.samples(CHART_WINDOW_S))

    def context(snapshot: Snapshot, jobs: list[BoardJob], drawn: Chart) -> dict[str, Any]:
        return {
            "snapshot": snapshot,
            "jobs": jobs,
            "chart": drawn,
            "stages": list(view().dag.names),
            "queues": [q.value for q in Queue],
            "updated": _clock(snapshot.time),
        }

    @routes.get(
        "/board",
        response_class=HTMLResponse,
        operation_id="showBoard",
        summary="The jobs board",
        responses={
            401: {"content": HTML_PAGE, "description": "The login form (no token or cookie)."},
            **json_refusals(422, 503),
        },
    )
    def board(
        request: Request,
        state: JobStatus | None = None,
        event: Annotated[str | None, Query(pattern=SLUG_PATTERN)] = None,
    ) -> HTMLResponse:
        """The board's page: jobs, queues, alerts and a chart, filtered by state and event."""
        if not access.allows(request):
            return login_page(env, request, 401)
        snapshot, jobs, drawn = parts(state, event)
        return render_page(
            env,
            "board.html",
            **context(snapshot, jobs, drawn),
            root=root_of(request),
            public=access.public,
            states=[s.value for s in JobStatus],
            events=known_events(view()),
            selected_state=state.value if state else "",
            selected_event=event or "",
            refresh_ms=int(view().settings.ops.board_refresh_s * 1000),
        )

    @routes.get(
        "/board/fragments",
        operation_id="getBoardFragments",
        summary="The board's changing parts",
        response_model=BoardFragments,
        responses=refusals(401, 422, 503),
    )
    def fragments(
        request: Request,
        state: Annotated[JobStatus | None, Query()] = None,
        event: Annotated[str | None, Query(pattern=SLUG_PATTERN)] = None,
    ) -> JSONResponse:
        """The page's changing parts, rendered: rows, summary, chart."""
        access.require(request)
        snapshot, jobs, drawn = parts(state, event)
        values = context(snapshot, jobs, drawn)
        return JSONResponse(
            {
                "rows": env.get_template("board_rows.html").render(**values),
                "summary": env.get_template("board_summary.html").render(**values),
                "chart": env.get_template("board_chart.html").render(**values),
                "updated": values["updated"],
            },
            headers={"Cache-Control": "no-store"},
        )

    @routes.get(
        "/board/jobs/{job_id}/log",
        operation_id="getJobLog",
        summary="A job's log",
        response_model=JobLog,
        responses=refusals(401, 404, 422, 503),
    )
    def job_log(
        request: Request,
        job_id: Annotated[str, Path(pattern=JOB_ID_PATTERN)],
        lines: Annotated[int, Query(ge=1, le=10_000)] = 200,
    ) -> JSONResponse:
        """Every stage's log of a job (JSON lines, oldest first)."""
        access.require(request)
        current = view()
        record = current.store.get(job_id)
        if record is None:
            raise RecastError(ErrorCode.REQUEST_NOT_FOUND, f"There is no job {job_id}.")
        wanted = [(job_id, name) for name in record.state.stages]
        tails = read_tails(current.redis, current.store.prefix, wanted, lines)
        return JSONResponse(
            {
                "job_id": job_id,
                "stages": {
                    stage: [public_text(line) for line in tails[(job_id, stage)]]
                    for _, stage in wanted
                },
            },
            headers={"Cache-Control": "no-store"},
        )

    return routes
