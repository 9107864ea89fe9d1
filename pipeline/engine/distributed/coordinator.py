"""The distributed executor's decisions, with no Celery in sight.

The Celery executor (workers/) runs one task per stage; this module decides, from the same DAG
declaration the local executor runs, which stages are ready, hands them to a
:class:`Dispatcher` (Celery, in workers/), and carries out what producers ask: submit, cancel,
retry. Stage states live in the :class:`~pipeline.engine.distributed.jobstore.JobStore`.

Handing a stage to the broker goes through an outbox: the change that makes a stage ready
also records it in the outbox in the same transaction; the outbox entry is removed only once
the broker has the message. A crash or a broker outage in between leaves the entry, and the
next :meth:`Coordinator.dispatch_due` (every worker runs it periodically) sends it again. A
message sent twice is harmless: a stage runs under a lock and only while it is pending.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

from pipeline.core.dag import Dag
from pipeline.core.errors import ErrorCode, RecastError
from pipeline.core.job import (
    FINISHED_STAGE_STATUSES,
    ErrorInfo,
    JobSpec,
    JobStatus,
    StageState,
    StageStatus,
    utcnow,
)
from pipeline.core.settings import Settings
from pipeline.core.stage import Publisher, Stage
from pipeline.engine.distributed.jobstore import Effects, JobRecord, JobStore
from pipeline.stages import default_dag

log = logging.getLogger("recast.coordinator")

ACTIVE_JOB_STATUSES = frozenset({JobStatus.QUEUED, JobStatus.RUNNING})


class Dispatcher(Protocol):
    """Hands a stage of a job to the workers (Celery in workers/)."""

    def send(self, record: JobRecord, stage: Stage, limits: TimeLimits) -> str:
        """Queue the stage's task; returns its task id."""

    def revoke(self, task_ids: list[str]) -> None:
        """Discard queued tasks (running ones stop through the job's cancel flag)."""


@dataclass(frozen=True)
class TimeLimits:
    soft_s: float
    hard_s: float


def time_limits(stage: Stage, media_duration: float | None, settings: Settings) -> TimeLimits:
    """A stage's time limits, scaled to the media's duration (the longest allowed if unknown).

    hard = time_limit_base_s + Stage.time_limit_factor x duration, capped at max_time_limit_s;
    the broker's visibility timeout is longer than that cap (settings check it).
    """
    config = settings.cluster
    duration = media_duration if media_duration is not None else settings.ingest.max_duration_s
    hard = min(
        config.max_time_limit_s, config.time_limit_base_s + stage.time_limit_factor * duration
    )
    return TimeLimits(soft_s=hard * config.soft_time_limit_ratio, hard_s=hard)


class JobConflict(RecastError):
    """The job is not in a state that allows what was asked."""

    def __init__(self, message: str):
        super().__init__(ErrorCode.REQUEST_CONFLICT, message)


class JobNotFound(RecastError):
    def __init__(self, job_id: str):
        super().__init__(ErrorCode.REQUEST_NOT_FOUND, f"There is no job {job_id}.")


def ready_stages(record: JobRecord, dag: Dag) -> list[str]:
    """Pending stages whose requirements are all finished."""
    stages = record.state.stages
    ready = []
    for stage in dag:
        state = stages.get(stage.name)
        if state is None or state.status is not StageStatus.PENDING:
            continue
        if all(stages[r].status in FINISHED_STAGE_STATUSES for r in stage.requires):
            ready.append(stage.name)
    return ready


def all_finished(record: JobRecord, dag: Dag) -> bool:
    return all(record.stage(name).status in FINISHED_STAGE_STATUSES for name in dag.names)


def schedule_ready(record: JobRecord, dag: Dag, effects: Effects) -> None:
    """Put every ready stage that is not queued yet into the outbox."""
    for name in ready_stages(record, dag):
        runtime = record.rt(name)
        if runtime.queued_at is None:
            runtime.queued_at = utcnow()
            effects.dispatch[name] = 0.0


