"""The distributed executor's decisions, with no Celery in sight.

The Celery executor (workers/) runs one task per stage; this module hands ready stages to a
:class:`StageDispatcher` (Celery, in workers/) and carries out what producers ask: submit,
cancel, retry. Which stages are ready and what a failure or a cancel does to a job are the
job state machine's (:mod:`pipeline.engine.jobflow`, the same as the local executor's);
:func:`carry_out` turns its transitions into effects of the job store transaction that took
them. Stage states live in the :class:`~pipeline.engine.distributed.jobstore.JobStore`.

Handing a stage to the broker goes through an outbox: the change that makes a stage ready
also records it in the outbox in the same transaction; the outbox entry is removed only once
the broker has the message. A crash or a broker outage in between leaves the entry, and the
next :meth:`Coordinator.dispatch_due` (every worker runs it periodically) sends it again. A
message sent twice is harmless: a stage runs under a lock and only while it is pending.

A submitted URL's expansion (:mod:`pipeline.engine.distributed.expansion`) has an outbox entry
too (``<id>/expand``), kept as long as the job awaits it: sending it only pushes it back (the
message's lease, :func:`expansion_resend_s`), a run in flight pushes it while it runs, and its
outcome removes it; so an expansion whose message or worker was lost is sent again.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import timedelta
from typing import Protocol

from pipeline.core.dag import Dag
from pipeline.core.errors import ErrorCode, RecastError
from pipeline.core.job import FINISHED_STAGE_STATUSES, JobSpec, JobStatus, StageStatus, utcnow
from pipeline.core.settings import Settings
from pipeline.core.stage import Publisher, Stage
from pipeline.engine import jobflow
from pipeline.engine.distributed import counters
from pipeline.engine.distributed.counters import JobCounter
from pipeline.engine.distributed.jobstore import (
    EXPANSION_STAGE,
    Effects,
    JobEvent,
    JobRecord,
    JobStore,
)
from pipeline.engine.jobflow import Transition
from pipeline.stages import default_dag

log = logging.getLogger("recast.coordinator")


class StageDispatcher(Protocol):
    """Hands a stage of a job to the workers (Celery in workers/)."""

    def send(self, record: JobRecord, stage: Stage, limits: TimeLimits) -> str:
        """Queue the stage's task; returns its task id."""

    def send_expansion(self, record: JobRecord) -> str:
        """Queue the job's expansion (``recast.expand``); returns its task id."""

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


EXPANSION_RESEND_DOUBLINGS = 5
"""An expansion sent again and again without a run starting (a long queue, not a lost
message) waits at most 2**5 times ``cluster.reaper_stale_s`` between sends."""


def expansion_resend_s(settings: Settings, sends: int) -> float:
    """How long an expansion's message may wait for a worker before it is sent again: one
    stale period (``cluster.reaper_stale_s``) after the first send, doubling with each send
    no run started after."""
    doublings = min(max(sends - 1, 0), EXPANSION_RESEND_DOUBLINGS)
    return float(settings.cluster.reaper_stale_s * 2**doublings)


class JobConflict(RecastError):
    """The job is not in a state that allows what was asked."""

    def __init__(self, message: str):
        super().__init__(ErrorCode.REQUEST_CONFLICT, message)


class JobNotFound(RecastError):
    def __init__(self, job_id: str):
        super().__init__(ErrorCode.REQUEST_NOT_FOUND, f"There is no job {job_id}.")


def carry_out(record: JobRecord, transition: Transition, effects: Effects) -> None:
    """Turn a step of the job state machine (:mod:`pipeline.engine.jobflow`) into effects of
    the transaction that took it: stages that became ready, and retried ones after their
    delay, into the outbox; cancelled ones out of it; the stage that failed for good and the
    job's end into events and counters."""
    now = utcnow()
    for name in transition.ready:
        runtime = record.stage_runtime(name)
        if runtime.queued_at is None:
            runtime.queued_at = now
            effects.dispatch[name] = 0.0
    for name, delay in transition.retry_in.items():
        # Queued once the backoff or wait is over (a stage waiting for a paused host is not
        # in its queue's depth meanwhile); sending it sets the time again.
        record.stage_runtime(name).queued_at = now + timedelta(seconds=delay)
        effects.dispatch[name] = delay
    effects.undispatch.extend(transition.cancelled)
    if transition.failed is not None:
        error = record.stage(transition.failed).error
        code = error.code if error is not None else str(ErrorCode.INTERNAL)
        effects.event(JobEvent.STAGE_FAILED, record, transition.failed, code=code)
        effects.count(counters.failures(code))
    status = transition.job_status
    if status is not None and status in counters.FINISHED_JOB_STATUSES:
        error = record.state.error
        extra = {"code": error.code} if status is JobStatus.FAILED and error is not None else {}
        effects.event(JobEvent.job_ended(status), record, **extra)
        effects.count(counters.job_finished(status))


