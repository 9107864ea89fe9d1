"""The job: what a producer asked for (:class:`JobSpec`) and how far it got (:class:`JobState`).

A job's id is derived from its normalised source and options, so submitting the same thing
twice finds the same job (and the same workspace) instead of starting over.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from pydantic import BaseModel, Field

from pipeline.core.errors import RecastError


def utcnow() -> datetime:
    return datetime.now(UTC)


class JobStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


class StageStatus(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    DONE = "done"
    SKIPPED = "skipped"
    FAILED = "failed"
    CANCELLED = "cancelled"


FINISHED_STAGE_STATUSES = frozenset({StageStatus.DONE, StageStatus.SKIPPED})


def normalise_source(source: str) -> str:
    """The canonical form of a source used for identity: scheme and host lower-cased."""
    if "://" not in source:
        return source
    parts = urlsplit(source.strip())
    return urlunsplit(
        (parts.scheme.lower(), parts.netloc.lower(), parts.path or "/", parts.query, "")
    )


class JobSpec(BaseModel):
    """What a producer asked for."""

    source: str
    event: str | None = None
    options: dict[str, Any] = Field(default_factory=dict)
    callback_url: str | None = None
    priority: int = Field(5, ge=0, le=9)

    @property
    def idempotency_key(self) -> str:
        payload = json.dumps(
            {"source": normalise_source(self.source), "event": self.event, "options": self.options},
            sort_keys=True,
        )
        return hashlib.sha256(payload.encode()).hexdigest()

    @property
    def job_id(self) -> str:
        return "j" + self.idempotency_key[:20]


class ErrorInfo(BaseModel):
    code: str
    message: str
    transient: bool = False
    hint: str = ""

    @classmethod
    def from_error(cls, error: RecastError) -> ErrorInfo:
        return cls(
            code=str(error.code), message=error.message, transient=error.transient, hint=error.hint
        )


class StageState(BaseModel):
    status: StageStatus = StageStatus.PENDING
    progress: float = 0.0
    detail: str = ""
    """For people only; nothing reads meaning out of it."""
    reused: bool = False
    """The stage finished without running: its outputs from an earlier run checked out."""
    attempts: int = 0
    started_at: datetime | None = None
    finished_at: datetime | None = None
    error: ErrorInfo | None = None
    warnings: list[str] = Field(default_factory=list)
    waiting_since: datetime | None = None
    """When the stage began waiting for a source host that refuses us (it fails with
    ``source.blocked`` past ``sources.backoff.max_wait_s``); None once it finished."""


class JobState(BaseModel):
    id: str
    spec: JobSpec
    status: JobStatus = JobStatus.QUEUED
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)
    card_id: str | None = None
    stages: dict[str, StageState] = Field(default_factory=dict)
    error: ErrorInfo | None = None

    @classmethod
    def new(cls, spec: JobSpec) -> JobState:
        return cls(id=spec.job_id, spec=spec)
