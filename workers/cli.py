"""``recast`` commands of the Celery executor.

For producers: ``recast submit URL... [--event] [--priority] [--wait]``, ``recast jobs
[--state] [--event] [--limit]``, ``recast job ID [--follow]`` (live progress bars per stage),
``recast cancel ID``, ``recast retry ID`` (or ``--error CODE`` for every failed job with that
code), ``recast health [--worker NAME]`` for container health checks. They talk to Redis and
the broker directly, like the API does; with ``--api URL`` (or ``RECAST_API_URL``) and a token
(``--token``, ``RECAST_API_TOKEN``) they go through the producer API instead
(:mod:`workers.apiclient`) and print the same, with the same exit statuses.

``--wait`` and ``--follow`` are the same option on ``submit`` and ``job``: poll until every job
has ended, with progress bars on a terminal. Exit statuses (``pipeline.cli.conventions``): 0
when every job succeeded (or, for ``submit`` without ``--wait``, was queued); 1 when one failed
or was cancelled; 2 when every failure was the input's (``INPUT_CODES``) or the command line
was wrong; 3 for ``recast job ID`` on a job that has not finished yet. A URL that turns out
to be a playlist is a parent job that succeeds once a worker has made its entries' jobs:
``recast job`` and following take those in too (``entries`` in JSON) and answer for them.

For upkeep: ``recast prune [--older-than DURATION] [--dry-run]`` removes old finished jobs
from Redis and their workspaces (:mod:`pipeline.ops.retention`; workers also prune on their
own); without Redis it judges only the workspaces of ``recast process`` jobs.

For running it: ``recast worker -Q QUEUES`` (a Celery worker, prefork pool) and ``recast api``
(the producer API under uvicorn). They run until stopped, log JSON lines, and refuse
``--json``.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol

from rich.console import Console
from rich.table import Table

from pipeline.cli import conventions
from pipeline.cli.conventions import (
    EXIT_BAD_INPUT,
    EXIT_FAILED,
    EXIT_NOT_FINISHED,
    EXIT_OK,
    emit_json,
)
from pipeline.cli.main import StageBars
from pipeline.core import logs
from pipeline.core.errors import INPUT_CODES, TRANSIENT_CODES, ConfigError, ErrorCode, RecastError
from pipeline.core.job import JobStatus
from pipeline.core.settings import CONFIG_FILE_ENV, Settings, load_settings
from pipeline.core.stage import Queue
from pipeline.publish.ownership import FORCE_OPTION
from workers.api.models import JOB_ID_PATTERN, SLUG_PATTERN, ErrorBody, JobView

FINAL = frozenset({JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED})
ENDED_BADLY = frozenset({JobStatus.FAILED, JobStatus.CANCELLED})
POLL_S = 0.5
INPUT_CODE_VALUES = frozenset(code.value for code in INPUT_CODES)
TRANSIENT_CODE_VALUES = frozenset(code.value for code in TRANSIENT_CODES)


def _settings(args: argparse.Namespace) -> Settings:
    if args.config:
        # Worker pool processes and anything started from here read the same file.
        os.environ[CONFIG_FILE_ENV] = str(Path(args.config).resolve())
    return load_settings(args.config)


def _producer(args: argparse.Namespace) -> Any:
    from workers.producer import Producer

    return Producer(_settings(args))


class Jobs(Protocol):
    """What the producer commands do, through Redis (:class:`RedisJobs`) or the API
    (:class:`workers.apiclient.ApiClient`), in the API's terms (:class:`JobView`)."""

    def submit(
        self,
        sources: list[str],
        *,
        event: str | None,
        priority: int,
        force: bool,
        options: dict[str, Any],
    ) -> list[tuple[JobView, bool]]: ...

    def get(self, job_id: str) -> JobView: ...

    def list_jobs(
        self, *, status: JobStatus | None, event: str | None, limit: int
    ) -> list[JobView]: ...

    def cancel(self, job_id: str) -> JobView: ...

    def retry(self, job_id: str) -> JobView: ...

    def retry_failed(self, code: ErrorCode) -> list[str]: ...


