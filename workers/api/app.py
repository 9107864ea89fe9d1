"""The producer API: submit, follow, cancel and retry jobs; read cards; health.

``/v1/*`` needs ``Authorization: Bearer <token>`` with a token of ``api.tokens``; the jobs
board and job logs need a token too unless ``ops.public_board`` (``workers.api.auth``);
``/oembed``, ``/healthz``, ``/readyz``, ``/metrics`` and ``/docs`` do not.

Every route is in the OpenAPI document with an operation id, a tag, and a declared response
for its success and for each refusal (``ErrorResponse``), raw ones included (a card's stored
bytes are declared as the ``Card`` schema, pages and metrics by media type);
``tests/test_api_contract.py`` walks the document. The API reads Redis through a job store
that does not retry (``JobStore.without_retries``): Redis down is a 503 at once, with
Retry-After, not a request held for ``cluster.redis_outage_s``.

Two pure ASGI middlewares wrap everything: :class:`~workers.api.bodylimit.BodyLimit`
(``api.max_body_bytes``, chunked bodies included, before any parsing or token check) and
:class:`~workers.api.headers.SecurityHeaders` (CSP, frame-ancestors, nosniff). ``/docs`` is
Swagger UI from local files (``workers.api.docs``); ReDoc is off.
"""

from __future__ import annotations

import logging
import re
from datetime import UTC, datetime
from typing import Annotated, Any
from urllib.parse import urlsplit

from fastapi import Depends, FastAPI, Path, Query, Response
from fastapi.responses import JSONResponse
from pydantic import ValidationError

from pipeline.core.card import Card, EventRef
from pipeline.core.errors import ErrorCode, RecastError
from pipeline.core.job import JobStatus, utcnow
from pipeline.core.redact import public_url
from pipeline.core.settings import Settings
from pipeline.core.stage import Queue
from pipeline.engine.distributed.jobstore import JobStore
from pipeline.publish.events import EventIndex, entry_for, index_key
from pipeline.publish.keys import card_key
from pipeline.publish.oembed import oembed_response
from pipeline.storage import Storage, open_storage
from workers.api import cursor as cursors
from workers.api import docs, errors
from workers.api.auth import TokenCheck, Tokens
from workers.api.bodylimit import BodyLimit
from workers.api.clips import install as install_clips
from workers.api.headers import SecurityHeaders
from workers.api.models import (
    CARD_ID_PATTERN,
    JOB_ID_PATTERN,
    SLUG_PATTERN,
    Health,
    JobPage,
    JobView,
    OEmbed,
    Ready,
    RetryBatch,
    SubmitRequest,
    SubmitResponse,
    SubmittedJob,
    refusals,
)
from workers.api.ops import install as install_ops
from workers.api.poster import install as install_poster
from workers.producer import Producer

log = logging.getLogger("recast.api")

TAGS: list[dict[str, Any]] = [
    {"name": "jobs", "description": "Submit URLs; follow, cancel and retry jobs (bearer token)."},
    {"name": "cards", "description": "Published cards and event indexes; oEmbed (open)."},
    {"name": "ops", "description": "Health, readiness and Prometheus metrics (open)."},
    {"name": "board", "description": "The jobs board, for people (token or login cookie)."},
    {"name": "docs", "description": "This page: Swagger UI from the API's own files."},
]

JobId = Annotated[str, Path(pattern=JOB_ID_PATTERN, description="a job id (j + 20 hex)")]
CardId = Annotated[str, Path(pattern=CARD_ID_PATTERN)]
EventSlug = Annotated[str, Path(pattern=SLUG_PATTERN)]


