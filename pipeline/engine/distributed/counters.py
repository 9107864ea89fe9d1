"""The names of the counters Recast keeps in Redis: built and parsed back here, and only here.

Two kinds of hash hold counters (their keys: :mod:`pipeline.engine.distributed.keys`).

The job store's ``stats``, counted in the same transactions as the state changes::

    jobs.submitted | jobs.succeeded | jobs.failed | jobs.cancelled | jobs.retried
    errors.<code>                   stages failed for good, by error code
    stages.<stage>.completed        stage runs that did their work
    stages.<stage>.reused           stage runs that found their outputs already in place
    stages.<stage>.errors.<code>    failed stage attempts (retried or not)
    stages.worker_lost              stage runs that died with their worker

The workers' measurements (:mod:`pipeline.ops.metrics`): ``metrics:counters`` holds
``downloaded_bytes``, ``transcode_media_seconds|<stage>`` and ``transcode_wall_seconds|<stage>``;
a ``metrics:hist:<histogram>`` hash holds ``<label>|<le>``, ``<label>|sum`` and
``<label>|count`` per label value.

Stage names are identifiers (no ``.`` or ``|``); error codes may hold dots
(``source.blocked``), so they always come last.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum

from pipeline.core.job import JobStatus


class JobCounter(StrEnum):
    SUBMITTED = "jobs.submitted"
    SUCCEEDED = "jobs.succeeded"
    FAILED = "jobs.failed"
    CANCELLED = "jobs.cancelled"
    RETRIED = "jobs.retried"


_JOB_COUNTERS = frozenset(c.value for c in JobCounter)

FINISHED_JOB_STATUSES = (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED)
"""The statuses a job ends in; each has its :class:`JobCounter`."""


def job_finished(status: JobStatus) -> JobCounter:
    """The counter of jobs that ended in ``status`` (one of :data:`FINISHED_JOB_STATUSES`)."""
    return {
        JobStatus.SUCCEEDED: JobCounter.SUCCEEDED,
        JobStatus.FAILED: JobCounter.FAILED,
        JobStatus.CANCELLED: JobCounter.CANCELLED,
    }[status]


class CounterKind(StrEnum):
    JOBS = "jobs"
    FAILURES = "failures"
    STAGE_COMPLETED = "stage-completed"
    STAGE_REUSED = "stage-reused"
    STAGE_ERRORS = "stage-errors"
    WORKER_LOST = "worker-lost"


WORKER_LOST = "stages.worker_lost"


@dataclass(frozen=True)
class Counter:
    """A ``stats`` counter's name, typed: what it counts, of which stage, for which code."""

    kind: CounterKind
    job: JobCounter | None = None
    stage: str | None = None
    code: str | None = None

    @property
    def name(self) -> str:
        match self.kind:
            case CounterKind.JOBS:
                return str(self.job)
            case CounterKind.FAILURES:
                return f"errors.{self.code}"
            case CounterKind.STAGE_COMPLETED:
                return f"stages.{self.stage}.completed"
            case CounterKind.STAGE_REUSED:
                return f"stages.{self.stage}.reused"
            case CounterKind.STAGE_ERRORS:
                return f"stages.{self.stage}.errors.{self.code}"
            case CounterKind.WORKER_LOST:
                return WORKER_LOST

    @classmethod
    def parse(cls, name: str) -> Counter | None:
        """The counter named ``name``; None for a name this module does not make."""
        if name in _JOB_COUNTERS:
            return cls(CounterKind.JOBS, job=JobCounter(name))
        if name == WORKER_LOST:
            return cls(CounterKind.WORKER_LOST)
        head, _, rest = name.partition(".")
        if head == "errors" and rest:
            return cls(CounterKind.FAILURES, code=rest)
        if head != "stages":
            return None
        stage, _, what = rest.partition(".")
        if not stage or not what:
            return None
        if what == "completed":
            return cls(CounterKind.STAGE_COMPLETED, stage=stage)
        if what == "reused":
            return cls(CounterKind.STAGE_REUSED, stage=stage)
        kind, _, code = what.partition(".")
        if kind == "errors" and code:
            return cls(CounterKind.STAGE_ERRORS, stage=stage, code=code)
        return None