def schedule_ready(record: JobRecord, dag: Dag, effects: Effects) -> None:
    """Put every ready stage that is not queued yet into the outbox."""
    carry_out(record, Transition(ready=jobflow.ready(record.state, dag)), effects)


def follow_up(
    store: JobStore, publisher: Publisher | None, record: JobRecord | None, transition: Transition
) -> None:
    """What a step asks once its transaction is written: stop the job's running stages (its
    cancel flag, which their heartbeats watch), and withdraw what a job that ended without
    success published early, once it has settled (no stage of it runs any more)."""
    if record is None:
        return
    if transition.stop_running:
        store.set_cancelled(record.id)
    if (
        transition.settled
        and record.state.status is not JobStatus.SUCCEEDED
        and publisher is not None
    ):
        publisher.job_failed(record.state)


class Coordinator:
    """Submits, schedules, cancels and retries jobs run by the distributed executor."""

    def __init__(
        self,
        settings: Settings,
        store: JobStore,
        dispatcher: StageDispatcher,
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
            if jobflow.is_active(record.state):
                raise JobConflict(f"Job {job_id} is still {record.state.status}; cancel it first.")
            effects = Effects()
            for name in self.dag.names:
                runtime = record.stage_runtime(name)
                runtime.queued_at = None
                runtime.lost = 0
                runtime.fresh = True
            carry_out(record, jobflow.restart(record.state, self.dag), effects)
            effects.event(JobEvent.JOB_RERUN, record)
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
            if name == EXPANSION_STAGE:
                sent += self._send_expansion(job_id, lease)
                continue
            record = self.store.get(job_id)
            if record is None or name not in self.dag.names:
                self.store.sent(job_id, name, lease)
                continue
            state = record.stage(name)
            if not jobflow.is_active(record.state) or state.status is not StageStatus.PENDING:
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

    def _send_expansion(self, job_id: str, lease: float) -> int:
        """Send a job's expansion while the job awaits it; its entry stays, due again once
        the message has waited too long (:func:`expansion_resend_s`) unless a run starts."""
        record = self.store.get(job_id)
        if record is None or not record.awaiting_expansion:
            self.store.sent(job_id, EXPANSION_STAGE, lease)
            return 0
        task_id = self.dispatcher.send_expansion(record)

        def note(record: JobRecord) -> Effects | None:
            expansion = record.expansion
            if expansion is None or not record.awaiting_expansion:
                return None
            expansion.sends += 1
            expansion.task_id = task_id
            effects = Effects()
            effects.dispatch[EXPANSION_STAGE] = expansion_resend_s(self.settings, expansion.sends)
            return effects

        self.store.transact(job_id, note)
        self.store.sent(job_id, EXPANSION_STAGE, lease)  # gone unless the note pushed it back
        return 1

    def _note_sent(self, job_id: str, stage: str, task_id: str) -> None:
        def note(record: JobRecord) -> Effects | None:
            runtime = record.stage_runtime(stage)
            runtime.task_id = task_id
            runtime.queued_at = utcnow()
            runtime.reserved_by = None
            return Effects()

        self.store.transact(job_id, note)

    # -- cancel and retry --------------------------------------------------------------------

    def cancel(self, job_id: str) -> JobRecord:
        """Cancel a queued or running job: queued tasks are revoked, running stages stop (the
        cancel flag, set first, reaches them through their heartbeats); what the job published
        early is withdrawn once none of them runs any more."""
        self.store.set_cancelled(job_id)
        transition = jobflow.Transition()

        def cancel(record: JobRecord) -> Effects:
            nonlocal transition
            if not jobflow.is_active(record.state):
                raise JobConflict(f"Job {job_id} has already {record.state.status}.")
            effects = Effects()
            transition = jobflow.on_cancel(record.state, self.dag)
            carry_out(record, transition, effects)
            return effects

        try:
            record = self._must(self.store.transact(job_id, cancel), job_id)
        except JobConflict:
            self.store.set_cancelled(job_id, False)
            raise
        revoked = [
            task_id
            for task_id in (record.stage_runtime(n).task_id for n in transition.cancelled)
            if task_id
        ]
        if revoked:
            self.dispatcher.revoke(revoked)
        follow_up(self.store, self.publisher, record, transition)
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
                if record.stage(name).status not in FINISHED_STAGE_STATUSES:
                    runtime = record.stage_runtime(name)
                    runtime.queued_at = None
                    runtime.lost = 0
            carry_out(record, jobflow.resume(record.state, self.dag), effects)
            effects.event(JobEvent.JOB_RETRIED, record)
            effects.count(JobCounter.RETRIED)
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
        running = jobflow.running(record.state, self.dag)
        if running:
            raise JobConflict(
                f"Job {record.id} has stages still running ({', '.join(running)}); "
                "retry once they have ended."
            )

    @staticmethod
    def _must(record: JobRecord | None, job_id: str) -> JobRecord:
        if record is None:
            raise JobNotFound(job_id)
        return record
