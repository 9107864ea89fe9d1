"""Runs one stage of one job for the distributed executor: under a lock, with a heartbeat.

What a worker's task calls (workers/tasks.py). It:

1. runs the stage only if the job is active, the stage pending and its requirements finished
   (a duplicate or late message does nothing);
2. takes the stage's lock with a fresh token, so two workers never run the same stage, and
   renews it with a heartbeat while the stage runs; the heartbeat also watches the job's
   cancel flag and sets the stage's cancel event, which stops a running ffmpeg or download;
3. runs the stage with :func:`pipeline.engine.runner.run_stage` (the same runner as the local
   executor: skip if done, partial directory, commit), fetching its inputs from the
   workspace store and uploading its outputs when workers share no disk;
4. records the outcome as a step of the job state machine (:mod:`pipeline.engine.jobflow`,
   the local executor's too): done (and queues the stages that became ready), a retry later
   with backoff and jitter for a transient error (:func:`pipeline.core.errors.retry_decision`;
   a storage outage, ``storage.unavailable``, for ``storage.retry_span_s`` at least), a wait
   for a paused source host (back to the outbox for the time left, uncounted, so no worker
   holds a task while it waits: :mod:`pipeline.core.hostgate`, here in Redis), or the
   stage's failure for good, which fails the job at once (pending stages cancelled, running
   ones finish). The run that leaves a failed or cancelled job with no stage running
   withdraws what the job published early. Every write is fenced by the lock token: a run
   that lost its lock (the reaper gave the stage to another worker) changes nothing.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
import uuid
from collections.abc import Callable
from enum import StrEnum

from pipeline.core import readers
from pipeline.core.errors import ErrorCode, RecastError, as_recast_error, retry_decision
from pipeline.core.hostgate import HostGate, HostWait
from pipeline.core.job import ErrorInfo, StageStatus
from pipeline.core.settings import Settings
from pipeline.core.stage import Publisher, Stage, StageContext, StageResult
from pipeline.core.workspace import Workspace
from pipeline.engine import jobflow
from pipeline.engine.distributed import counters
from pipeline.engine.distributed.coordinator import Coordinator, carry_out, follow_up
from pipeline.engine.distributed.hostgate import RedisHostGate
from pipeline.engine.distributed.jobstore import (
    REDIS_DOWN,
    Effects,
    JobEvent,
    JobRecord,
    JobStore,
)
from pipeline.engine.distributed.remote_workspace import RemoteWorkspace, ancestors
from pipeline.engine.runner import run_stage
from pipeline.storage import storage_roots

log = logging.getLogger("recast.stagerun")

Translate = Callable[[BaseException], RecastError | None]
"""Maps an executor's own exceptions (Celery's soft time limit) to the taxonomy."""


class StageRunOutcome(StrEnum):
    """How one stage task ended on a worker (the task's return value)."""

    RAN = "ran"
    NOT_RUNNABLE = "not-runnable"
    BUSY = "busy"
    RETRY = "retry"
    WAITING = "waiting"
    FAILED = "failed"
    CANCELLED = "cancelled"
    LOST_LOCK = "lost-lock"


class Heartbeat(threading.Thread):
    """Renews a running stage's lock and heartbeat; turns the job's cancel flag into the
    stage's cancel event."""

    def __init__(self, store: JobStore, job_id: str, stage: str, token: str):
        super().__init__(name=f"heartbeat-{job_id}-{stage}", daemon=True)
        self.store = store
        self.job_id = job_id
        self.stage = stage
        self.token = token
        self.cancel_event = threading.Event()
        self.lock_lost = False
        self._stopped = threading.Event()

    def run(self) -> None:
        config = self.store.settings
        poll = min(config.cancel_poll_s, config.heartbeat_s)
        next_beat = time.monotonic() + config.heartbeat_s
        while not self._stopped.wait(poll):
            try:
                if self.store.is_cancelled(self.job_id):
                    self.cancel_event.set()
                if time.monotonic() >= next_beat:
                    next_beat = time.monotonic() + config.heartbeat_s
                    if not self.store.renew(self.job_id, self.stage, self.token):
                        log.warning(
                            "lost the lock of a running stage; stopping it",
                            extra={"job_id": self.job_id, "stage": self.stage},
                        )
                        self.lock_lost = True
                        self.cancel_event.set()
            except REDIS_DOWN:
                continue  # Redis is restarting: the stage goes on, the next beat catches up

    def stop(self) -> None:
        self._stopped.set()
        self.join(timeout=5)


class StageRunner:
    """Executes stages for the tasks of one worker process."""

    def __init__(
        self,
        coordinator: Coordinator,
        publisher: Publisher | None = None,
        remote: RemoteWorkspace | None = None,
        translate: Translate | None = None,
        host_gate: HostGate | None = None,
    ):
        self.coordinator = coordinator
        self.settings: Settings = coordinator.settings
        self.store = coordinator.store
        self.dag = coordinator.dag
        self.publisher = publisher
        self.remote = remote
        self.translate = translate
        self.host_gate = host_gate or RedisHostGate(self.store, self.settings.sources.backoff)

    def execute(
        self, job_id: str, stage_name: str, *, task_id: str, worker: str
    ) -> StageRunOutcome:
        record = self.store.get(job_id)
        if record is None or stage_name not in self.dag.names:
            return StageRunOutcome.NOT_RUNNABLE
        stage = self.dag[stage_name]
        if not self._runnable(record, stage):
            return StageRunOutcome.NOT_RUNNABLE
        token = uuid.uuid4().hex
        if not self.store.acquire(job_id, stage.name, token):
            return StageRunOutcome.BUSY
        heartbeat: Heartbeat | None = None
        try:
            if not self._start(job_id, stage, token, task_id, worker):
                return StageRunOutcome.NOT_RUNNABLE
            self.store.retrying(lambda: self.store.renew(job_id, stage.name, token), "heartbeat")
            heartbeat = Heartbeat(self.store, job_id, stage.name, token)
            heartbeat.start()
            return self._run(job_id, stage, token, heartbeat)
        finally:
            if heartbeat is not None:
                heartbeat.stop()
            self.store.release(job_id, stage.name, token)
            self.coordinator.dispatch_job(job_id)

    # -- steps -------------------------------------------------------------------------------

    def _runnable(self, record: JobRecord, stage: Stage) -> bool:
        return jobflow.runnable(record.state, self.dag, stage.name)

    def _start(self, job_id: str, stage: Stage, token: str, task_id: str, worker: str) -> bool:
        started = False
        lost_for_good = jobflow.Transition()
        max_lost = self.settings.cluster.max_worker_lost_attempts

        def start(record: JobRecord) -> Effects | None:
            nonlocal started, lost_for_good
            started = False
            lost_for_good = jobflow.Transition()
            if not self._runnable(record, stage):
                return None
            state = record.stage(stage.name)
            runtime = record.stage_runtime(stage.name)
            effects = Effects()
            if state.status is StageStatus.RUNNING:
                # The run before this one died and its lock expired before the reaper came.
                runtime.lost += 1
                effects.count(counters.WORKER_LOST)
                if runtime.lost >= max_lost:
                    error = ErrorInfo.from_error(worker_lost(stage.name, runtime.lost))
                    lost_for_good = jobflow.on_stage_failed(
                        record.state, self.dag, stage.name, error, jobflow.GIVE_UP
                    )
                    carry_out(record, lost_for_good, effects)
                    return effects
            started = True
            carry_out(record, jobflow.start(record.state, stage.name), effects)
            runtime.token = token
            runtime.task_id = task_id
            runtime.worker = worker
            runtime.reserved_by = None
            effects.undispatch.append(stage.name)
            effects.event(JobEvent.STAGE_STARTED, record, stage.name, worker=worker)
            return effects

        record = self.store.transact(job_id, start)
        follow_up(self.store, self.publisher, record, lost_for_good)
        return started

    def _run(self, job_id: str, stage: Stage, token: str, heartbeat: Heartbeat) -> StageRunOutcome:
        record = self.store.get(job_id)
        assert record is not None
        runtime = record.stage_runtime(stage.name)
        workspace = Workspace.for_job(self.settings.storage.workspace, job_id)
        ctx = StageContext(
            job_id=job_id,
            stage=stage.name,
            spec=record.state.spec,
            settings=self.settings,
            workspace=workspace,
            out=workspace.partial_dir(stage.name),
            on_progress=_ProgressWriter(self.store, job_id, token),
            publisher=self.publisher,
            cancel_event=heartbeat.cancel_event,
            host_gate=self.host_gate,
        )
        try:
            if runtime.fresh:
                workspace.discard_stage(stage.name)
                if self.remote is not None:
                    self.remote.discard(job_id, stage.name)
            if self.remote is not None:
                for name in ancestors(self.dag, stage.name):
                    self.remote.fetch(workspace, job_id, name)
            result, ran = run_stage(stage, ctx)
            if self.remote is not None:
                self.remote.upload(workspace, job_id, stage.name)
        except (SystemExit, KeyboardInterrupt):
            if not heartbeat.lock_lost:
                self._give_back(job_id, stage, token)  # the worker is shutting down
            raise
        except BaseException as exc:  # every failure is classified, then decided on
            error = (self.translate(exc) if self.translate else None) or as_recast_error(
                exc, (*storage_roots(self.settings), workspace.root)
            )
            if error.code is ErrorCode.INTERNAL:
                log.exception("stage crashed", extra={"job_id": job_id, "stage": stage.name})
            if heartbeat.lock_lost:
                return StageRunOutcome.LOST_LOCK
            return self._failed(job_id, stage, token, error)
        duration = self._media_duration(workspace) if record.media_duration is None else None
        return self._completed(job_id, stage, token, result, ran, ctx.warnings, duration)

    @staticmethod
    def _media_duration(workspace: Workspace) -> float | None:
        ingest = workspace.stage_dir(readers.INGEST)
        if not (ingest / readers.INFO_FILE).is_file():
            return None
        info = readers.read_source_info(ingest)
        return info.media_duration or info.duration

    def _completed(
        self,
        job_id: str,
        stage: Stage,
        token: str,
        result: StageResult,
        ran: bool,
        warnings: list[str],
        duration: float | None,
    ) -> StageRunOutcome:
        outcome = StageRunOutcome.LOST_LOCK
        finished = jobflow.Transition()

        def complete(record: JobRecord) -> Effects | None:
            nonlocal outcome, finished
            finished = jobflow.Transition()
            runtime = record.stage_runtime(stage.name)
            if runtime.token != token:
                outcome = StageRunOutcome.LOST_LOCK
                return None
            outcome = StageRunOutcome.RAN
            state = record.stage(stage.name)
            effects = Effects(clear_heartbeat=[stage.name])
            state.detail = result.detail if ran else f"already done {result.detail}".strip()
            state.reused = not ran
            state.warnings = list(warnings)
            if ran:
                runtime.completions += 1
                runtime.fresh = False
                effects.count(counters.stage_completed(stage.name))
            else:
                effects.count(counters.stage_reused(stage.name))
            card_id = result.data.get("card_id")
            if isinstance(card_id, str):
                record.state.card_id = card_id
            if duration is not None:
                record.media_duration = duration
            effects.event(JobEvent.STAGE_FINISHED, record, stage.name, result=str(result.status))
            finished = jobflow.on_stage_done(record.state, self.dag, stage.name, result.status)
            carry_out(record, finished, effects)
            return effects

        record = self.store.transact(job_id, complete)
        follow_up(self.store, self.publisher, record, finished)
        return outcome

    def _give_back(self, job_id: str, stage: Stage, token: str) -> None:
        """Queue the stage again, uncounted: its worker is stopping, not crashing."""
        given_back = jobflow.Transition()

        def give_back(record: JobRecord) -> Effects | None:
            nonlocal given_back
            given_back = jobflow.Transition()
            runtime = record.stage_runtime(stage.name)
            state = record.stage(stage.name)
            if runtime.token != token or state.status is not StageStatus.RUNNING:
                return None
            effects = Effects(clear_heartbeat=[stage.name])
            runtime.token = None
            given_back = jobflow.on_stage_interrupted(
                record.state, self.dag, stage.name, "worker shut down; queued again"
            )
            carry_out(record, given_back, effects)
            return effects

        record = self.store.transact(job_id, give_back)
        follow_up(self.store, self.publisher, record, given_back)

    def _failed(self, job_id: str, stage: Stage, token: str, error: RecastError) -> StageRunOutcome:
        outcome = StageRunOutcome.LOST_LOCK
        transition = jobflow.Transition()
        stopped = error.code is ErrorCode.JOB_CANCELLED or self.store.is_cancelled(job_id)
        if isinstance(error, HostWait) and not stopped:
            return self._waiting(job_id, stage, token, error)
        config = self.settings.executor
        info = ErrorInfo.from_error(
            RecastError(ErrorCode.JOB_CANCELLED, "The job was cancelled.") if stopped else error
        )

        def failed(record: JobRecord) -> Effects | None:
            nonlocal outcome, transition
            transition = jobflow.Transition()
            if record.stage_runtime(stage.name).token != token:
                outcome = StageRunOutcome.LOST_LOCK
                return None
            state = record.stage(stage.name)
            effects = Effects(clear_heartbeat=[stage.name])
            decision = retry_decision(
                error,
                state.attempts,
                max_attempts=config.max_attempts,
                base_delay_s=config.retry_base_delay_s,
                max_delay_s=config.retry_max_delay_s,
                storage_span_s=self.settings.storage.retry_span_s,
            )
            transition = jobflow.on_stage_failed(record.state, self.dag, stage.name, info, decision)
            if not stopped:
                effects.count(counters.stage_errors(stage.name, error.code))
            outcome = _FAILED_OUTCOMES[state.status]
            if outcome is StageRunOutcome.RETRY:
                effects.event(JobEvent.STAGE_RETRYING, record, stage.name, code=error.code)
            elif outcome is StageRunOutcome.CANCELLED:
                effects.event(JobEvent.STAGE_CANCELLED, record, stage.name)
            carry_out(record, transition, effects)
            return effects

        record = self.store.transact(job_id, failed)
        follow_up(self.store, self.publisher, record, transition)
        return outcome

    def _waiting(self, job_id: str, stage: Stage, token: str, wait: HostWait) -> StageRunOutcome:
        """The stage's source host is paused: back to the outbox for the time left, its
        attempt given back (or failed with ``source.blocked`` past the longest wait)."""
        outcome = StageRunOutcome.LOST_LOCK
        transition = jobflow.Transition()
        backoff = self.settings.sources.backoff
        give_up = ErrorInfo.from_error(wait.gave_up(backoff.max_wait_s)) if wait.blocked else None
        refused = ErrorInfo.from_error(wait.refused_every_time()) if wait.refused_alone else None

        def waiting(record: JobRecord) -> Effects | None:
            nonlocal outcome, transition
            transition = jobflow.Transition()
            if record.stage_runtime(stage.name).token != token:
                outcome = StageRunOutcome.LOST_LOCK
                return None
            effects = Effects(clear_heartbeat=[stage.name])
            transition = jobflow.on_stage_waiting(
                record.state,
                self.dag,
                stage.name,
                wait.wait.delay_s,
                wait.wait.detail,
                give_up=give_up,
                max_wait_s=backoff.max_wait_s,
                refused=refused,
                max_attempts=self.settings.executor.max_attempts,
            )
            status = record.stage(stage.name).status
            if status is StageStatus.FAILED:
                outcome = StageRunOutcome.FAILED
                effects.count(counters.stage_errors(stage.name, ErrorCode.SOURCE_BLOCKED))
            elif status is StageStatus.PENDING:
                outcome = StageRunOutcome.WAITING
                effects.count(counters.stage_errors(stage.name, wait.code))
                effects.event(JobEvent.STAGE_WAITING, record, stage.name, host=wait.wait.host)
            else:
                outcome = StageRunOutcome.CANCELLED
                effects.event(JobEvent.STAGE_CANCELLED, record, stage.name)
            carry_out(record, transition, effects)
            return effects

        record = self.store.transact(job_id, waiting)
        follow_up(self.store, self.publisher, record, transition)
        return outcome


_FAILED_OUTCOMES = {
    StageStatus.PENDING: StageRunOutcome.RETRY,
    StageStatus.FAILED: StageRunOutcome.FAILED,
    StageStatus.CANCELLED: StageRunOutcome.CANCELLED,
}
"""A failed run's outcome, by the status the state machine gave its stage."""


def worker_lost(stage: str, runs: int) -> RecastError:
    return RecastError(
        ErrorCode.WORKER_LOST,
        f"The worker running stage {stage} died {runs} times; the input may be crashing it.",
    )


class _ProgressWriter:
    """Writes a stage's progress to the store, at most once per ``progress_interval_s``."""

    def __init__(self, store: JobStore, job_id: str, token: str):
        self.store = store
        self.job_id = job_id
        self.token = token
        self.last = 0.0

    def __call__(self, stage: str, percent: float, detail: str) -> None:
        now = time.monotonic()
        if now - self.last < self.store.settings.progress_interval_s and percent < 100:
            return
        self.last = now

        def update(record: JobRecord) -> Effects | None:
            state = record.stage(stage)
            running = state.status is StageStatus.RUNNING
            if record.stage_runtime(stage).token != self.token or not running:
                return None
            state.progress = percent
            state.detail = detail
            return Effects()

        with contextlib.suppress(*REDIS_DOWN):  # best effort; outcomes are written with retries
            self.store.transact(self.job_id, update, retry=False)
