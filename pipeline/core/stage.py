"""The one interface every stage implements, and what a stage is handed when it runs.

Contract (read it before writing a stage):

- A stage SHALL be a plain function ``run(ctx: StageContext) -> StageResult`` wrapped in a
  :class:`Stage` declaration with its name, queue and the stages it requires.
- A stage SHALL read its inputs only from the job's spec, the settings, and the finished
  outputs of the stages it requires, through the typed readers of :mod:`pipeline.core.readers`
  (or ``ctx.input_dir(name)``); reading a stage it did not declare is refused.
- A stage SHALL write its outputs only under ``ctx.out`` (its partial directory); the
  executor moves them into place when ``run`` returns, so a failed or killed run leaves
  nothing behind.
- A stage SHALL list the files it wrote in ``StageResult.files`` (paths relative to
  ``ctx.out``); a re-run skips the stage when its result exists and those files are intact.
- A stage SHALL raise :class:`~pipeline.core.errors.RecastError` for every failure it understands;
  anything else is recorded as ``internal.error``.
- A stage SHOULD report progress through ``ctx.progress`` and SHOULD call
  ``ctx.check_cancelled()`` between long steps.
- A stage MAY return ``StageResult.skipped(reason)`` when it has nothing to do for this input
  (no audio for a transcript, say); dependents still run.
- A stage MAY publish an early card (``ctx.publisher``) before the job ends.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any, Protocol

from pydantic import BaseModel, Field

from pipeline.core.errors import ErrorCode, RecastError
from pipeline.core.fsutil import sha256_file
from pipeline.core.hostgate import HostGate, InMemoryHostGate
from pipeline.core.job import JobSpec, JobState, StageStatus
from pipeline.core.settings import Settings
from pipeline.core.workspace import Workspace


class Queue(StrEnum):
    """Celery queues, by the kind of work a stage does."""

    INGEST = "ingest"
    TRANSCODE = "transcode"
    MEDIA = "media"
    ASR = "asr"
    PUBLISH = "publish"


class FileRecord(BaseModel):
    path: str
    size: int
    sha256: str

    @classmethod
    def of(cls, root: Path, file: Path) -> FileRecord:
        return cls(
            path=file.relative_to(root).as_posix(),
            size=file.stat().st_size,
            sha256=sha256_file(file),
        )

    def intact_under(self, root: Path) -> bool:
        file = root / self.path
        return (
            file.is_file() and file.stat().st_size == self.size and sha256_file(file) == self.sha256
        )


class AssetRole(StrEnum):
    """What a published file is for; the publish stage builds the card from these roles."""

    HLS_MASTER = "hls-master"
    HLS_MEDIA = "hls-media"
    """A rendition playlist, init segment or media segment beside the master."""
    MP4 = "mp4"
    AUDIO = "audio"
    POSTER = "poster"
    POSTER_SQUARE = "poster-square"
    STORYBOARD = "storyboard"
    STORYBOARD_VTT = "storyboard-vtt"
    PREVIEW_CLIP = "preview-clip"
    CAPTIONS = "captions"
    TRANSCRIPT_TXT = "transcript-txt"
    TRANSCRIPT_JSON = "transcript-json"
    CHAPTERS = "chapters"
    """The WebVTT chapters track (a cue per chapter)."""
    WAVEFORM = "waveform"
    SOCIAL_CUT = "social-cut"
    """The 9:16 vertical MP4 for social platforms (pipeline/stages/social.py)."""


class OutputAsset(BaseModel):
    """A file a stage made for publication: where it is and where it goes."""

    file: str
    """Path relative to the stage's directory."""
    key: str
    """Where it is published, relative to the card's directory (``hls/720p/index.m3u8``)."""
    role: AssetRole
    width: int | None = None
    height: int | None = None
    duration: float | None = None
    bitrate: int | None = None
    lang: str | None = None
    label: str | None = None
    automatic: bool | None = None
    extra: dict[str, Any] = Field(default_factory=dict)


