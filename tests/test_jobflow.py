"""The job state machine (pipeline.engine.jobflow) on its own: scenarios as tables of steps.

Every scenario runs on one DAG, a diamond with a tail on one branch::

    a ──┬─► b ──┬─► e
        └─► c ──┴─► d   (d requires b and c)

and checks the stage states, the job's status and what the last transition asked for.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from pipeline.core.dag import Dag
from pipeline.core.errors import ErrorCode, RecastError, RetryDecision
from pipeline.core.job import ErrorInfo, JobSpec, JobState, JobStatus, StageStatus
from pipeline.core.stage import Queue, Stage, StageContext, StageResult
from pipeline.engine import jobflow
from pipeline.engine.jobflow import GIVE_UP, FailurePolicy, Transition


def _never(ctx: StageContext) -> StageResult:
    raise AssertionError("the state machine runs no stage")


def _stage(name: str, *requires: str) -> Stage:
    return Stage(name=name, queue=Queue.MEDIA, run=_never, requires=requires)


DAG = Dag.of(
    [_stage("a"), _stage("b", "a"), _stage("c", "a"), _stage("d", "b", "c"), _stage("e", "b")]
)

P, R, D, S, F, X = (
    StageStatus.PENDING,
    StageStatus.RUNNING,
    StageStatus.DONE,
    StageStatus.SKIPPED,
    StageStatus.FAILED,
    StageStatus.CANCELLED,
)


def _error(code: ErrorCode) -> ErrorInfo:
    return ErrorInfo.from_error(RecastError(code, f"{code} in a test"))


PERMANENT = _error(ErrorCode.MEDIA_INVALID)
TRANSIENT = _error(ErrorCode.NETWORK_SERVER_ERROR)
STOPPED = _error(ErrorCode.JOB_CANCELLED)
RETRY = RetryDecision(retry=True, delay_s=1.5)


def new_job() -> JobState:
    state = JobState.new(JobSpec(source="jobflow-test"))
    jobflow.resume(state, DAG)
    return state


Step = tuple[str, ...]


def apply(state: JobState, step: Step, policy: FailurePolicy) -> Transition:
    """One step: ("start", s), ("done", s), ("skip", s), ("fail", s, "permanent" |
    "transient" | "transient-spent" | "stopped"), ("interrupt", s), ("cancel",)."""
    kind, *args = step
    if kind == "start":
        assert jobflow.runnable(state, DAG, args[0]), (step, state.stages)
        return jobflow.start(state, args[0])
    if kind in ("done", "skip"):
        return jobflow.on_stage_done(state, DAG, args[0], D if kind == "done" else S)
    if kind == "fail":
        error, decision = {
            "permanent": (PERMANENT, GIVE_UP),
            "transient": (TRANSIENT, RETRY),
            "transient-spent": (TRANSIENT, GIVE_UP),
            "stopped": (STOPPED, GIVE_UP),
        }[args[1]]
        return jobflow.on_stage_failed(state, DAG, args[0], error, decision, policy)
    if kind == "interrupt":
        return jobflow.on_stage_interrupted(state, DAG, args[0], "worker shut down")
    if kind == "cancel":
        return jobflow.on_cancel(state, DAG)
    raise AssertionError(step)


@dataclass
class Scenario:
    name: str
    steps: list[Step]
    stages: str
    """Final statuses of a, b, c, d, e: one letter each (P R D S F X)."""
    job: JobStatus
    last: Transition
    """What the last step's transition must say (compared field by field)."""
    error: str | None = None
    policy: FailurePolicy = field(default_factory=FailurePolicy)


def _flow(*names: str) -> list[Step]:
    return [step for name in names for step in (("start", name), ("done", name))]


