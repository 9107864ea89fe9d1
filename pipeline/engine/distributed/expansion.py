"""A submitted URL is looked up on a worker, not in the producer's request: it may stand for a
playlist of hundreds of entries, and only a flat extraction (:func:`pipeline.stages.ingest.expand`)
tells.

:meth:`Expander.submit` records the job at once, QUEUED with no stage and an
:class:`~pipeline.engine.distributed.jobstore.Expansion` whose ``playlist`` is None, and puts
its expansion in the outbox (the entry ``<id>/expand``); the coordinator hands it to a worker
(the ``recast.expand`` task on the ingest queue, workers/), which runs :meth:`Expander.expand`:

- not a playlist: the job gets its stages, scheduled as any job's; it keeps its id;
- a playlist: one job per entry, with the parent's event, options, priority and callback (an
  entry submitted before gives its existing job, as a second submission would; ``force``
  reruns it), their ids recorded on the parent in the playlist's order; the parent then
  succeeds without running a stage;
- a failure for good: the parent fails with the error's code (``source.unavailable``...) and
  ``job.failed`` goes out as for any job;
- a transient error: the expansion goes back to the outbox after the backoff
  :func:`~pipeline.core.errors.retry_decision` gives (``executor.max_attempts``), like a
  stage's retry; no worker holds a task meanwhile;
- its source's host is paused (:mod:`pipeline.core.hostgate`): the look-up passes the host's
  gate as ingest does (without a download slot), so it waits, uncounted, back in the outbox
  for the time left; past ``sources.backoff.max_wait_s`` it fails with ``source.blocked``. A
  refusal (HTTP 401/403/429, a bot check) is recorded with the gate and makes it wait instead
  of failing; as for ingest, a job's own refusal while its host is not paused spends its
  attempt, so a URL refused to everyone fails (``source.blocked``) after
  ``executor.max_attempts`` instead of waiting ``max_wait_s``.

**Lost workers.** The expansion's outbox entry stays as long as the job awaits it. Sending it
pushes the entry back by the message's lease (one ``cluster.reaper_stale_s``, doubling with each
send no run started after: a long queue is not re-sent every stale period); a run holds
``lock:<id>:expand`` and pushes the entry past its lock's expiry (:func:`lease_s`) every
``cluster.heartbeat_s`` while it runs; its outcome removes the entry (or re-times it: a
retry, a wait). A worker that dies (SIGKILL, OOM, a lost machine) before or during a run
stops pushing, so the entry comes due and the next worker's outbox round (the reaper's) sends
the expansion again, hours before the broker's visibility timeout would. The run that finds
an earlier one started and never ended counts it lost; the
``cluster.max_worker_lost_attempts``-th loss fails the job with ``worker.lost``.

**Running an expansion twice is harmless** (a re-sent message, a run that only seemed dead):
entries' jobs are made idempotently (the job id is the entry's idempotency key; a forced
rerun of an entry's job that is already running again is left as it is), and the parent
changes only while it awaits its expansion, the whole children list written at once, so the
last run finds it recorded and changes nothing.

**Cancel and retry** (:meth:`Expander.cancel`, :meth:`Expander.retry`, what producers call).
Cancelling a job that awaits its expansion is the coordinator's cancel; a run in flight that
then finds a playlist records its entries on the cancelled parent and cancels them. Cancelling
a playlist's parent cancels its entries' jobs that are still queued or running, through the
coordinator's cancel (finished ones stay as they are; the parent keeps its status: its own
work, the expansion, is done); with none left to cancel it is a conflict. Retrying a job
whose expansion failed or was cancelled expands it again; retrying a playlist's parent
retries its entries' jobs that failed or were cancelled (a conflict when there is none), and
a parent cancelled while it was expanded succeeds again; any other job is the coordinator's
retry.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

from pipeline.core.errors import RecastError, as_recast_error, retry_decision
from pipeline.core.hostgate import HostGate, HostWait
from pipeline.core.job import ErrorInfo, JobSpec, JobStatus, utcnow
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
from pipeline.engine.distributed.hostgate import RedisHostGate
from pipeline.engine.distributed.jobstore import (
    EXPANSION_STAGE,
    REDIS_DOWN,
    Effects,
    Expansion,
    JobEvent,
    JobRecord,
    JobStore,
)
from pipeline.engine.distributed.stagerun import worker_lost
from pipeline.engine.jobflow import Transition
from pipeline.stages.ingest import expand

log = logging.getLogger("recast.expansion")

RETRYABLE = (JobStatus.FAILED, JobStatus.CANCELLED)


class ExpansionState(StrEnum):
    """Where a URL's expansion stands, as producers see it."""

    EXPANDING = "expanding"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