class RedisJobs:
    """The producer commands straight on Redis and the broker (``workers.producer``)."""

    def __init__(self, producer: Any):
        self.producer = producer

    def submit(
        self,
        sources: list[str],
        *,
        event: str | None,
        priority: int,
        force: bool,
        options: dict[str, Any],
    ) -> list[tuple[JobView, bool]]:
        submitted = self.producer.submit(
            sources,
            event=event,
            priority=priority,
            force=force,
            options=options or None,
            allow_local=self.producer.settings.ingest.allow_local_files,
        )
        return [(JobView.of(s.record), bool(s.created)) for s in submitted]

    def get(self, job_id: str) -> JobView:
        record = self.producer.get(job_id)
        if record is None:
            raise RecastError(ErrorCode.REQUEST_NOT_FOUND, f"There is no job {job_id}.")
        return JobView.of(record)

    def list_jobs(
        self, *, status: JobStatus | None, event: str | None, limit: int
    ) -> list[JobView]:
        page = self.producer.list_jobs(status=status, event=event, limit=limit)
        return [JobView.of(record) for record in page.jobs]

    def cancel(self, job_id: str) -> JobView:
        return JobView.of(self.producer.cancel(job_id))

    def retry(self, job_id: str) -> JobView:
        return JobView.of(self.producer.retry(job_id))

    def retry_failed(self, code: ErrorCode) -> list[str]:
        return list(self.producer.retry_failed(code))


@contextlib.contextmanager
def _jobs(args: argparse.Namespace) -> Iterator[Jobs]:
    if args.api_url is None:
        yield RedisJobs(_producer(args))
        return
    from workers.apiclient import ApiClient

    if not args.api_token:
        raise RecastError(
            ErrorCode.REQUEST_UNAUTHORIZED,
            f"No token for the API at {args.api_url}: set {conventions.API_TOKEN_ENV} "
            "(or give --token).",
        )
    with ApiClient(args.api_url, args.api_token) as client:
        yield client


def _error(body: ErrorBody | None) -> dict[str, Any] | None:
    if body is None:
        return None
    return {
        "code": body.code,
        "message": body.message,
        "transient": body.code in TRANSIENT_CODE_VALUES,
        "hint": body.hint,
    }


def _summary(view: JobView) -> dict[str, Any]:
    """A job as the commands print it in JSON, the same through Redis or the API."""
    return {
        "id": view.id,
        "source": view.source,
        "event": view.event,
        "priority": view.priority,
        "status": str(view.status),
        "card_id": view.card_id,
        "stages": {name: str(stage.status) for name, stage in view.stages.items()},
        "error": _error(view.error),
        "created_at": view.created_at.isoformat(),
        "updated_at": view.updated_at.isoformat(),
        "expansion": view.expansion.model_dump(mode="json") if view.expansion else None,
    }


def _children(view: JobView) -> list[str]:
    """The jobs of a playlist's entries, once a worker has made them."""
    return list(view.expansion.children) if view.expansion is not None else []


def _entries(jobs: Jobs, views: list[JobView]) -> list[JobView]:
    """The jobs of the entries of the playlists among ``views``, as they are now."""
    known = {view.id for view in views}
    found: list[JobView] = []
    for view in views:
        for child in _children(view):
            if child not in known:
                known.add(child)
                found.append(jobs.get(child))
    return found


def _exit_for(views: list[JobView]) -> int:
    """0 all succeeded; 1 one failed or was cancelled (2 when every such error is the input's);
    3 none ended badly but one has not finished."""
    ended_badly = [v for v in views if v.status in ENDED_BADLY]
    if ended_badly:
        codes = [v.error.code for v in ended_badly if v.error is not None]
        all_input = len(codes) == len(ended_badly) and all(c in INPUT_CODE_VALUES for c in codes)
        return EXIT_BAD_INPUT if all_input else EXIT_FAILED
    if any(v.status not in FINAL for v in views):
        return EXIT_NOT_FINISHED
    return EXIT_OK


def _follow(jobs: Jobs, job_ids: list[str], console: Console, bars: bool) -> list[JobView]:
    """Poll until every job has ended, and the jobs of a playlist's entries too (a parent
    ends once they are made); the given jobs first, then the entries' jobs."""
    following = list(job_ids)
    done: dict[str, JobView] = {}
    with StageBars(console, enabled=bars) as progress:
        while True:
            for job_id in following:  # grows while it is walked: entries are followed too
                if job_id in done:
                    continue
                view = jobs.get(job_id)
                for name, stage in view.stages.items():
                    label = name if len(following) == 1 else f"{job_id} {name}"
                    detail = stage.error.code if stage.error else stage.detail
                    progress.show(label, stage.progress, f"{stage.status}: {detail}")
                if view.status in FINAL:
                    done[job_id] = view
                    following.extend(c for c in _children(view) if c not in following)
            if len(done) == len(following):
                return [done[j] for j in following]
            time.sleep(POLL_S)


