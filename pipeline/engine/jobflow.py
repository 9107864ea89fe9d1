"""The job's state machine, one for both executors: pure functions over a job's state and DAG.

No I/O, no threads, no Redis. Each step changes the :class:`~pipeline.core.job.JobState` it is
handed, in place, and returns a :class:`Transition`: what the executor must now do about it
(hand stages over, run one again later, withdraw queued ones, stop running ones, settle the
job). The local executor (:mod:`pipeline.engine.local`) applies steps under its lock; the
distributed one (:mod:`pipeline.engine.distributed`: coordinator, stage run, reaper) inside a
job store transaction, where a transition becomes outbox entries, events and counters.

A stage::

    PENDING ─start─► RUNNING ─done─► DONE | SKIPPED
      ▲  │              │
      │  │              ├─ transient error, budget left; worker lost or shut down ─► PENDING
      │  │              ├─ waiting for its source's host (uncounted, within max_wait) ─► PENDING
      │  │              ├─ failed for good ─► FAILED
      │  │              └─ stopped after its job ended (cancel) ─► CANCELLED
      │  └─ its job ended ─► CANCELLED
      └─ resume (FAILED, CANCELLED; every one from scratch on restart)

A job::

    QUEUED ─a stage starts─► RUNNING ─every stage DONE or SKIPPED─► SUCCEEDED
    QUEUED | RUNNING ─a stage failed for good─► FAILED
    QUEUED | RUNNING ─cancel─► CANCELLED
    FAILED | CANCELLED ─resume─► QUEUED

The failure policy (:data:`FAILURE_POLICY`), the same in both executors: a stage that fails for
good (a permanent error, a transient one past its retry budget, a worker lost too often) fails
the job at once with that stage's error. Every stage still pending is cancelled, whether it
depends on the failed one or not: nothing new starts for a failed job, so no publishing stage
runs for it. Stages already running finish and keep their result, so a retry resumes from them
(unless :attr:`FailurePolicy.stop_running`). The job *settles* when no stage of it runs any
more: only then does the executor withdraw what the job published early, so nothing a stage
was still writing outlives the withdrawal. Cancel ends the job the same way, except that
running stages are told to stop.

Retry decisions are made by the caller with :func:`pipeline.core.errors.retry_decision` and
passed in; this module only applies them. A stage that only *waits* (its source's host is
paused: :mod:`pipeline.core.hostgate`) takes :func:`on_stage_waiting` instead, outside any
retry budget.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pipeline.core.dag import Dag
from pipeline.core.errors import ErrorCode, RecastError, RetryDecision
from pipeline.core.job import (
    FINISHED_STAGE_STATUSES,
    ErrorInfo,
    JobState,
    JobStatus,
    StageState,
    StageStatus,
    utcnow,
)

ACTIVE_JOB_STATUSES = frozenset({JobStatus.QUEUED, JobStatus.RUNNING})
"""A job in one of these may still start stages; any other status is final until a resume."""

GIVE_UP = RetryDecision(retry=False, delay_s=0.0)
"""The decision for a failure no budget covers (a worker lost too often)."""


@dataclass(frozen=True)
class FailurePolicy:
    """What a stage that failed for good does to the rest of its job."""

    stop_running: bool = False
    """Tell stages still running to stop. Off: they finish and keep their result (work a retry
    resumes from instead of redoing); nothing new starts either way, and the job settles, and
    withdraws what it published, only once they have ended."""


FAILURE_POLICY = FailurePolicy()
"""The policy both executors follow (see the module docstring)."""


@dataclass
class Transition:
    """What the executor must do after a step of the state machine."""

    ready: list[str] = field(default_factory=list)
    """Pending stages whose requirements are all finished: hand them over (if not yet)."""
    retry_in: dict[str, float] = field(default_factory=dict)
    """Stages to hand over again after a delay, in seconds."""
    cancelled: list[str] = field(default_factory=list)
    """Stages that were pending and will not run now: withdraw them from any queue."""
    failed: str | None = None
    """The stage that failed for good in this step."""
    stop_running: bool = False
    """Tell the job's running stages to stop."""
    job_status: JobStatus | None = None
    """The job's new status, when this step changed it."""
    settled: bool = False
    """The job has ended and no stage of it runs any more, as of this step: the moment to
    withdraw what a failed or cancelled job published early."""


# -- questions ---------------------------------------------------------------------------------


def is_active(state: JobState) -> bool:
    return state.status in ACTIVE_JOB_STATUSES


def stage_state(state: JobState, name: str) -> StageState:
    return state.stages.setdefault(name, StageState())


def requirements_met(state: JobState, dag: Dag, name: str) -> bool:
    return all(stage_state(state, r).status in FINISHED_STAGE_STATUSES for r in dag[name].requires)