def create_api(settings: Settings, producer: Producer | None = None) -> FastAPI:
    """The API; without ``producer``, one whose job store fails fast while Redis is down."""
    api = FastAPI(
        title="Recast producer API",
        version="1",
        description="Queue recordings for publication, follow them, read their cards.",
        openapi_tags=TAGS,
        docs_url=None,
        redoc_url=None,
        swagger_ui_oauth2_redirect_url=None,
    )
    errors.install(api)
    docs.install(api)
    # Added last, so outermost: SecurityHeaders only adds response headers; BodyLimit wraps
    # everything that can read a body.
    api.add_middleware(BodyLimit, max_bytes=settings.api.max_body_bytes)
    api.add_middleware(SecurityHeaders)
    state: dict[str, Any] = {"producer": producer}

    def get_producer() -> Producer:
        if state["producer"] is None:
            store = JobStore.without_retries(settings.cluster)
            state["producer"] = Producer(settings, store=store)
        current: Producer = state["producer"]
        return current

    def storage() -> Storage:
        if "storage" not in state:
            state["storage"] = open_storage(settings)
        current: Storage = state["storage"]
        return current

    tokens = Tokens(settings.api.tokens)
    auth = [Depends(TokenCheck(tokens))]
    ops = install_ops(api, settings, tokens, get_producer)  # /metrics, /board
    install_clips(api, settings, auth, get_producer, storage)  # POST /v1/cards/{id}/clips
    install_poster(api, settings, auth, storage)  # POST /v1/cards/{id}/poster

    def job_or_404(job_id: str) -> JobView:
        record = get_producer().get(job_id)
        if record is None:
            raise RecastError(ErrorCode.REQUEST_NOT_FOUND, f"There is no job {job_id}.")
        return JobView.of(record)

    @api.post(
        "/v1/jobs",
        status_code=202,
        dependencies=auth,
        tags=["jobs"],
        operation_id="submitJobs",
        summary="Submit URLs",
        responses=refusals(401, 409, 413, 422, 503),
    )
    def submit(body: SubmitRequest) -> SubmitResponse:
        """Queue one job per URL and answer at once; nothing is fetched in the request.

        Each URL must pass the URL policy first (scheme, credentials, a host resolving to
        allowed addresses; one refusal refuses the request, nothing is created). A worker then
        looks each URL up: a single video runs under the id returned here; a playlist's job
        becomes the parent of one job per entry, listed in its ``expansion.children`` once
        made (the parent then succeeds without running a stage). The same URL, event and
        options again give the existing job (``new`` false) unless ``force``.
        """
        if len(body.sources) > settings.api.max_urls:
            raise RecastError(ErrorCode.REQUEST_TOO_LARGE, "Too many URLs in one request.")
        submitted = get_producer().submit(
            body.sources,
            event=body.event,
            priority=body.priority,
            options=dict(body.options),
            callback_url=body.callback_url,
            force=body.force,
            allow_local=False,
        )
        return SubmitResponse(
            jobs=[
                SubmittedJob(
                    id=s.record.id,
                    source=public_url(s.record.state.spec.source, keep_query=True),
                    status=s.record.state.status,
                    new=s.created,
                    url=f"/v1/jobs/{s.record.id}",
                )
                for s in submitted
            ]
        )

    @api.post(
        "/v1/jobs/retry",
        dependencies=auth,
        tags=["jobs"],
        operation_id="retryFailedJobs",
        summary="Retry failed jobs by error code",
        responses=refusals(401, 413, 422, 503),
    )
    def retry_batch(error: Annotated[ErrorCode, Query()]) -> RetryBatch:
        """Retry every failed job whose error has this code; returns their ids."""
        return RetryBatch(retried=get_producer().retry_failed(error))

    @api.get(
        "/v1/jobs/{job_id}",
        dependencies=auth,
        tags=["jobs"],
        operation_id="getJob",
        summary="Get a job",
        responses=refusals(401, 404, 422, 503),
    )
    def get_job(job_id: JobId) -> JobView:
        """The job's status, progress and stages; for a submitted URL also ``expansion``
        (a playlist's entries' job ids in ``expansion.children``)."""
        return job_or_404(job_id)

    @api.get(
        "/v1/jobs",
        dependencies=auth,
        tags=["jobs"],
        operation_id="listJobs",
        summary="List jobs",
        responses=refusals(401, 422, 503),
    )
    def list_jobs(
        state: JobStatus | None = None,
        event: Annotated[str | None, Query(pattern=SLUG_PATTERN)] = None,
        since: datetime | None = None,
        cursor: Annotated[
            str | None,
            Query(max_length=cursors.MAX_CURSOR_CHARS, description="a page's next_cursor"),
        ] = None,
        limit: Annotated[int | None, Query(ge=1, le=1000)] = None,
    ) -> JobPage:
        """Jobs, newest first. Pass ``next_cursor`` back as ``cursor`` for the next page: it
        is opaque and stable (jobs submitted meanwhile do not shift it); null on the last
        page. A cursor the API did not give out is a 422 (``request.invalid``, detail type
        ``cursor_invalid``)."""
        after = cursors.decode(cursor) if cursor is not None else None
        if since is not None and since.tzinfo is None:
            since = since.replace(tzinfo=UTC)
        page = get_producer().list_jobs(
            status=state,
            event=event,
            since=since,
            after=after,
            limit=limit or settings.api.page_size,
        )
        next_cursor = cursors.encode(page.next) if page.next is not None else None
        return JobPage(jobs=[JobView.of(r) for r in page.jobs], next_cursor=next_cursor)

    @api.post(
        "/v1/jobs/{job_id}/cancel",
        status_code=202,
        dependencies=auth,
        tags=["jobs"],
        operation_id="cancelJob",
        summary="Cancel a job",
        responses=refusals(401, 404, 409, 413, 422, 503),
    )
    def cancel(job_id: JobId) -> JobView:
        """Revoke the job's queued tasks and stop its running stage within seconds."""
        job_or_404(job_id)
        return JobView.of(get_producer().cancel(job_id))

    @api.post(
        "/v1/jobs/{job_id}/retry",
        status_code=202,
        dependencies=auth,
        tags=["jobs"],
        operation_id="retryJob",
        summary="Retry a job",
        responses=refusals(401, 404, 409, 413, 422, 503),
    )
    def retry(job_id: JobId) -> JobView:
        """Run a failed or cancelled job again from where it failed, keeping what succeeded
        (a URL whose expansion failed is looked up again)."""
        job_or_404(job_id)
        return JobView.of(get_producer().retry(job_id))

    @api.get(
        "/v1/cards/{card_id}",
        dependencies=auth,
        tags=["cards"],
        operation_id="getCard",
        summary="Get a card",
        response_model=Card,
        responses=refusals(401, 404, 422),
    )
    def get_card(card_id: CardId) -> Response:
        """The card's ``card.json`` as published (docs/card.schema.json), byte for byte."""
        data = storage().get_bytes(card_key(card_id))
        if data is None:
            raise RecastError(ErrorCode.REQUEST_NOT_FOUND, f"There is no card {card_id}.")
        return Response(data, media_type="application/json")

    @api.get(
        "/v1/events/{slug}/cards",
        dependencies=auth,
        tags=["cards"],
        operation_id="listEventCards",
        summary="List an event's cards",
        response_model=EventIndex,
        responses=refusals(401, 404, 422, 503),
    )
    def event_cards(slug: EventSlug) -> Response:
        """The cards of one event, newest first: the published ``events/<slug>.json`` as it
        is, else the same index made from the event's jobs' cards."""
        index = storage().get_bytes(index_key(slug))
        if index is not None:
            return Response(index, media_type="application/json")
        page = get_producer().list_jobs(event=slug, limit=1000)
        if not page.jobs:
            raise RecastError(ErrorCode.REQUEST_NOT_FOUND, f"There is no event {slug}.")
        return JSONResponse(_index_of(storage(), slug, [r.state.card_id for r in page.jobs]))

    @api.get(
        "/oembed",
        tags=["cards"],
        operation_id="oembed",
        summary="oEmbed of a card",
        response_model=OEmbed,
        responses=refusals(404, 422, 501),
    )
    def oembed(
        url: Annotated[str, Query(min_length=1, max_length=2048)],
        format: Annotated[str, Query(pattern=r"^(json|xml)$")] = "json",
        maxwidth: Annotated[int | None, Query(ge=1, le=10000)] = None,
        maxheight: Annotated[int | None, Query(ge=1, le=10000)] = None,
    ) -> JSONResponse:
        """oEmbed for a card's watch page (or any link with the card's id in its path)."""
        if format != "json":
            return errors.error_response(
                ErrorCode.REQUEST_INVALID, "Only the json format is offered.", status=501
            )
        card = _card_in(url, storage())
        if card is None:
            raise RecastError(ErrorCode.REQUEST_NOT_FOUND, "No card is published at that URL.")
        watch = storage().url_for(f"{card.id}/watch.html")
        data = oembed_response(card, watch, settings.publish)
        _fit(data, maxwidth, maxheight)
        return JSONResponse(data)

    @api.get(
        "/healthz",
        tags=["ops"],
        operation_id="healthz",
        summary="Health",
        response_model=Health,
        responses={503: {"model": Health, "description": "Redis or a queue's worker is missing."}},
    )
    def healthz() -> JSONResponse:
        """Redis reachable and a live worker consuming each queue (503 otherwise, at once);
        ``alerts`` lists what is worth a page without changing the status."""
        store = get_producer().store
        redis_ok = store.ping()
        workers = store.live_workers() if redis_ok else {}
        queues: dict[str, list[str]] = {q.value: [] for q in Queue}
        for hostname, consumed in workers.items():
            for queue in consumed:
                if queue in queues:
                    queues[queue].append(hostname)
        ok = redis_ok and all(queues.values())
        body = Health(ok=ok, redis=redis_ok, queues=queues, alerts=ops.alerts(redis_ok))
        return JSONResponse(body.model_dump(), status_code=200 if ok else 503)

    @api.get(
        "/readyz",
        tags=["ops"],
        operation_id="readyz",
        summary="Readiness",
        response_model=Ready,
        responses={503: {"model": Ready, "description": "Redis is unreachable."}},
    )
    def readyz() -> JSONResponse:
        """Ready to take requests: Redis reachable (503 otherwise, at once)."""
        ready = get_producer().store.ping()
        return JSONResponse({"ready": ready}, status_code=200 if ready else 503)

    return api