def _say(view: JobView, *, stages: bool = False, note: str = "") -> None:
    """A job for people: a line, then its stages, card and error."""
    event = f"  event {view.event}" if view.event else ""
    lines = [f"{view.id}  {view.status}  {view.source}{event}{note}"]
    if stages:
        width = max(map(len, view.stages), default=0)
        for name, stage in view.stages.items():
            detail = f"{stage.error.code}: {stage.error.message}" if stage.error else stage.detail
            line = f"  {name:<{width}}  {stage.status:<9} {stage.progress:5.1f}%  {detail}"
            lines.append(line[:160].rstrip())
    if view.expansion is not None and view.expansion.playlist:
        lines.append(f"  a playlist of {len(view.expansion.children)} entries")
    elif view.expansion is not None and view.expansion.state == "expanding":
        lines.append("  waiting for a worker to look the URL up (a playlist: one job per entry)")
    if view.card_id:
        lines.append(f"  card {view.card_id}")
    if view.error is not None:
        lines.append(f"  error {view.error.code}: {view.error.message}")
        if view.error.hint:
            lines.append(f"    {view.error.hint}")
    sys.stdout.write("\n".join(lines) + "\n")


def _show(view: JobView, json_mode: bool) -> None:
    if json_mode:
        emit_json(_summary(view))
    else:
        _say(view)


def cmd_submit(args: argparse.Namespace) -> int:
    console = Console(stderr=True)
    with _jobs(args) as jobs:
        submitted = jobs.submit(
            args.sources,
            event=args.event,
            priority=args.priority,
            force=args.force,
            options={FORCE_OPTION: True} if args.replace_card else {},
        )
        new = {view.id: created for view, created in submitted}
        views = [view for view, _ in submitted]
        entries: list[JobView] = []
        if args.wait:
            bars = console.is_terminal and not args.json
            followed = _follow(jobs, [v.id for v in views], console, bars=bars)
            views, entries = followed[: len(views)], followed[len(views) :]
    if args.json:
        shown: dict[str, Any] = {"jobs": [_summary(v) | {"new": new[v.id]} for v in views]}
        if entries:
            shown["entries"] = [_summary(v) for v in entries]
        emit_json(shown)
    else:
        for view in views:
            _say(view, note="" if new[view.id] else "  (submitted before)")
        for view in entries:
            _say(view, note="  (a playlist's entry)")
    return _exit_for(views + entries) if args.wait else EXIT_OK


def cmd_jobs(args: argparse.Namespace) -> int:
    status = JobStatus(args.state) if args.state else None
    with _jobs(args) as jobs:
        views = jobs.list_jobs(status=status, event=args.event, limit=args.limit)
    if args.json:
        emit_json({"jobs": [_summary(v) for v in views]})
        return EXIT_OK
    table = Table("id", "status", "event", "source", "updated")
    for view in views:
        table.add_row(
            view.id,
            str(view.status),
            view.event or "",
            view.source,
            view.updated_at.isoformat(timespec="seconds"),
        )
    Console().print(table)
    return EXIT_OK


def cmd_job(args: argparse.Namespace) -> int:
    with _jobs(args) as jobs:
        view = jobs.get(args.job_id)
        if args.wait:
            console = Console(stderr=True)
            bars = console.is_terminal and not args.json
            view, *entries = _follow(jobs, [view.id], console, bars=bars)
        else:
            entries = _entries(jobs, [view])
    if args.json:
        progress = {name: stage.progress for name, stage in view.stages.items()}
        shown = _summary(view) | {"progress": progress}
        if entries:
            shown["entries"] = [_summary(entry) for entry in entries]
        emit_json(shown)
    else:
        _say(view, stages=True)
        for entry in entries:
            _say(entry, note="  (a playlist's entry)")
    return _exit_for([view, *entries])


def cmd_cancel(args: argparse.Namespace) -> int:
    with _jobs(args) as jobs:
        view = jobs.cancel(args.job_id)
    _show(view, args.json)
    return EXIT_OK


def cmd_retry(args: argparse.Namespace) -> int:
    if bool(args.error) == bool(args.job_id):
        raise conventions.UsageError("give a job id or --error CODE (one of them)")
    with _jobs(args) as jobs:
        if args.error:
            retried = jobs.retry_failed(ErrorCode(args.error))
        else:
            view = jobs.retry(args.job_id)
    if args.error:
        if args.json:
            emit_json({"retried": retried})
        else:
            sys.stdout.write(f"retried {len(retried)} job(s) failed with {args.error}\n")
            sys.stdout.write("".join(f"  {job_id}\n" for job_id in retried))
        return EXIT_OK
    _show(view, args.json)
    return EXIT_OK