def ready(state: JobState, dag: Dag) -> list[str]:
    """Pending stages whose requirements are all finished, in declaration order; none once
    the job has ended."""
    if not is_active(state):
        return []
    return [
        name
        for name in dag.names
        if stage_state(state, name).status is StageStatus.PENDING
        and requirements_met(state, dag, name)
    ]


def runnable(state: JobState, dag: Dag, name: str) -> bool:
    """Whether a run of ``name`` may start: its job active, its requirements finished, and the
    stage pending, or running (the run before died without a word)."""
    status = stage_state(state, name).status
    return (
        is_active(state)
        and status in (StageStatus.PENDING, StageStatus.RUNNING)
        and requirements_met(state, dag, name)
    )


def running(state: JobState, dag: Dag) -> list[str]:
    return [name for name in dag.names if stage_state(state, name).status is StageStatus.RUNNING]


def job_outcome(state: JobState, dag: Dag) -> JobStatus:
    """The status the job's stages call for: its own once it has ended; SUCCEEDED when every
    stage is DONE or SKIPPED; still its own while a stage runs or can start; CANCELLED when
    nothing can run any more although a stage has not finished (a stage was stopped by a
    cancel that has not reached the job yet)."""
    if not is_active(state):
        return state.status
    if all(stage_state(state, name).status in FINISHED_STAGE_STATUSES for name in dag.names):
        return JobStatus.SUCCEEDED
    if running(state, dag) or ready(state, dag):
        return state.status
    return JobStatus.CANCELLED


# -- steps -------------------------------------------------------------------------------------


def start(state: JobState, name: str) -> Transition:
    """A run of ``name`` begins: it spends an attempt."""
    stage = stage_state(state, name)
    stage.status = StageStatus.RUNNING
    stage.attempts += 1
    stage.started_at = utcnow()
    stage.finished_at = None
    stage.progress = 0.0
    stage.detail = ""
    stage.error = None
    if state.status is JobStatus.RUNNING:
        return Transition()
    state.status = JobStatus.RUNNING
    return Transition(job_status=JobStatus.RUNNING)


def on_stage_done(state: JobState, dag: Dag, name: str, status: StageStatus) -> Transition:
    """``name`` finished with ``status`` (DONE or SKIPPED). Its result counts even when the
    job has ended meanwhile: a retry resumes from it."""
    if status not in FINISHED_STAGE_STATUSES:
        raise ValueError(f"a finished stage is done or skipped, not {status}")
    stage = stage_state(state, name)
    was_running = stage.status is StageStatus.RUNNING
    stage.status = status
    stage.progress = 100.0
    stage.finished_at = utcnow()
    stage.error = None
    stage.waiting_since = None
    return _settle(state, dag, Transition(ready=ready(state, dag)), was_running)


def on_stage_failed(
    state: JobState,
    dag: Dag,
    name: str,
    error: ErrorInfo,
    decision: RetryDecision,
    policy: FailurePolicy = FAILURE_POLICY,
) -> Transition:
    """A run of ``name`` ended with ``error``; ``decision`` says whether its budget allows
    another. Retried: pending again after ``decision.delay_s``. Otherwise it failed for good
    and so does the job (:data:`FAILURE_POLICY`). A run stopped by a cancel, or one that ends
    after its job ended and would have been retried, is cancelled instead."""
    stage = stage_state(state, name)
    was_running = stage.status is StageStatus.RUNNING
    stage.finished_at = utcnow()
    stopped = error.code == ErrorCode.JOB_CANCELLED
    if stopped or (not is_active(state) and decision.retry):
        stage.status = StageStatus.CANCELLED
        return _settle(state, dag, Transition(), was_running)
    stage.error = error
    if not is_active(state):
        stage.status = StageStatus.FAILED
        return _settle(state, dag, Transition(failed=name), was_running)
    if decision.retry:
        stage.status = StageStatus.PENDING
        stage.detail = f"retrying in {decision.delay_s:.1f} s after {error.code}"
        return Transition(retry_in={name: decision.delay_s})
    stage.status = StageStatus.FAILED
    transition = _end_job(state, dag, JobStatus.FAILED, error, stop_running=policy.stop_running)
    transition.failed = name
    return transition