def _index_of(storage: Storage, slug: str, card_ids: list[str | None]) -> dict[str, Any]:
    """An event index (the shape of ``events/<slug>.json``) of these cards, in this order."""
    now = utcnow()
    event = EventRef(name=slug, slug=slug)
    entries = []
    for card_id in card_ids:
        data = storage.get_bytes(card_key(card_id)) if card_id else None
        if data is None:
            continue
        try:
            card = Card.model_validate_json(data)
        except ValidationError:
            log.warning("card %s does not match the card schema; left out", card_id)
            continue
        if card.event is not None:
            event = card.event
        entries.append(entry_for(storage, card.model_copy(update={"event": event}), now, None))
    index = EventIndex(event=event, updated=now, cards=entries)
    return index.model_dump(mode="json")


def _card_in(url: str, storage: Storage) -> Card | None:
    try:
        path = urlsplit(url).path
    except ValueError:
        return None
    segments = [s for s in path.split("/") if s][-6:]
    for segment in reversed(segments):
        if not _is_card_id(segment):
            continue
        data = storage.get_bytes(card_key(segment))
        if data is not None:
            return Card.model_validate_json(data)
    return None


def _is_card_id(text: str) -> bool:
    return re.fullmatch(CARD_ID_PATTERN, text) is not None and "." not in text[:1]


def _fit(data: dict[str, Any], maxwidth: int | None, maxheight: int | None) -> None:
    width, height = int(data.get("width") or 0), int(data.get("height") or 0)
    if not width or not height:
        return
    scale = min(
        1.0,
        (maxwidth / width) if maxwidth else 1.0,
        (maxheight / height) if maxheight else 1.0,
    )
    if scale < 1.0:
        data["width"], data["height"] = max(1, round(width * scale)), max(1, round(height * scale))
        data["html"] = (
            str(data["html"])
            .replace(f'width="{width}"', f'width="{data["width"]}"')
            .replace(f'height="{height}"', f'height="{data["height"]}"')
        )
