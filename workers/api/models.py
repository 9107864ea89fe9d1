"""Request and response bodies of the producer API (their JSON Schemas are in /openapi.json)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from pipeline.core.job import ErrorInfo, JobStatus, StageStatus
from pipeline.core.redact import public_text, public_url
from pipeline.engine.distributed.expansion import ExpansionState, expansion_state
from pipeline.engine.distributed.jobstore import JobRecord
from pipeline.ops.opsview import Alert

SLUG_PATTERN = r"^[a-z0-9][a-z0-9-]{0,63}$"
JOB_ID_PATTERN = r"^j[0-9a-f]{20}$"
CARD_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,119}$"

REFUSALS: dict[int, str] = {
    401: "No valid bearer token (`request.unauthorized`).",
    404: "No such job, card or event (`request.not_found`).",
    409: "The job's state does not allow it (`request.conflict`).",
    413: "A body over `api.max_body_bytes`, or more URLs than `api.max_urls` "
    "(`request.too_large`).",
    422: "Invalid parameters or body (`request.invalid`; `details` says where), or a source "
    "the URL policy refuses (`source.forbidden`, `source.unavailable`).",
    501: "Not offered (`request.invalid`).",
    503: "Redis is unreachable (`service.unavailable`); try again after Retry-After seconds.",
}


def refusals(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """The declared error responses of a route: ``ErrorResponse`` for each status."""
    return {s: {"model": ErrorResponse, "description": REFUSALS[s]} for s in statuses}


def json_refusals(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """:func:`refusals` for a route whose own answer is not JSON (FastAPI would declare a
    model's content under the route's media type)."""
    schema = {"$ref": "#/components/schemas/ErrorResponse"}
    return {
        s: {"description": REFUSALS[s], "content": {"application/json": {"schema": schema}}}
        for s in statuses
    }


HTML_PAGE: dict[str, Any] = {"text/html": {"schema": {"type": "string"}}}
"""The declared content of a route answering with an HTML page."""


Url = Annotated[str, StringConstraints(min_length=1, max_length=2048, strip_whitespace=True)]
Slug = Annotated[str, StringConstraints(pattern=SLUG_PATTERN)]
OptionValue = Annotated[str, StringConstraints(max_length=200)] | int | float | bool


class SubmitRequest(BaseModel):
    """One URL (``url``) or several (``urls``), one job each; a worker then looks each URL up
    and a playlist's job becomes the parent of one job per entry (``expansion``)."""

    model_config = ConfigDict(extra="forbid")

    url: Url | None = None
    urls: list[Url] | None = Field(None, min_length=1, max_length=500)
    event: Slug | None = None
    priority: int = Field(5, ge=0, le=9, description="0 lowest, 9 most urgent")
    options: dict[Annotated[str, StringConstraints(max_length=64)], OptionValue] = Field(
        default_factory=dict, max_length=20
    )
    callback_url: Url | None = None
    force: bool = Field(False, description="run again even if the same job exists")

    @model_validator(mode="after")
    def _one_of(self) -> SubmitRequest:
        if (self.url is None) == (self.urls is None):
            raise ValueError("give exactly one of url and urls")
        return self

    @property
    def sources(self) -> list[str]:
        return [self.url] if self.url is not None else list(self.urls or [])


class ErrorBody(BaseModel):
    code: str
    message: str
    hint: str = ""
    details: list[dict[str, Any]] = Field(default_factory=list)

    @classmethod
    def of(cls, error: ErrorInfo) -> ErrorBody:
        """A job's or stage's error, the URLs in its message in their public form."""
        return cls(code=error.code, message=public_text(error.message), hint=error.hint)


class ErrorResponse(BaseModel):
    error: ErrorBody


class StageView(BaseModel):
    status: StageStatus
    progress: float
    detail: str
    reused: bool = False
    """Finished without running: the outputs of an earlier run checked out."""
    attempts: int
    started_at: datetime | None
    finished_at: datetime | None
    error: ErrorBody | None
    worker: str | None