def failures(code: str) -> str:
    return Counter(CounterKind.FAILURES, code=str(code)).name


def stage_completed(stage: str) -> str:
    return Counter(CounterKind.STAGE_COMPLETED, stage=_stage(stage)).name


def stage_reused(stage: str) -> str:
    return Counter(CounterKind.STAGE_REUSED, stage=_stage(stage)).name


def stage_errors(stage: str, code: str) -> str:
    return Counter(CounterKind.STAGE_ERRORS, stage=_stage(stage), code=str(code)).name


def _stage(stage: str) -> str:
    if not stage or "." in stage or "|" in stage:
        raise ValueError(f"a stage name cannot be part of a counter name: {stage!r}")
    return stage


@dataclass(frozen=True)
class Stats:
    """The job store's ``stats`` hash, read back by counter."""

    values: Mapping[str, int]

    def _parsed(self) -> list[tuple[Counter, int]]:
        found = []
        for name, value in sorted(self.values.items()):
            counter = Counter.parse(name)
            if counter is not None:
                found.append((counter, value))
        return found

    def jobs(self, counter: JobCounter) -> int:
        return int(self.values.get(counter, 0))

    def worker_lost(self) -> int:
        return int(self.values.get(WORKER_LOST, 0))

    def failures_by_code(self) -> dict[str, int]:
        """Stages failed for good, by error code (codes never counted left out)."""
        return {str(c.code): v for c, v in self._parsed() if c.kind is CounterKind.FAILURES and v}

    def stage_completions(self) -> dict[str, int]:
        return self._per_stage(CounterKind.STAGE_COMPLETED)

    def stage_reuses(self) -> dict[str, int]:
        return self._per_stage(CounterKind.STAGE_REUSED)

    def stage_errors(self) -> dict[tuple[str, str], int]:
        """Failed attempts by (stage, code)."""
        return {
            (str(c.stage), str(c.code)): v
            for c, v in self._parsed()
            if c.kind is CounterKind.STAGE_ERRORS
        }

    def attempts_failed_with(self, code: str) -> int:
        """Failed attempts with ``code``, over every stage."""
        return sum(v for (_, found), v in self.stage_errors().items() if found == code)

    def _per_stage(self, kind: CounterKind) -> dict[str, int]:
        return {str(c.stage): v for c, v in self._parsed() if c.kind is kind}


# -- the workers' measurements ---------------------------------------------------------------


class HistogramName(StrEnum):
    """The measurements kept as histograms, one hash each."""

    STAGE_SECONDS = "stage_seconds"
    TRANSCODE_SPEED = "transcode_speed"


class Measure(StrEnum):
    """The measured totals in ``metrics:counters``."""

    DOWNLOADED_BYTES = "downloaded_bytes"
    TRANSCODE_MEDIA_SECONDS = "transcode_media_seconds"
    """Per stage."""
    TRANSCODE_WALL_SECONDS = "transcode_wall_seconds"
    """Per stage."""


FIELD_SEPARATOR = "|"


def measure_field(measure: Measure, stage: str | None = None) -> str:
    return str(measure) if stage is None else f"{measure}{FIELD_SEPARATOR}{_stage(stage)}"


def parse_measure_field(field: str) -> tuple[Measure, str | None] | None:
    """(measure, stage or None) of a :func:`measure_field`; None for anything else."""
    name, _, stage = field.partition(FIELD_SEPARATOR)
    if name not in {m.value for m in Measure}:
        return None
    return Measure(name), stage or None


class HistogramPart(StrEnum):
    SUM = "sum"
    COUNT = "count"


def histogram_field(label: str, part: str) -> str:
    """A histogram hash's field: ``part`` is a bucket's bound (``le``) or a HistogramPart."""
    return f"{label}{FIELD_SEPARATOR}{part}"


def parse_histogram_field(field: str) -> tuple[str, str]:
    """(label, part) of a :func:`histogram_field`."""
    label, _, part = field.rpartition(FIELD_SEPARATOR)
    return label, part