class ExpandOutcome(StrEnum):
    """What one run of :meth:`Expander.expand` came to (the task's return value)."""

    SINGLE = "single"
    PLAYLIST = "playlist"
    FAILED = "failed"
    RETRY = "retry"
    """A transient error: back in the outbox after the backoff."""
    WAITING = "waiting"
    """The source's host is paused: back in the outbox for the time left, uncounted."""
    BUSY = "busy"
    """Another run holds the expansion's lock."""
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
    return record.awaiting_expansion


def is_playlist(record: JobRecord) -> bool:
    return record.expansion is not None and bool(record.expansion.playlist)


def lease_s(store: JobStore) -> float:
    """How far a run in flight keeps its outbox entry ahead: past its lock's expiry (one
    ``reaper_stale_s`` after the last renewal) by a heartbeat, so that once the entry comes
    due the dead run's lock is gone and the expansion sent again can take it."""
    return store.settings.reaper_stale_s + store.settings.heartbeat_s


def _end_run(expansion: Expansion, effects: Effects) -> None:
    """The expansion has its outcome: nothing left to send, nothing running."""
    expansion.running = False
    expansion.detail = ""
    expansion.waiting_since = None
    effects.undispatch.append(EXPANSION_STAGE)


def _fail_with(record: JobRecord, error: RecastError, effects: Effects) -> None:
    assert record.expansion is not None
    _end_run(record.expansion, effects)
    record.state.status = JobStatus.FAILED
    record.state.error = ErrorInfo.from_error(error)
    carry_out(record, Transition(job_status=JobStatus.FAILED), effects)
    effects.count(counters.failures(str(error.code)))


class _Lease(threading.Thread):
    """Renews a running expansion's lock and pushes its outbox entry a stale period ahead
    every ``heartbeat_s``, so the expansion is sent again only if this run stops (dies)."""

    def __init__(self, store: JobStore, job_id: str, token: str):
        super().__init__(name=f"expansion-lease-{job_id}", daemon=True)
        self.store = store
        self.job_id = job_id
        self.token = token
        self._stopped = threading.Event()

    def run(self) -> None:
        config = self.store.settings
        while not self._stopped.wait(config.heartbeat_s):
            try:
                if not self.store.hold(
                    self.job_id, EXPANSION_STAGE, self.token, lease_s(self.store)
                ):
                    # Judged dead (a stall longer than a stale period): another run may take
                    # over. Going on is harmless (see the module's docstring).
                    log.warning("lost the expansion's lease", extra={"job_id": self.job_id})
                    return
            except REDIS_DOWN:
                continue  # Redis is restarting: the next renewal catches up

    def stop(self) -> None:
        self._stopped.set()
        self.join(timeout=5)