def cmd_worker(args: argparse.Namespace) -> int:
    from workers.app import get_app
    from workers.config import prefetch_for

    settings = _settings(args)
    queues = [q.strip() for q in args.queues.split(",") if q.strip()]
    unknown = [q for q in queues if q not in {item.value for item in Queue}]
    if unknown or not queues:
        raise ConfigError(f"unknown queue(s) {unknown}; choose from {[q.value for q in Queue]}")
    hostname = args.hostname or f"{'+'.join(queues)}@{socket.gethostname()}"
    argv = [
        "--quiet",  # no startup banner: every line a worker prints is a JSON log line
        "worker",
        "--pool=prefork",
        f"--queues={','.join(queues)}",
        f"--concurrency={args.concurrency or settings.cluster.concurrency}",
        f"--prefetch-multiplier={prefetch_for(queues, settings)}",
        f"--hostname={hostname}",
        f"--loglevel={settings.log.level}",
        "--task-events",
        "--without-mingle",
        "--without-gossip",
    ]
    # JSON lines from the first line on, Python warnings included (Celery's start-up checks
    # warn before its own logging set-up runs).
    logs.configure(settings.log.level, settings.log.json_lines, root_level=settings.log.level)
    get_app().worker_main(argv)
    return EXIT_OK


def cmd_api(args: argparse.Namespace) -> int:
    import uvicorn

    from workers.api import create_api

    settings = _settings(args)
    if not settings.api.tokens:
        raise ConfigError("api.tokens is empty: set at least one bearer token")
    # uvicorn's own loggers too, as JSON lines (log_config=None: uvicorn leaves logging alone)
    logs.configure(settings.log.level, settings.log.json_lines, root_level=settings.log.level)
    uvicorn.run(
        create_api(settings),
        host=args.host or settings.api.host,
        port=args.port or settings.api.port,
        log_level=settings.log.level.lower(),
        log_config=None,
    )
    return EXIT_OK


def cmd_health(args: argparse.Namespace) -> int:
    """Exit 0 when Redis answers (and, with --worker, that worker has announced itself)."""
    if args.api_url is None:
        from pipeline.engine.distributed.jobstore import JobStore

        store = JobStore(_settings(args).cluster)
        redis_ok = store.ping()
        live = store.live_workers() if redis_ok else {}
    else:
        from workers.apiclient import ApiClient

        with ApiClient(args.api_url, args.api_token) as client:
            health = client.health()
        redis_ok, live = health.redis, {}
        for queue, hostnames in health.queues.items():
            for hostname in hostnames:
                live.setdefault(hostname, []).append(queue)
    if not redis_ok:
        raise RecastError(ErrorCode.SERVICE_UNAVAILABLE, "Redis is unreachable.")
    if args.worker and args.worker not in live:
        raise RecastError(
            ErrorCode.SERVICE_UNAVAILABLE, f"Worker {args.worker} has not announced itself."
        )
    if args.json:
        emit_json({"redis": True, "workers": live})
    else:
        described = ", ".join(f"{name} ({', '.join(queues)})" for name, queues in live.items())
        sys.stdout.write(f"Redis answers; {len(live)} live worker(s){': ' if live else ''}")
        sys.stdout.write(f"{described}\n")
    return EXIT_OK


def cmd_prune(args: argparse.Namespace) -> int:
    """Prune finished jobs and workspaces older than ``--older-than`` (``[retention]``)."""
    from pipeline.ops.retention import describe, prune

    report = prune(_settings(args), args.older_than, dry_run=args.dry_run)
    if conventions.wants_json(args):
        emit_json(report.as_dict())
    else:
        if not report.redis:
            sys.stdout.write("Redis does not answer: only recast process workspaces judged\n")
        sys.stdout.write(f"{describe(report)}\n")
    return EXIT_OK


def _duration(text: str) -> float:
    from pipeline.ops.retention import parse_duration

    try:
        return parse_duration(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from error


def _positive(text: str) -> int:
    try:
        number = int(text)
    except ValueError:
        number = 0
    if number < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number above 0")
    return number


def _job_id(text: str) -> str:
    if re.fullmatch(JOB_ID_PATTERN, text) is None:
        raise argparse.ArgumentTypeError(f"{text!r} is not a job id (j and 20 hex digits)")
    return text


def _slug(text: str) -> str:
    if re.fullmatch(SLUG_PATTERN, text) is None:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not an event slug (lower-case letters, digits and dashes)"
        )
    return text


