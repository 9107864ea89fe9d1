"""A submitted URL is looked up on a worker, not in the producer's request: it may stand for a
playlist of hundreds of entries, and only a flat extraction (:func:`pipeline.stages.ingest.expand`)
tells.

:meth:`Expander.submit` records the job at once, QUEUED with no stage and an
:class:`~pipeline.engine.distributed.jobstore.Expansion` whose ``playlist`` is None; the caller
hands its id to a worker (the ``recast.expand`` task on the ingest queue, workers/), which runs
:meth:`Expander.expand`:

- not a playlist: the job gets its stages, scheduled as any job's; it keeps its id;
- a playlist: one job per entry, with the parent's event, options, priority and callback (an
  entry submitted before gives its existing job, as a second submission would; ``force``
  reruns it), their ids recorded on the parent in the playlist's order; the parent then
  succeeds without running a stage;
- a failure: the parent fails with the error's code (``source.unavailable``...) and
  ``job.failed`` goes out as for any job; a transient error is retried after the backoff
  :func:`~pipeline.core.errors.retry_decision` gives (the caller waits).

Running an expansion twice is harmless: entries' jobs are made idempotently and the parent
changes only while it still waits. Cancelling a waiting job is the coordinator's cancel; a
retry (or a forced submission) of a job whose expansion did not finish expands it again.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

from pipeline.core.errors import RecastError, as_recast_error, retry_decision
from pipeline.core.job import ErrorInfo, JobSpec, JobStatus
from pipeline.engine import jobflow
from pipeline.engine.distributed import counters
from pipeline.engine.distributed.coordinator import (
    Coordinator,
    JobConflict,
    JobNotFound,
    carry_out,
    follow_up,
    schedule_ready,
)
from pipeline.engine.distributed.counters import JobCounter
from pipeline.engine.distributed.jobstore import Effects, Expansion, JobEvent, JobRecord
from pipeline.engine.jobflow import Transition
from pipeline.stages.ingest import expand

log = logging.getLogger("recast.expansion")


class ExpansionState(StrEnum):
    """Where a URL's expansion stands, as producers see it."""

    EXPANDING = "expanding"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


class ExpandOutcome(StrEnum):
    """What one run of :meth:`Expander.expand` came to."""

    SINGLE = "single"
    PLAYLIST = "playlist"
    FAILED = "failed"
    RETRY = "retry"
    SKIPPED = "skipped"
    """Nothing to do: no such job, or its expansion was done or stopped meanwhile."""


@dataclass(frozen=True)
class ExpandResult:
    outcome: ExpandOutcome
    retry_in_s: float = 0.0
    children: int = 0


@dataclass(frozen=True)
class Submission:
    record: JobRecord
    created: bool
    send: bool
    """The caller must hand the job's expansion to a worker."""


def expansion_state(record: JobRecord) -> ExpansionState | None:
    """None for a job that was never expanded (a local file, a playlist's entry)."""
    expansion = record.expansion
    if expansion is None:
        return None
    if expansion.playlist is not None:
        return ExpansionState.SUCCEEDED
    if record.state.status is JobStatus.FAILED:
        return ExpansionState.FAILED
    if record.state.status is JobStatus.CANCELLED:
        return ExpansionState.CANCELLED
    return ExpansionState.EXPANDING


def awaiting(record: JobRecord) -> bool:
    """The job still waits for its expansion (active, not looked up yet)."""
    return expansion_state(record) is ExpansionState.EXPANDING