class StageResult(BaseModel):
    """What a finished stage leaves in ``<stage>/_stage.json``."""

    status: StageStatus = StageStatus.DONE
    detail: str = ""
    files: list[FileRecord] = Field(default_factory=list)
    assets: list[OutputAsset] = Field(default_factory=list)
    """Files for the publish stage to publish (each also listed in ``files``)."""
    data: dict[str, Any] = Field(default_factory=dict)

    @classmethod
    def skipped(cls, reason: str) -> StageResult:
        return cls(status=StageStatus.SKIPPED, detail=reason)

    @classmethod
    def done(
        cls, out: Path, detail: str = "", assets: list[OutputAsset] | None = None, **data: Any
    ) -> StageResult:
        """A result listing every file under ``out`` (the stage's partial directory)."""
        files = [FileRecord.of(out, p) for p in sorted(out.rglob("*")) if p.is_file()]
        return cls(
            status=StageStatus.DONE, detail=detail, files=files, assets=assets or [], data=data
        )


class ProgressSink(Protocol):
    def __call__(self, stage: str, percent: float, detail: str) -> None: ...


class Publisher(Protocol):
    """Publishes cards before the publish stage: the ingest stage's preview."""

    def preview(self, ctx: StageContext) -> None:
        """Publish a preview card from the metadata in ``ctx.out`` (the ingest stage's)."""

    def job_failed(self, job: JobState) -> None:
        """Withdraw what a failed job published early; a card that was better stays."""


@dataclass
class StageContext:
    """Everything a running stage may use."""

    job_id: str
    stage: str
    spec: JobSpec
    settings: Settings
    workspace: Workspace
    out: Path
    on_progress: ProgressSink | None = None
    publisher: Publisher | None = None
    cancel_event: threading.Event = field(default_factory=threading.Event)
    warnings: list[str] = field(default_factory=list)
    requires: tuple[str, ...] = ()
    """The stages this one declared (``Stage.requires``), the only ones it may read; the
    runner sets it from the declaration (:func:`pipeline.engine.runner.run_stage`)."""
    host_gate: HostGate = field(default_factory=InMemoryHostGate)
    """The gates of source hosts a stage fetches from (pipeline/core/hostgate.py): the
    executor's (in memory for the local one, in Redis for workers); a fresh one by default."""

    @property
    def log(self) -> logging.LoggerAdapter[logging.Logger]:
        return logging.LoggerAdapter(
            logging.getLogger(f"recast.stage.{self.stage}"),
            {"job_id": self.job_id, "stage": self.stage},
        )

    def input_dir(self, stage: str) -> Path:
        """The finished outputs of a stage this one requires."""
        self._check_declared(stage)
        return self.workspace.stage_dir(stage)

    def input_result(self, stage: str) -> StageResult | None:
        """The result of a stage this one requires; None when it has not finished."""
        self._check_declared(stage)
        path = self.workspace.result_file(stage)
        if not path.exists():
            return None
        return StageResult.model_validate_json(path.read_text(encoding="utf-8"))

    def _check_declared(self, stage: str) -> None:
        if stage not in self.requires:
            declared = ", ".join(self.requires) or "nothing"
            raise RecastError(
                ErrorCode.INTERNAL,
                f"The {self.stage} stage reads the outputs of the {stage} stage, which it does "
                f"not declare in its requires ({declared}): a bug in Recast.",
            )

    def progress(self, percent: float, detail: str = "") -> None:
        if self.on_progress is not None:
            self.on_progress(self.stage, max(0.0, min(100.0, percent)), detail)

    def warn(self, message: str) -> None:
        self.warnings.append(message)
        self.log.warning(message)

    def cancelled(self) -> bool:
        return self.cancel_event.is_set()

    def check_cancelled(self) -> None:
        if self.cancel_event.is_set():
            raise RecastError(ErrorCode.JOB_CANCELLED, "The job was cancelled.")


StageFunction = Callable[[StageContext], StageResult]


@dataclass(frozen=True)
class Stage:
    """A stage's declaration: its name, queue, prerequisites and function."""

    name: str
    queue: Queue
    run: StageFunction
    requires: tuple[str, ...] = ()
    time_limit_factor: float = 1.0
    """Hard time limit as a multiple of the media duration (plus a base), for executors."""
