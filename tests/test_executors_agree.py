"""Both executors follow the one job state machine: the same failure scenarios, run through the
local executor and through the distributed one (a private redis-server and a real Celery
worker process, tests/support/scenario_worker.py), end in the same stage states.

The DAG and its stages are tests/support/scenario_dag.py; each scenario says what every stage
does, what the test does while the job runs (release a held stage, cancel), and the final
stage states, job status, error and attempts both executors must reach.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from pipeline.core.job import JobSpec, JobState, JobStatus, StageStatus
from pipeline.core.settings import Settings
from pipeline.core.workspace import Workspace
from pipeline.engine.distributed.coordinator import Coordinator
from pipeline.engine.distributed.jobstore import JobStore
from pipeline.engine.local import LocalExecutor
from tests.conftest import make_settings
from tests.support.scenario_dag import SCENARIO_DAG, STAGES, scenario_spec, signal
from tests.support.scenario_worker import ScenarioWorker
from tests.support.workers import (
    RedisServer,
    cluster_test_settings,
    wait_for,
    workers,
    write_config,
)
from workers.app import create_celery
from workers.dispatch import CeleryDispatcher

pytestmark = pytest.mark.slow  # end to end with real tools: not in the fast set

D, F, X = StageStatus.DONE, StageStatus.FAILED, StageStatus.CANCELLED
EXECUTOR = {"max_attempts": 3, "retry_base_delay_s": 0.05, "retry_max_delay_s": 0.1}


class Run:
    """One job of a scenario in one executor, as the test sees it while it runs."""

    def __init__(
        self, signals: Path, state: Callable[[], JobState | None], cancel: Callable[[], None]
    ):
        self.signals = signals
        self._state = state
        self.cancel = cancel

    def state(self) -> JobState | None:
        return self._state()

    def has_signal(self, name: str) -> bool:
        return (self.signals / name).exists()

    def release(self, stage: str) -> None:
        signal(self.signals, f"release-{stage}")


def _job_failed(run: Run) -> bool:
    state = run.state()
    return state is not None and state.status is JobStatus.FAILED


def _stage_done(run: Run, stage: str) -> bool:
    state = run.state()
    return state is not None and state.stages[stage].status is StageStatus.DONE


def release_b_once_the_job_failed(run: Run) -> None:
    wait_for(lambda: _job_failed(run), 20, "the job did not fail")
    run.release("b")


def cancel_while_b_runs_and_c_is_done(run: Run) -> None:
    wait_for(lambda: run.has_signal("started-b") and _stage_done(run, "c"), 20, "b or c stuck")
    run.cancel()


@dataclass(frozen=True)
class Scenario:
    name: str
    plan: dict[str, dict[str, Any]]
    stages: tuple[StageStatus, ...]
    """Final statuses of a, b, c, d, e."""
    job: JobStatus
    error: str | None
    attempts: tuple[int, ...]
    meanwhile: Callable[[Run], None] | None = None

    def __str__(self) -> str:
        return self.name


SCENARIOS = [
    Scenario(
        "permanent failure in one branch",
        {"b": {"then": "hold"}, "c": {"wait_for": ["started-b"], "then": "fail"}},
        # The job fails at once: e and d, still pending, are cancelled (e does not depend on
        # c); b, running, finishes and keeps its result for a retry.
        (D, D, F, X, X),
        JobStatus.FAILED,
        "media.invalid",
        (1, 1, 1, 0, 0),
        release_b_once_the_job_failed,
    ),
    Scenario(
        "transient then success",
        {"b": {"then": "flaky"}},
        (D, D, D, D, D),
        JobStatus.SUCCEEDED,
        None,
        (1, 2, 1, 1, 1),
    ),
    Scenario(
        "cancel",
        {"b": {"then": "hold"}},
        # b is stopped; d and e, pending, are cancelled; what finished stays finished.
        (D, X, D, X, X),
        JobStatus.CANCELLED,
        "job.cancelled",
        (1, 1, 1, 0, 0),
        cancel_while_b_runs_and_c_is_done,
    ),
]


@dataclass(frozen=True)
class FinalStates:
    stages: tuple[StageStatus, ...]
    job: JobStatus
    error: str | None
    attempts: tuple[int, ...]

    @classmethod
    def of(cls, state: JobState) -> FinalStates:
        return cls(
            tuple(state.stages[name].status for name in STAGES),
            state.status,
            state.error.code if state.error is not None else None,
            tuple(state.stages[name].attempts for name in STAGES),
        )


@contextlib.contextmanager
def acting(scenario: Scenario, run: Run) -> Iterator[None]:
    """What the test does while the job runs, in a thread; its failure fails the test."""
    failures: list[BaseException] = []

    def act() -> None:
        try:
            if scenario.meanwhile is not None:
                scenario.meanwhile(run)
        except BaseException as exc:
            failures.append(exc)

    thread = threading.Thread(target=act, daemon=True)
    thread.start()
    yield
    thread.join(30)
    if failures:
        raise failures[0]


def _signals(spec: JobSpec) -> Path:
    return Path(str(spec.options["signals"]))


def run_locally(scenario: Scenario, tmp: Path) -> FinalStates:
    settings = make_settings(tmp / "local", executor=EXECUTOR)
    spec = scenario_spec(scenario.name, tmp / "local-signals", scenario.plan)
    executor = LocalExecutor(settings, dag=SCENARIO_DAG)
    workspace = Workspace.for_job(settings.storage.workspace, spec.job_id)
    run = Run(_signals(spec), workspace.load_state, executor.cancel_event.set)
    with acting(scenario, run):
        state = executor.run(spec)
    return FinalStates.of(state)


@dataclass
class Cluster:
    settings: Settings
    store: JobStore
    coordinator: Coordinator


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    tmp = tmp_path_factory.mktemp("agree")
    with RedisServer(tmp / "redis") as redis_server:
        settings = make_settings(
            tmp, cluster=cluster_test_settings(redis_server.url), executor=EXECUTOR
        )
        config = write_config(tmp / "recast.toml", settings)
        store = JobStore(settings.cluster)
        app = create_celery(settings, SCENARIO_DAG)
        coordinator = Coordinator(
            settings, store, CeleryDispatcher(app, settings), dag=SCENARIO_DAG
        )
        worker = ScenarioWorker(config, "media", "agree", tmp / "logs")
        with workers(worker, store=store):
            yield Cluster(settings, store, coordinator)


def run_distributed(scenario: Scenario, tmp: Path, cluster: Cluster) -> FinalStates:
    spec = scenario_spec(scenario.name, tmp / "distributed-signals", scenario.plan)
    job_id = spec.job_id

    def state() -> JobState | None:
        record = cluster.store.get(job_id)
        return record.state if record is not None else None

    def cancel() -> None:
        cluster.coordinator.cancel(job_id)

    def settled() -> JobState | None:
        current = state()
        if current is None or current.status not in (
            JobStatus.SUCCEEDED,
            JobStatus.FAILED,
            JobStatus.CANCELLED,
        ):
            return None
        running = [s for s in current.stages.values() if s.status is StageStatus.RUNNING]
        return None if running else current

    run = Run(_signals(spec), state, cancel)
    with acting(scenario, run):
        cluster.coordinator.submit(spec)
        final = wait_for(settled, 30, f"job {job_id} did not settle: {state()}")
    return FinalStates.of(final)


@pytest.mark.parametrize("scenario", SCENARIOS, ids=str)
def test_both_executors_end_in_the_same_states(
    scenario: Scenario, cluster: Cluster, tmp_path: Path
) -> None:
    expected = FinalStates(scenario.stages, scenario.job, scenario.error, scenario.attempts)
    local = run_locally(scenario, tmp_path)
    distributed = run_distributed(scenario, tmp_path, cluster)
    assert local == expected, "local executor"
    assert distributed == expected, "distributed executor"