SCENARIOS = [
    Scenario(
        "every stage finishes: the job succeeds and settles",
        [*_flow("a", "b", "c", "e"), ("start", "d"), ("skip", "d")],
        "DDDSD",
        JobStatus.SUCCEEDED,
        Transition(job_status=JobStatus.SUCCEEDED, settled=True),
    ),
    Scenario(
        "a stage finishing makes its dependents ready",
        [*_flow("a"), ("start", "b"), ("done", "b")],
        "DDPPP",
        JobStatus.RUNNING,
        Transition(ready=["c", "e"]),
    ),
    Scenario(
        "permanent failure in one branch: the job fails at once, every pending stage is "
        "cancelled, the running sibling is left to finish",
        [*_flow("a"), ("start", "b"), ("start", "c"), ("fail", "c", "permanent")],
        "DRFXX",
        JobStatus.FAILED,
        Transition(cancelled=["d", "e"], failed="c", job_status=JobStatus.FAILED),
        error="media.invalid",
    ),
    Scenario(
        "the running sibling of a failed stage finishes, keeps its result and settles the job",
        [
            *_flow("a"),
            ("start", "b"),
            ("start", "c"),
            ("fail", "c", "permanent"),
            ("done", "b"),
        ],
        "DDFXX",
        JobStatus.FAILED,
        Transition(settled=True),
        error="media.invalid",
    ),
    Scenario(
        "a stopping policy tells the running sibling to stop",
        [*_flow("a"), ("start", "b"), ("start", "c"), ("fail", "c", "permanent")],
        "DRFXX",
        JobStatus.FAILED,
        Transition(
            cancelled=["d", "e"], failed="c", stop_running=True, job_status=JobStatus.FAILED
        ),
        error="media.invalid",
        policy=FailurePolicy(stop_running=True),
    ),
    Scenario(
        "a failure with nothing else running settles the job at once",
        [("start", "a"), ("fail", "a", "permanent")],
        "FXXXX",
        JobStatus.FAILED,
        Transition(
            cancelled=["b", "c", "d", "e"], failed="a", job_status=JobStatus.FAILED, settled=True
        ),
        error="media.invalid",
    ),
    Scenario(
        "transient error with budget left: pending again after the delay",
        [*_flow("a"), ("start", "b"), ("fail", "b", "transient")],
        "DPPPP",
        JobStatus.RUNNING,
        Transition(retry_in={"b": 1.5}),
    ),
    Scenario(
        "transient then success",
        [
            ("start", "a"),
            ("fail", "a", "transient"),
            *_flow("a", "b", "c", "d", "e"),
        ],
        "DDDDD",
        JobStatus.SUCCEEDED,
        Transition(job_status=JobStatus.SUCCEEDED, settled=True),
    ),
    Scenario(
        "transient error past its budget fails the job",
        [("start", "a"), ("fail", "a", "transient-spent")],
        "FXXXX",
        JobStatus.FAILED,
        Transition(
            cancelled=["b", "c", "d", "e"], failed="a", job_status=JobStatus.FAILED, settled=True
        ),
        error="network.server_error",
    ),
    Scenario(
        "a second stage failing for good after the job failed is failed too; the job keeps "
        "the first error",
        [
            *_flow("a"),
            ("start", "b"),
            ("start", "c"),
            ("fail", "c", "permanent"),
            ("fail", "b", "transient-spent"),
        ],
        "DFFXX",
        JobStatus.FAILED,
        Transition(failed="b", settled=True),
        error="media.invalid",
    ),
    Scenario(
        "a retryable error after the job failed cancels the stage instead",
        [
            *_flow("a"),
            ("start", "b"),
            ("start", "c"),
            ("fail", "c", "permanent"),
            ("fail", "b", "transient"),
        ],
        "DXFXX",
        JobStatus.FAILED,
        Transition(settled=True),
        error="media.invalid",
    ),
    Scenario(
        "cancel: pending stages cancelled, running ones told to stop",
        [*_flow("a"), ("start", "b"), ("cancel",)],
        "DRXXX",
        JobStatus.CANCELLED,
        Transition(cancelled=["c", "d", "e"], stop_running=True, job_status=JobStatus.CANCELLED),
        error="job.cancelled",
    ),
    Scenario(
        "cancel: the stopped stage settles the job",
        [*_flow("a"), ("start", "b"), ("cancel",), ("fail", "b", "stopped")],
        "DXXXX",
        JobStatus.CANCELLED,
        Transition(settled=True),
        error="job.cancelled",
    ),
    Scenario(
        "cancel: a stage that finishes before it noticed keeps its result",
        [*_flow("a"), ("start", "b"), ("cancel",), ("done", "b")],
        "DDXXX",
        JobStatus.CANCELLED,
        Transition(settled=True),
        error="job.cancelled",
    ),
    Scenario(
        "cancel with nothing running settles at once",
        [*_flow("a"), ("cancel",)],
        "DXXXX",
        JobStatus.CANCELLED,
        Transition(cancelled=["b", "c", "d", "e"], job_status=JobStatus.CANCELLED, settled=True),
        error="job.cancelled",
    ),
    Scenario(
        "a stage stopped by a cancel that has not reached the job yet: once nothing can run, "
        "the job is cancelled",
        [*_flow("a"), ("start", "b"), ("fail", "b", "stopped"), *_flow("c")],
        "DXDXX",
        JobStatus.CANCELLED,
        Transition(cancelled=["d", "e"], job_status=JobStatus.CANCELLED, settled=True),
        error="job.cancelled",
    ),
    Scenario(
        "... while something else can still run, the job goes on",
        [*_flow("a"), ("start", "b"), ("fail", "b", "stopped")],
        "DXPPP",
        JobStatus.RUNNING,
        Transition(),
    ),
    Scenario(
        "interrupted run (worker shut down or lost): pending again at once",
        [*_flow("a"), ("start", "b"), ("interrupt", "b")],
        "DPPPP",
        JobStatus.RUNNING,
        Transition(retry_in={"b": 0.0}),
    ),
    Scenario(
        "interrupted run of an ended job: cancelled, and the job settles",
        [*_flow("a"), ("start", "b"), ("cancel",), ("interrupt", "b")],
        "DXXXX",
        JobStatus.CANCELLED,
        Transition(settled=True),
        error="job.cancelled",
    ),
]


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda s: s.name)
def test_scenario(scenario: Scenario) -> None:
    state = new_job()
    transition = Transition()
    for step in scenario.steps:
        transition = apply(state, step, scenario.policy)
    statuses = "".join(str(state.stages[n].status)[0].upper() for n in "abcde")
    statuses = statuses.replace("C", "X")  # cancelled (C would read as "c")
    assert statuses == scenario.stages
    assert state.status is scenario.job
    assert (state.error.code if state.error else None) == scenario.error
    assert transition == scenario.last