def on_stage_waiting(
    state: JobState,
    dag: Dag,
    name: str,
    delay_s: float,
    detail: str,
    *,
    give_up: ErrorInfo | None = None,
    max_wait_s: float = 0.0,
    refused: ErrorInfo | None = None,
    max_attempts: int = 0,
) -> Transition:
    """A run of ``name`` could not start its work: what it fetches from is not available
    now (its source's host is paused). Pending again after ``delay_s``, with ``detail``
    shown, and the attempt it spent given back: waiting is not failing, and no retry budget
    covers it. With ``give_up``, the wait counts towards ``max_wait_s`` from the first one
    (``StageState.waiting_since``): a wait that would end past it fails the stage for good
    with ``give_up`` instead. Cancelled if the job has ended.

    With ``refused``, the job itself was refused while its host is not paused (a private or
    removed video answers 403 to everyone): that wait keeps its attempt, and once
    ``max_attempts`` are spent the stage fails for good with ``refused``, as any other
    stage whose retries ran out."""
    stage = stage_state(state, name)
    was_running = stage.status is StageStatus.RUNNING
    if not is_active(state):
        stage.status = StageStatus.CANCELLED
        stage.finished_at = utcnow()
        return _settle(state, dag, Transition(), was_running)
    if refused is not None and stage.attempts >= max_attempts:
        return on_stage_failed(state, dag, name, refused, GIVE_UP)
    now = utcnow()
    if give_up is not None:
        since = stage.waiting_since or now
        stage.waiting_since = since
        if (now - since).total_seconds() + delay_s > max_wait_s:
            return on_stage_failed(state, dag, name, give_up, GIVE_UP)
    stage.status = StageStatus.PENDING
    if refused is None:
        stage.attempts = max(0, stage.attempts - 1)
    stage.detail = detail
    stage.error = None
    return Transition(retry_in={name: delay_s})


def on_stage_interrupted(state: JobState, dag: Dag, name: str, detail: str) -> Transition:
    """A run of ``name`` ended with neither result nor error of its own (its worker shut down,
    or died and was reaped): pending again at once, uncounted; cancelled if the job ended."""
    stage = stage_state(state, name)
    was_running = stage.status is StageStatus.RUNNING
    if not is_active(state):
        stage.status = StageStatus.CANCELLED
        stage.finished_at = utcnow()
        return _settle(state, dag, Transition(), was_running)
    stage.status = StageStatus.PENDING
    stage.detail = detail
    return Transition(retry_in={name: 0.0})


def on_cancel(state: JobState, dag: Dag) -> Transition:
    """A producer cancels the job: it ends at once, pending stages are cancelled and running
    ones told to stop. ValueError if the job has already ended."""
    if not is_active(state):
        raise ValueError(f"job {state.id} has already {state.status}")
    cancelled = ErrorInfo.from_error(RecastError(ErrorCode.JOB_CANCELLED, "The job was cancelled."))
    return _end_job(state, dag, JobStatus.CANCELLED, cancelled, stop_running=True)


def resume(state: JobState, dag: Dag, *, recheck_finished: bool = False) -> Transition:
    """Run the job again from the stages that did not finish: each starts over with a fresh
    retry budget; finished ones are kept, or, with ``recheck_finished``, pending again with
    their attempts kept so the runner checks their outputs (and skips them if intact)."""
    for name in dag.names:
        stage = stage_state(state, name)
        if stage.status not in FINISHED_STAGE_STATUSES:
            state.stages[name] = StageState()
        elif recheck_finished:
            stage.status = StageStatus.PENDING
    return _queued(state, dag)


def restart(state: JobState, dag: Dag) -> Transition:
    """Run the job again from scratch: every stage pending with a fresh budget."""
    for name in dag.names:
        state.stages[name] = StageState()
    return _queued(state, dag)


def settle(state: JobState, dag: Dag) -> Transition:
    """Give an active job the status its stages call for (:func:`job_outcome`); for an
    executor whose own bookkeeping ended (the local one, once nothing is in flight)."""
    return _settle(state, dag, Transition(), stage_left_running=False)


# -- helpers -----------------------------------------------------------------------------------


def _queued(state: JobState, dag: Dag) -> Transition:
    state.status = JobStatus.QUEUED
    state.error = None
    return Transition(ready=ready(state, dag), job_status=JobStatus.QUEUED)


def _end_job(
    state: JobState, dag: Dag, status: JobStatus, error: ErrorInfo, *, stop_running: bool
) -> Transition:
    state.status = status
    state.error = error
    cancelled = []
    for name in dag.names:
        stage = stage_state(state, name)
        if stage.status is StageStatus.PENDING:
            stage.status = StageStatus.CANCELLED
            cancelled.append(name)
    still_running = bool(running(state, dag))
    return Transition(
        cancelled=cancelled,
        stop_running=stop_running and still_running,
        job_status=status,
        settled=not still_running,
    )


def _settle(
    state: JobState, dag: Dag, transition: Transition, stage_left_running: bool
) -> Transition:
    """Finish ``transition`` after a stage left RUNNING (or none did): end the job if its
    stages call for it, and say whether the job has now settled."""
    if not is_active(state):
        transition.settled = stage_left_running and not running(state, dag)
        return transition
    outcome = job_outcome(state, dag)
    if outcome is JobStatus.SUCCEEDED:
        state.status = JobStatus.SUCCEEDED
        transition.job_status = JobStatus.SUCCEEDED
        transition.ready = []
        transition.settled = True
    elif outcome is JobStatus.CANCELLED:
        ended = on_cancel(state, dag)
        transition.cancelled = ended.cancelled
        transition.job_status = ended.job_status
        transition.settled = ended.settled
    return transition
