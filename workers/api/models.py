"""Request and response bodies of the producer API."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from pipeline.core.job import ErrorInfo, JobStatus, StageStatus
from pipeline.core.redact import public_text, public_url
from pipeline.engine.distributed.jobstore import JobRecord
from pipeline.ops.opsview import Alert

SLUG_PATTERN = r"^[a-z0-9][a-z0-9-]{0,63}$"
JOB_ID_PATTERN = r"^j[0-9a-f]{20}$"
CARD_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,119}$"

Url = Annotated[str, StringConstraints(min_length=1, max_length=2048, strip_whitespace=True)]
Slug = Annotated[str, StringConstraints(pattern=SLUG_PATTERN)]
OptionValue = Annotated[str, StringConstraints(max_length=200)] | int | float | bool


class SubmitRequest(BaseModel):
    """One URL (``url``) or several (``urls``); a playlist URL becomes one job per entry."""

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
        progress = (
            sum(s.progress for s in state.stages.values()) / len(state.stages)
            if state.stages
            else 0.0
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
        )


class SubmittedJob(BaseModel):
    id: str
    source: str
    status: JobStatus
    new: bool
    url: str


class SubmitResponse(BaseModel):
    jobs: list[SubmittedJob]


class JobPage(BaseModel):
    jobs: list[JobView]
    next_cursor: int | None


class RetryBatch(BaseModel):
    retried: list[str]


class EventCards(BaseModel):
    event: str
    cards: list[dict[str, Any]]


class Health(BaseModel):
    ok: bool
    redis: bool
    queues: dict[str, list[str]]
    alerts: list[Alert] = Field(default_factory=list)
    """Alerts worth a page (pipeline.ops.opsview): shown, they do not change ``ok``."""