def test_ready_waits_for_every_requirement_and_stops_once_the_job_ended() -> None:
    state = new_job()
    assert jobflow.ready(state, DAG) == ["a"]
    for step in [*_flow("a", "b")]:
        apply(state, step, FailurePolicy())
    assert jobflow.ready(state, DAG) == ["c", "e"], "d still waits for c"
    jobflow.on_cancel(state, DAG)
    assert jobflow.ready(state, DAG) == []


def test_a_retried_stage_keeps_its_error_and_says_when() -> None:
    state = new_job()
    jobflow.start(state, "a")
    jobflow.on_stage_failed(state, DAG, "a", TRANSIENT, RETRY)
    stage = state.stages["a"]
    assert stage.error == TRANSIENT and stage.attempts == 1
    assert stage.detail == "retrying in 1.5 s after network.server_error"
    jobflow.start(state, "a")
    assert state.stages["a"].attempts == 2 and state.stages["a"].error is None


def test_resume_restarts_what_did_not_finish_with_a_fresh_budget() -> None:
    state = new_job()
    for step in [*_flow("a"), ("start", "b"), ("start", "c"), ("fail", "c", "permanent")]:
        apply(state, step, FailurePolicy())
    apply(state, ("done", "b"), FailurePolicy())
    transition = jobflow.resume(state, DAG)
    assert transition == Transition(ready=["c", "e"], job_status=JobStatus.QUEUED)
    assert state.status is JobStatus.QUEUED and state.error is None
    assert [str(state.stages[n].status) for n in "abcde"] == [
        "done",
        "done",
        "pending",
        "pending",
        "pending",
    ]
    assert state.stages["c"].attempts == 0 and state.stages["c"].error is None
    assert state.stages["b"].attempts == 1, "finished stages are kept as they were"


def test_resume_rechecking_finished_stages_keeps_their_attempts() -> None:
    state = new_job()
    for step in _flow("a", "b"):
        apply(state, step, FailurePolicy())
    jobflow.resume(state, DAG, recheck_finished=True)
    assert all(state.stages[n].status is P for n in "abcde")
    assert state.stages["a"].attempts == 1 and state.stages["b"].attempts == 1
    assert jobflow.ready(state, DAG) == ["a"]


def test_restart_starts_every_stage_over() -> None:
    state = new_job()
    for step in _flow("a", "b"):
        apply(state, step, FailurePolicy())
    assert jobflow.restart(state, DAG).ready == ["a"]
    assert all(state.stages[n].status is P and state.stages[n].attempts == 0 for n in "abcde")


def test_job_outcome() -> None:
    state = new_job()
    assert jobflow.job_outcome(state, DAG) is JobStatus.QUEUED
    for step in _flow("a", "b", "c", "d"):
        apply(state, step, FailurePolicy())
    assert jobflow.job_outcome(state, DAG) is JobStatus.RUNNING, "e can still run"
    apply(state, ("start", "e"), FailurePolicy())
    assert jobflow.job_outcome(state, DAG) is JobStatus.RUNNING
    empty = JobState.new(JobSpec(source="nothing to do"))
    assert jobflow.settle(empty, Dag.of([])).job_status is JobStatus.SUCCEEDED


def test_runnable_covers_a_run_whose_worker_died() -> None:
    state = new_job()
    assert not jobflow.runnable(state, DAG, "b"), "a has not finished"
    jobflow.start(state, "a")
    assert jobflow.runnable(state, DAG, "a"), "still RUNNING: the run before died"
    jobflow.on_cancel(state, DAG)
    assert not jobflow.runnable(state, DAG, "a")


def test_misuse_is_refused() -> None:
    state = new_job()
    with pytest.raises(ValueError, match="done or skipped"):
        jobflow.on_stage_done(state, DAG, "a", F)
    jobflow.on_cancel(state, DAG)
    with pytest.raises(ValueError, match="already cancelled"):
        jobflow.on_cancel(state, DAG)


def test_the_default_policy_lets_running_stages_finish() -> None:
    assert FailurePolicy(stop_running=False) == jobflow.FAILURE_POLICY