NO_JSON = "it runs until stopped and logs JSON lines (log.json_lines)"


def register(sub: Any) -> None:
    submit = sub.add_parser("submit", help="queue jobs for the workers (URLs, playlists)")
    submit.add_argument("sources", nargs="+", metavar="URL")
    submit.add_argument("--event", type=_slug, help="the event the recordings belong to (a slug)")
    submit.add_argument("--priority", type=int, default=5, choices=range(10), metavar="0-9")
    submit.add_argument("--force", action="store_true", help="run again even if done before")
    submit.add_argument(
        "--replace-card",
        action="store_true",
        help="replace a card of the same id even if another source published it",
    )
    submit.add_argument(
        "--wait", "--follow", action="store_true", help="follow the jobs until they end"
    )
    conventions.add_json_flag(submit, help="print the jobs as JSON (no progress bars)")
    conventions.add_api_options(submit)
    submit.set_defaults(func=cmd_submit)

    jobs = sub.add_parser("jobs", help="list jobs, newest first")
    jobs.add_argument("--state", choices=[s.value for s in JobStatus])
    jobs.add_argument("--event", type=_slug)
    jobs.add_argument("--limit", type=_positive, default=50, help="at most this many (50)")
    conventions.add_json_flag(jobs, help="print the jobs as JSON")
    conventions.add_api_options(jobs)
    jobs.set_defaults(func=cmd_jobs)

    job = sub.add_parser(
        "job",
        help="show a job (exit 0 succeeded, 1 failed or cancelled, 2 failed on its input, "
        "3 not finished); --follow draws progress bars until it ends",
    )
    job.add_argument("job_id", type=_job_id)
    job.add_argument("--follow", "--wait", dest="wait", action="store_true")
    conventions.add_json_flag(job, help="print the job as JSON")
    conventions.add_api_options(job)
    job.set_defaults(func=cmd_job)

    cancel = sub.add_parser("cancel", help="cancel a queued or running job")
    cancel.add_argument("job_id", type=_job_id)
    conventions.add_json_flag(cancel, help="print the job as JSON")
    conventions.add_api_options(cancel)
    cancel.set_defaults(func=cmd_cancel)

    retry = sub.add_parser("retry", help="retry a failed job from the stage that failed")
    retry.add_argument("job_id", nargs="?", type=_job_id)
    retry.add_argument("--error", choices=[c.value for c in ErrorCode], help="every failed job")
    conventions.add_json_flag(retry, help="print the job (or the retried ids) as JSON")
    conventions.add_api_options(retry)
    retry.set_defaults(func=cmd_retry)

    worker = sub.add_parser("worker", help="run a Celery worker (prefork pool)")
    worker.add_argument("-Q", "--queues", required=True, help="comma-separated queue names")
    worker.add_argument("-c", "--concurrency", type=int, help="pool processes")
    worker.add_argument("-n", "--hostname", help="worker name (default queues@host)")
    conventions.refuse_json(worker, NO_JSON)
    worker.set_defaults(func=cmd_worker)

    health = sub.add_parser("health", help="check Redis (and a worker): exit 0 when healthy")
    health.add_argument("--worker", help="a worker's name, e.g. transcode@host")
    conventions.add_json_flag(health, help="print Redis's state and the live workers as JSON")
    conventions.add_api_options(health)
    health.set_defaults(func=cmd_health)

    prune = sub.add_parser(
        "prune", help="remove finished jobs and their workspaces past an age ([retention])"
    )
    prune.add_argument(
        "--older-than",
        type=_duration,
        metavar="DURATION",
        help="0, 3600, 12h, 30d...: instead of retention.job_ttl_s and workspace_ttl_s",
    )
    prune.add_argument("--dry-run", action="store_true", help="count, remove nothing")
    conventions.add_json_flag(prune, help="print the counts as JSON")
    prune.set_defaults(func=cmd_prune)

    api = sub.add_parser("api", help="serve the producer API (FastAPI, OpenAPI at /docs)")
    api.add_argument("--host")
    api.add_argument("--port", type=int)
    conventions.refuse_json(api, NO_JSON)
    api.set_defaults(func=cmd_api)