class Expander:
    """Submits URLs for expansion, carries expansions out, and cancels and retries jobs
    (playlists' parents included), through the coordinator."""

    def __init__(
        self,
        coordinator: Coordinator,
        translate: Callable[[BaseException], RecastError | None] | None = None,
        host_gate: HostGate | None = None,
    ):
        self.coordinator = coordinator
        self.translate = translate
        self.store = coordinator.store
        self.settings = coordinator.settings
        self.dag = coordinator.dag
        self.host_gate = host_gate or RedisHostGate(self.store, self.settings.sources.backoff)

    # -- the producer's side -----------------------------------------------------------------

    def submit(self, spec: JobSpec, *, force: bool = False) -> Submission:
        """The job for a URL: created waiting for its expansion (sent to a worker), or the
        existing one.

        Again without ``force``: the existing job (one still waiting has its expansion in the
        outbox, which sends it again should it be lost; a job recorded without that entry
        gets it back). With ``force``: a job that ran as a single video runs again from
        scratch (the coordinator's rerun); a playlist, or a job whose expansion did not
        finish, is expanded again.
        """

        def wait(record: JobRecord) -> Effects:
            record.expansion = Expansion(force=force)
            effects = Effects()
            effects.dispatch[EXPANSION_STAGE] = 0.0
            return effects

        record, created = self.store.create(spec, [], wait)
        if created:
            self.coordinator.dispatch_job(record.id)
            return Submission(record, True)
        if not force:
            if awaiting(record):
                self.store.schedule_if_absent(record.id, EXPANSION_STAGE)
                self.coordinator.dispatch_job(record.id)
            return Submission(record, False)
        if record.expansion is None or record.expansion.playlist is False:
            rerun, _ = self.coordinator.submit(spec, force=True)
            return Submission(rerun, False)
        return Submission(self._again(record.id, force=True, retried=False), False)

    def cancel(self, job_id: str) -> JobRecord:
        """Cancel a job; a playlist's parent: its entries' jobs still queued or running."""
        record = self._must(self.store.get(job_id), job_id)
        if not is_playlist(record):
            return self.coordinator.cancel(job_id)
        if not self._cancel_entries(record, {job_id}):
            raise JobConflict(
                f"Job {job_id} is a playlist whose entries' jobs have all ended; "
                "there is nothing to cancel."
            )
        return self._must(self.store.get(job_id), job_id)

    def retry(self, job_id: str) -> JobRecord:
        """Run a failed or cancelled job again: its expansion if that did not finish, a
        playlist's entries' jobs that failed or were cancelled, or (any other job) the
        stages that did not finish (the coordinator's retry)."""
        return self._retry(job_id, {job_id})

    def _retry(self, job_id: str, seen: set[str]) -> JobRecord:
        record = self._must(self.store.get(job_id), job_id)
        if expansion_state(record) in (ExpansionState.FAILED, ExpansionState.CANCELLED):
            force = record.expansion.force if record.expansion else False
            return self._again(job_id, force=force)
        if not is_playlist(record):
            return self.coordinator.retry(job_id)
        retried = 0
        for child in self.store.get_many(self._children(record)):
            if child.id in seen:
                continue
            seen.add(child.id)
            if child.state.status not in RETRYABLE and not is_playlist(child):
                continue
            try:
                self._retry(child.id, seen)
            except JobConflict:  # its stages still run, or a playlist with nothing to retry
                continue
            retried += 1
        if not retried:
            raise JobConflict(
                f"Job {job_id} is a playlist with no failed or cancelled entry to retry."
            )
        return self._must(self.store.transact(job_id, _succeeded_again), job_id)

    def _cancel_entries(self, record: JobRecord, seen: set[str]) -> int:
        """Cancel the active jobs of a playlist's entries (entries that are playlists in
        turn: theirs); how many were cancelled."""
        cancelled = 0
        for child in self.store.get_many(self._children(record)):
            if child.id in seen:
                continue
            seen.add(child.id)
            if is_playlist(child):
                cancelled += self._cancel_entries(child, seen)
                continue
            if not jobflow.is_active(child.state):
                continue
            try:
                self.coordinator.cancel(child.id)
            except JobConflict:  # it ended meanwhile
                continue
            cancelled += 1
        return cancelled

    @staticmethod
    def _children(record: JobRecord) -> list[str]:
        return list(record.expansion.children) if record.expansion is not None else []

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
            effects.dispatch[EXPANSION_STAGE] = 0.0
            if retried:
                effects.event(JobEvent.JOB_RETRIED, record)
                effects.count(JobCounter.RETRIED)
            else:
                effects.event(JobEvent.JOB_RERUN, record)
            return effects

        self.store.set_cancelled(job_id, False)
        record = self._must(self.store.transact(job_id, again), job_id)
        self.coordinator.dispatch_job(job_id)
        return record

    # -- the worker's side -------------------------------------------------------------------

    def expand(self, job_id: str, worker: str = "") -> ExpandResult:
        """Look the job's URL up and act on what it is (see the module's docstring), under
        the expansion's lock and lease."""
        record = self.store.get(job_id)
        if record is None or not awaiting(record):
            return ExpandResult(ExpandOutcome.SKIPPED)
        token = uuid.uuid4().hex
        if not self.store.acquire(job_id, EXPANSION_STAGE, token):
            return ExpandResult(ExpandOutcome.BUSY)
        lease = _Lease(self.store, job_id, token)
        try:
            started = self._start(job_id, worker)
            if started is None:
                return ExpandResult(ExpandOutcome.SKIPPED)
            if started.state.status is JobStatus.FAILED:
                return ExpandResult(ExpandOutcome.FAILED)
            lease.start()
            return self._run(started)
        except (SystemExit, KeyboardInterrupt):
            self._give_back(job_id)  # the worker is shutting down, not crashing
            raise
        finally:
            if lease.is_alive():
                lease.stop()
            self.store.release(job_id, EXPANSION_STAGE, token)
            self.coordinator.dispatch_job(job_id)

    def _start(self, job_id: str, worker: str) -> JobRecord | None:
        """Mark the run started (its lease a stale period ahead); None when there is nothing
        to do. The job comes back FAILED when the runs before died too often."""
        started = False
        lost_for_good = False
        config = self.settings.cluster

        def start(record: JobRecord) -> Effects | None:
            nonlocal started, lost_for_good
            started = lost_for_good = False
            expansion = record.expansion
            if expansion is None or not awaiting(record):
                return None
            effects = Effects()
            if expansion.running:  # the run before this one died; its lease ran out
                expansion.lost += 1
                effects.count(counters.WORKER_LOST)
                lost_worker = expansion.worker or ""
                effects.event(
                    JobEvent.STAGE_WORKER_LOST, record, EXPANSION_STAGE, worker=lost_worker
                )
                if expansion.lost >= config.max_worker_lost_attempts:
                    _fail_with(record, worker_lost(EXPANSION_STAGE, expansion.lost), effects)
                    lost_for_good = True
                    return effects
            expansion.running = True
            expansion.attempts += 1
            expansion.sends = 0
            expansion.worker = worker or None
            expansion.detail = "looking the URL up"
            effects.dispatch[EXPANSION_STAGE] = lease_s(self.store)
            effects.event(JobEvent.STAGE_STARTED, record, EXPANSION_STAGE, worker=worker)
            started = True
            return effects

        record = self.store.transact(job_id, start)
        if lost_for_good:
            follow_up(self.store, self.coordinator.publisher, record, Transition(settled=True))
            return record
        return record if started else None

    def _run(self, record: JobRecord) -> ExpandResult:
        job_id = record.id
        spec = record.state.spec
        attempt = record.expansion.attempts if record.expansion is not None else 1
        try:
            entries = expand(spec.source, self.settings, self.host_gate, holder=job_id)
        except HostWait as wait:
            return self._wait(job_id, wait)
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
                self._later(job_id, error, decision.delay_s)
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

    def _later(self, job_id: str, error: RecastError, delay_s: float) -> None:
        """A transient error: the expansion back in the outbox after ``delay_s``."""

        def later(record: JobRecord) -> Effects | None:
            expansion = record.expansion
            if expansion is None or not awaiting(record):
                return None
            expansion.running = False
            expansion.detail = f"retrying after {error.code}"
            effects = Effects()
            effects.dispatch[EXPANSION_STAGE] = delay_s
            effects.count(counters.stage_errors(EXPANSION_STAGE, error.code))
            effects.event(JobEvent.STAGE_RETRYING, record, EXPANSION_STAGE, code=error.code)
            return effects

        self.store.transact(job_id, later)

    def _wait(self, job_id: str, wait: HostWait) -> ExpandResult:
        """The source's host is paused: back in the outbox for the time left, the attempt
        given back; past ``max_wait_s`` the job fails (``source.blocked``). The rules of a
        stage's wait (:func:`pipeline.engine.jobflow.on_stage_waiting`), so a job's own
        refusal while its host is not paused keeps its attempt, and fails the job once
        ``executor.max_attempts`` are spent."""
        backoff = self.settings.sources.backoff
        give_up = wait.gave_up(backoff.max_wait_s) if wait.blocked else None
        refused = wait.refused_every_time() if wait.refused_alone else None
        max_attempts = self.settings.executor.max_attempts
        delay_s = wait.wait.delay_s
        failed = False

        def waiting(record: JobRecord) -> Effects | None:
            nonlocal failed
            failed = False
            expansion = record.expansion
            if expansion is None or not awaiting(record):
                return None
            effects = Effects()
            if refused is not None and expansion.attempts >= max_attempts:
                _fail_with(record, refused, effects)
                failed = True
                return effects
            if give_up is not None:
                now = utcnow()
                since = expansion.waiting_since or now
                expansion.waiting_since = since
                if (now - since).total_seconds() + delay_s > backoff.max_wait_s:
                    _fail_with(record, give_up, effects)
                    failed = True
                    return effects
            expansion.running = False
            if refused is None:
                expansion.attempts = max(0, expansion.attempts - 1)
            expansion.detail = wait.wait.detail
            effects.dispatch[EXPANSION_STAGE] = delay_s
            effects.count(counters.stage_errors(EXPANSION_STAGE, wait.code))
            effects.event(JobEvent.STAGE_WAITING, record, EXPANSION_STAGE, host=wait.wait.host)
            return effects

        record = self.store.transact(job_id, waiting)
        if failed:
            follow_up(self.store, self.coordinator.publisher, record, Transition(settled=True))
            return ExpandResult(ExpandOutcome.FAILED)
        return ExpandResult(ExpandOutcome.WAITING, retry_in_s=delay_s)

    def _give_back(self, job_id: str) -> None:
        """The run stops with its worker: sent again at once, its attempt given back."""

        def give_back(record: JobRecord) -> Effects | None:
            expansion = record.expansion
            if expansion is None or not awaiting(record) or not expansion.running:
                return None
            expansion.running = False
            expansion.attempts = max(0, expansion.attempts - 1)
            effects = Effects()
            effects.dispatch[EXPANSION_STAGE] = 0.0
            return effects

        self.store.transact(job_id, give_back)

    def _single(self, job_id: str) -> None:
        def become_video(record: JobRecord) -> Effects | None:
            if not awaiting(record) or record.expansion is None:
                return None
            record.expansion.playlist = False
            for name in self.dag.names:
                record.stage(name)
                record.stage_runtime(name).fresh = record.expansion.force
            effects = Effects()
            _end_run(record.expansion, effects)
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
        cancelled_meanwhile = False

        def record_children(record: JobRecord) -> Effects | None:
            nonlocal cancelled_meanwhile
            cancelled_meanwhile = False
            expansion = record.expansion
            if expansion is None or expansion.playlist is not None:
                return None  # another run recorded it first
            effects = Effects()
            if awaiting(record):
                record.state.status = JobStatus.SUCCEEDED
                carry_out(record, Transition(job_status=JobStatus.SUCCEEDED), effects)
            elif record.state.status is JobStatus.CANCELLED:
                cancelled_meanwhile = True  # its entries are what the producer cancelled
            else:
                return None
            expansion.playlist = True
            expansion.children = children
            _end_run(expansion, effects)
            return effects

        record = self.store.transact(job_id, record_children)
        if cancelled_meanwhile and record is not None:
            self._cancel_entries(record, {job_id})

    def _fail(self, job_id: str, error: RecastError) -> None:
        failed = False

        def fail(record: JobRecord) -> Effects | None:
            nonlocal failed
            failed = False  # a transaction may run this more than once
            if not awaiting(record):
                return None
            effects = Effects()
            _fail_with(record, error, effects)
            failed = True
            return effects

        record = self.store.transact(job_id, fail)
        if failed:
            follow_up(self.store, self.coordinator.publisher, record, Transition(settled=True))

    @staticmethod
    def _must(record: JobRecord | None, job_id: str) -> JobRecord:
        if record is None:
            raise JobNotFound(job_id)
        return record


def _succeeded_again(record: JobRecord) -> Effects | None:
    """A playlist's parent whose entries were retried: succeeded again if it was cancelled
    while it was being expanded (its own work, the expansion, is done)."""
    if record.state.status is JobStatus.SUCCEEDED:
        return None
    record.state.status = JobStatus.SUCCEEDED
    record.state.error = None
    effects = Effects()
    effects.event(JobEvent.JOB_RETRIED, record)
    effects.count(JobCounter.RETRIED)
    carry_out(record, Transition(job_status=JobStatus.SUCCEEDED), effects)
    return effects