class ExpansionView(BaseModel):
    """What a worker found at a submitted URL: the job itself (not a playlist), or a playlist
    whose entries became the jobs ``children`` (the parent runs no stage and succeeds once
    they are made; follow the children)."""

    state: ExpansionState
    """expanding (not looked up yet), succeeded, failed (the job's ``error`` says why) or
    cancelled."""
    playlist: bool | None
    """None until looked up."""
    children: list[str]
    """The entries' job ids, in the playlist's order (empty unless a playlist)."""


class JobView(BaseModel):
    id: str
    source: str
    """The source URL without credentials or signatures (pipeline.core.redact)."""
    event: str | None
    priority: int
    status: JobStatus
    progress: float
    stages: dict[str, StageView]
    error: ErrorBody | None
    card_id: str | None
    card_url: str | None
    created_at: datetime
    updated_at: datetime
    expansion: ExpansionView | None = None
    """For a submitted URL: whether it was a playlist, and the jobs of its entries. None for a
    job that was never looked up (a local file, a playlist's entry)."""

    @classmethod
    def of(cls, record: JobRecord) -> JobView:
        state = record.state
        stages = {}
        for name, stage in state.stages.items():
            error = stage.error
            stages[name] = StageView(
                status=stage.status,
                progress=stage.progress,
                detail=stage.detail,
                reused=stage.reused,
                attempts=stage.attempts,
                started_at=stage.started_at,
                finished_at=stage.finished_at,
                error=ErrorBody.of(error) if error else None,
                worker=record.stage_runtime(name).worker,
            )
        if state.stages:
            progress = sum(s.progress for s in state.stages.values()) / len(state.stages)
        else:  # a URL not looked up yet, or a playlist's parent
            progress = 100.0 if state.status is JobStatus.SUCCEEDED else 0.0
        expansion = None
        found = expansion_state(record)
        if found is not None and record.expansion is not None:
            expansion = ExpansionView(
                state=found,
                playlist=record.expansion.playlist,
                children=list(record.expansion.children),
            )
        return cls(
            id=state.id,
            source=public_url(state.spec.source, keep_query=True),
            event=state.spec.event,
            priority=state.spec.priority,
            status=state.status,
            progress=round(progress, 1),
            stages=stages,
            error=ErrorBody.of(state.error) if state.error else None,
            card_id=state.card_id,
            card_url=f"/v1/cards/{state.card_id}" if state.card_id else None,
            created_at=state.created_at,
            updated_at=state.updated_at,
            expansion=expansion,
        )


class SubmittedJob(BaseModel):
    id: str
    source: str
    status: JobStatus
    new: bool
    """False when the same source, event and options were submitted before (that job)."""
    url: str
    """Where to follow it: ``/v1/jobs/{id}``."""


class SubmitResponse(BaseModel):
    jobs: list[SubmittedJob]


class JobPage(BaseModel):
    jobs: list[JobView]
    next_cursor: str | None = Field(
        description="Opaque: pass it back as ``cursor`` for the next (older) page; null on the "
        "last page. Jobs created meanwhile never shift it."
    )


class RetryBatch(BaseModel):
    retried: list[str]


class Ready(BaseModel):
    ready: bool


class OEmbed(BaseModel):
    """An oEmbed "video" response (https://oembed.com, 2.3.4); optional members are left out
    when unknown."""

    version: Literal["1.0"]
    type: Literal["video"]
    title: str
    html: str
    width: int
    height: int
    provider_name: str
    cache_age: int
    provider_url: str | None = None
    author_name: str | None = None
    author_url: str | None = None
    thumbnail_url: str | None = None
    thumbnail_width: int | None = None
    thumbnail_height: int | None = None


class BoardFragments(BaseModel):
    """The board page's changing parts, rendered as HTML."""

    rows: str
    summary: str
    chart: str
    updated: str


class JobLog(BaseModel):
    job_id: str
    stages: dict[str, list[str]]
    """Each stage's log lines (JSON lines, oldest first), URLs in their public form."""


class BoardLogin(BaseModel):
    logged_in: bool


class Health(BaseModel):
    ok: bool
    redis: bool
    queues: dict[str, list[str]]
    alerts: list[Alert] = Field(default_factory=list)
    """Alerts worth a page (pipeline.ops.opsview): shown, they do not change ``ok``."""