class Expander:
    """Submits URLs for expansion and carries expansions out, through the coordinator."""

    def __init__(
        self,
        coordinator: Coordinator,
        translate: Callable[[BaseException], RecastError | None] | None = None,
    ):
        self.coordinator = coordinator
        self.translate = translate
        self.store = coordinator.store
        self.settings = coordinator.settings
        self.dag = coordinator.dag

    # -- the producer's side -----------------------------------------------------------------

    def submit(self, spec: JobSpec, *, force: bool = False) -> Submission:
        """The job for a URL: created waiting for its expansion, or the existing one.

        Again without ``force``: the existing job; one still waiting gets its expansion sent
        again (a lost message or a failed send leaves no job stuck). With ``force``: a job
        that ran as a single video runs again from scratch (the coordinator's rerun); a
        playlist, or a job whose expansion did not finish, is expanded again.
        """

        def wait(record: JobRecord) -> Effects:
            record.expansion = Expansion(force=force)
            return Effects()

        record, created = self.store.create(spec, [], wait)
        if created:
            return Submission(record, True, True)
        if not force:
            return Submission(record, False, awaiting(record))
        if record.expansion is None or record.expansion.playlist is False:
            rerun, _ = self.coordinator.submit(spec, force=True)
            return Submission(rerun, False, False)
        return Submission(self._again(record.id, force=True, retried=False), False, True)

    def retry(self, job_id: str) -> JobRecord | None:
        """Expand again a job whose expansion failed or was cancelled; None for any other job
        (the coordinator's retry is for those)."""
        record = self.store.get(job_id)
        if record is None:
            raise JobNotFound(job_id)
        if expansion_state(record) not in (ExpansionState.FAILED, ExpansionState.CANCELLED):
            return None
        return self._again(job_id, force=record.expansion.force if record.expansion else False)

    def _again(self, job_id: str, *, force: bool, retried: bool = True) -> JobRecord:
        def again(record: JobRecord) -> Effects:
            if jobflow.is_active(record.state):
                raise JobConflict(f"Job {job_id} is still {record.state.status}; cancel it first.")
            record.state.status = JobStatus.QUEUED
            record.state.error = None
            record.state.stages = {}
            record.runtime = {}
            record.expansion = Expansion(force=force)
            effects = Effects()
            if retried:
                effects.event(JobEvent.JOB_RETRIED, record)
                effects.count(JobCounter.RETRIED)
            else:
                effects.event(JobEvent.JOB_RERUN, record)
            return effects

        self.store.set_cancelled(job_id, False)
        record = self.store.transact(job_id, again)
        if record is None:
            raise JobNotFound(job_id)
        return record

    # -- the worker's side -------------------------------------------------------------------

    def expand(self, job_id: str, attempt: int = 1) -> ExpandResult:
        """Look the job's URL up and act on what it is (see the module's docstring)."""
        record = self.store.get(job_id)
        if record is None or not awaiting(record):
            return ExpandResult(ExpandOutcome.SKIPPED)
        spec = record.state.spec
        try:
            entries = expand(spec.source, self.settings)
        except Exception as exc:
            error = (self.translate and self.translate(exc)) or as_recast_error(exc)
            executor = self.settings.executor
            decision = retry_decision(
                error,
                attempt,
                max_attempts=executor.max_attempts,
                base_delay_s=executor.retry_base_delay_s,
                max_delay_s=executor.retry_max_delay_s,
            )
            if decision.retry:
                log.warning("expansion failed, retrying: %s", error, extra={"job_id": job_id})
                return ExpandResult(ExpandOutcome.RETRY, retry_in_s=decision.delay_s)
            self._fail(job_id, error)
            return ExpandResult(ExpandOutcome.FAILED)
        if entries == [spec.source]:
            self._single(job_id)
            return ExpandResult(ExpandOutcome.SINGLE)
        force = record.expansion.force if record.expansion else False
        children = [self._child(spec, entry, force) for entry in dict.fromkeys(entries)]
        self._playlist(job_id, children)
        return ExpandResult(ExpandOutcome.PLAYLIST, children=len(children))

    def _single(self, job_id: str) -> None:
        def become_video(record: JobRecord) -> Effects | None:
            if not awaiting(record) or record.expansion is None:
                return None
            record.expansion.playlist = False
            for name in self.dag.names:
                record.stage(name)
                record.stage_runtime(name).fresh = record.expansion.force
            effects = Effects()
            schedule_ready(record, self.dag, effects)
            return effects

        self.store.transact(job_id, become_video)
        self.coordinator.dispatch_job(job_id)

    def _child(self, parent: JobSpec, entry: str, force: bool) -> str:
        spec = parent.model_copy(update={"source": entry})
        try:
            record, _ = self.coordinator.submit(spec, force=force)
        except JobConflict:  # forced, but that entry's job is running: it stays as it is
            return spec.job_id
        return record.id

    def _playlist(self, job_id: str, children: list[str]) -> None:
        def record_children(record: JobRecord) -> Effects | None:
            if not awaiting(record) or record.expansion is None:
                return None
            record.expansion.playlist = True
            record.expansion.children = children
            record.state.status = JobStatus.SUCCEEDED
            effects = Effects()
            carry_out(record, Transition(job_status=JobStatus.SUCCEEDED), effects)
            return effects

        self.store.transact(job_id, record_children)

    def _fail(self, job_id: str, error: RecastError) -> None:
        failed = False

        def fail(record: JobRecord) -> Effects | None:
            nonlocal failed
            failed = False  # a transaction may run this more than once
            if not awaiting(record):
                return None
            record.state.status = JobStatus.FAILED
            record.state.error = ErrorInfo.from_error(error)
            effects = Effects()
            carry_out(record, Transition(job_status=JobStatus.FAILED), effects)
            effects.count(counters.failures(str(error.code)))
            failed = True
            return effects

        record = self.store.transact(job_id, fail)
        if failed:
            follow_up(self.store, self.coordinator.publisher, record, Transition(settled=True))