def stage_failed(
    record: JobRecord, dag: Dag, effects: Effects, stage: str, error: ErrorInfo
) -> None:
    """A stage failed for good: the job's error is set and the stages that depend on it are
    cancelled. Branches that do not depend on it go on (their work is kept for a retry);
    :func:`settle` fails the job once nothing else can run."""
    state = record.stage(stage)
    state.status = StageStatus.FAILED
    state.error = error
    state.finished_at = utcnow()
    if record.state.error is None:
        record.state.error = error
    for name in dag.dependents(stage):
        dependent = record.stage(name)
        if dependent.status is StageStatus.PENDING:
            dependent.status = StageStatus.CANCELLED
            effects.undispatch.append(name)
    effects.event("stage.failed", record, stage, code=error.code)
    effects.count(f"errors.{error.code}")


def settle(record: JobRecord, dag: Dag, effects: Effects) -> bool:
    """Fail a job that has an error once no stage runs and none is ready; True if now."""
    if record.state.error is None or record.state.status not in ACTIVE_JOB_STATUSES:
        return False
    if any(s.status is StageStatus.RUNNING for s in record.state.stages.values()):
        return False
    if ready_stages(record, dag):
        return False
    record.state.status = JobStatus.FAILED
    for name in dag.names:
        state = record.stage(name)
        if state.status is StageStatus.PENDING:
            state.status = StageStatus.CANCELLED
            effects.undispatch.append(name)
    effects.event("job.failed", record, code=record.state.error.code)
    effects.count("jobs.failed")
    return True


class Coordinator:
    """Submits, schedules, cancels and retries jobs run by the distributed executor."""

    def __init__(
        self,
        settings: Settings,
        store: JobStore,
        dispatcher: Dispatcher,
        dag: Dag | None = None,
        publisher: Publisher | None = None,
    ):
        self.settings = settings
        self.store = store
        self.dispatcher = dispatcher
        self.dag = dag or default_dag()
        self.publisher = publisher

    # -- submit ------------------------------------------------------------------------------

    def submit(self, spec: JobSpec, *, force: bool = False) -> tuple[JobRecord, bool]:
        """The job for ``spec`` and whether it is new. The same source and options again
        give the existing job, unless ``force``: then a finished job runs again from scratch.
        """

        def start(record: JobRecord) -> Effects:
            effects = Effects()
            schedule_ready(record, self.dag, effects)
            return effects

        record, created = self.store.create(spec, self.dag.names, start)
        if not created and force:
            record = self._rerun(record.id)
        self.dispatch_job(record.id)
        return record, created

    def _rerun(self, job_id: str) -> JobRecord:
        def rerun(record: JobRecord) -> Effects:
            if record.state.status in ACTIVE_JOB_STATUSES:
                raise JobConflict(f"Job {job_id} is still {record.state.status}; cancel it first.")
            effects = Effects()
            for name in self.dag.names:
                record.state.stages[name] = StageState()
                runtime = record.rt(name)
                runtime.queued_at = None
                runtime.lost = 0
                runtime.fresh = True
            record.state.status = JobStatus.QUEUED
            record.state.error = None
            schedule_ready(record, self.dag, effects)
            effects.event("job.rerun", record)
            return effects

        self.store.set_cancelled(job_id, False)
        return self._must(self.store.transact(job_id, rerun), job_id)

    # -- dispatch ----------------------------------------------------------------------------

    def dispatch_job(self, job_id: str) -> int:
        """Send this job's outbox entries that are due."""
        return self._dispatch([(j, s) for j, s in self.store.due() if j == job_id])

    def dispatch_due(self) -> int:
        """Send every due outbox entry (run periodically by every worker)."""
        return self._dispatch(self.store.due())

    def _dispatch(self, entries: Iterable[tuple[str, str]]) -> int:
        sent = 0
        for job_id, name in entries:
            lease = self.store.claim(job_id, name)
            if lease is None:
                continue  # another process is sending it
            record = self.store.get(job_id)
            if record is None or name not in self.dag.names:
                self.store.sent(job_id, name, lease)
                continue
            state = record.stage(name)
            if (
                record.state.status not in ACTIVE_JOB_STATUSES
                or state.status is not StageStatus.PENDING
            ):
                self.store.sent(job_id, name, lease)
                continue
            stage = self.dag[name]
            task_id = self.dispatcher.send(
                record, stage, time_limits(stage, record.media_duration, self.settings)
            )
            self._note_sent(job_id, name, task_id)
            self.store.sent(job_id, name, lease)
            sent += 1
        return sent

    def _note_sent(self, job_id: str, stage: str, task_id: str) -> None:
        def note(record: JobRecord) -> Effects | None:
            runtime = record.rt(stage)
            runtime.task_id = task_id
            runtime.queued_at = utcnow()
            runtime.reserved_by = None
            return Effects()

        self.store.transact(job_id, note)

    # -- cancel and retry --------------------------------------------------------------------

    def cancel(self, job_id: str) -> JobRecord:
        """Cancel a queued or running job: queued tasks are revoked, running stages stop."""
        self.store.set_cancelled(job_id)
        revoked: list[str] = []

        def cancel(record: JobRecord) -> Effects:
            revoked.clear()
            if record.state.status not in ACTIVE_JOB_STATUSES:
                raise JobConflict(f"Job {job_id} has already {record.state.status}.")
            effects = Effects()
            record.state.status = JobStatus.CANCELLED
            record.state.error = ErrorInfo.from_error(
                RecastError(ErrorCode.JOB_CANCELLED, "The job was cancelled.")
            )
            for name in self.dag.names:
                state = record.stage(name)
                runtime = record.rt(name)
                if state.status is StageStatus.PENDING:
                    state.status = StageStatus.CANCELLED
                    effects.undispatch.append(name)
                    if runtime.task_id:
                        revoked.append(runtime.task_id)
            effects.event("job.cancelled", record)
            effects.count("jobs.cancelled")
            return effects

        try:
            record = self._must(self.store.transact(job_id, cancel), job_id)
        except JobConflict:
            self.store.set_cancelled(job_id, False)
            raise
        if revoked:
            self.dispatcher.revoke(revoked)
        if self.publisher is not None:
            self.publisher.job_failed(record.state)
        return record

    def retry(self, job_id: str) -> JobRecord:
        """Run a failed or cancelled job again from the stages that did not finish."""
        record = self._must(self.store.get(job_id), job_id)
        self._check_retryable(record)
        self.store.set_cancelled(job_id, False)

        def retry(record: JobRecord) -> Effects:
            self._check_retryable(record)
            effects = Effects()
            for name in self.dag.names:
                state = record.stage(name)
                if state.status in FINISHED_STAGE_STATUSES:
                    continue
                record.state.stages[name] = StageState()
                runtime = record.rt(name)
                runtime.queued_at = None
                runtime.lost = 0
            record.state.status = JobStatus.QUEUED
            record.state.error = None
            schedule_ready(record, self.dag, effects)
            effects.event("job.retried", record)
            effects.count("jobs.retried")
            return effects

        record = self._must(self.store.transact(job_id, retry), job_id)
        self.dispatch_job(job_id)
        return record

    def retry_failed(self, code: ErrorCode) -> list[str]:
        """Retry every failed job whose error has ``code``; returns their ids."""
        retried = []
        for record in list(self.store.iter_status(JobStatus.FAILED)):
            if record.state.error is not None and record.state.error.code == code:
                try:
                    self.retry(record.id)
                except JobConflict:
                    continue
                retried.append(record.id)
        return retried

    def _check_retryable(self, record: JobRecord) -> None:
        status = record.state.status
        if status not in (JobStatus.FAILED, JobStatus.CANCELLED):
            raise JobConflict(f"Job {record.id} is {status}; only failed or cancelled jobs retry.")
        running = [n for n, s in record.state.stages.items() if s.status is StageStatus.RUNNING]
        if running:
            raise JobConflict(f"Job {record.id} is still stopping ({', '.join(running)}).")

    @staticmethod
    def _must(record: JobRecord | None, job_id: str) -> JobRecord:
        if record is None:
            raise JobNotFound(job_id)
        return record
