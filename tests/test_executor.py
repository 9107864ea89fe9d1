"""The DAG and the local executor: order, concurrency, resume, retries, failure handling.

The stages here are small real stage functions written for the test; the executor, runner and
workspace are the production ones.
"""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from pipeline.core.dag import Dag
from pipeline.core.errors import ErrorCode, RecastError
from pipeline.core.job import JobSpec, JobStatus, StageStatus
from pipeline.core.settings import Settings
from pipeline.core.stage import Queue, Stage, StageContext, StageResult
from pipeline.core.workspace import Workspace
from pipeline.engine.local import LocalExecutor
from pipeline.stages import default_dag
from tests.conftest import make_settings


class Recorder:
    def __init__(self) -> None:
        self.calls: list[str] = []
        self.lock = threading.Lock()

    def stage(self, name: str, requires: tuple[str, ...] = (), body=None) -> Stage:  # type: ignore[no-untyped-def]
        def run(ctx: StageContext) -> StageResult:
            with self.lock:
                self.calls.append(name)
            if body is not None:
                body(ctx)
            (ctx.out / f"{name}.txt").write_text(f"made by {name}")
            return StageResult.done(ctx.out, detail=name)

        return Stage(name=name, queue=Queue.MEDIA, run=run, requires=requires)


def diamond(rec: Recorder, **bodies) -> Dag:  # type: ignore[no-untyped-def]
    return Dag.of(
        [
            rec.stage("a", body=bodies.get("a")),
            rec.stage("b", ("a",), bodies.get("b")),
            rec.stage("c", ("a",), bodies.get("c")),
            rec.stage("d", ("b", "c"), bodies.get("d")),
        ]
    )


def run(settings: Settings, dag: Dag, source: str = "job-source") -> tuple[JobStatus, Workspace]:
    state = LocalExecutor(settings, dag=dag).run(JobSpec(source=source))
    return state.status, Workspace.for_job(settings.storage.workspace, state.id)


def test_dag_order_and_validation() -> None:
    rec = Recorder()
    dag = diamond(rec)
    assert dag.topological_order() == ["a", "b", "c", "d"]
    assert dag.dependents("a") == ["b", "c", "d"]
    with pytest.raises(ValueError, match="cycle"):
        Dag.of([rec.stage("x", ("y",)), rec.stage("y", ("x",))])


def test_dag_of_refuses_an_unknown_requirement() -> None:
    rec = Recorder()
    with pytest.raises(ValueError, match="stage 'q' requires 'absent', which is not in the DAG"):
        Dag.of([rec.stage("p"), rec.stage("q", ("p", "absent"))])


def test_only_keeps_the_named_stages_and_refuses_a_missing_requirement() -> None:
    dag = default_dag()
    part = dag.only("ingest", "probe", "thumbnails")
    assert part.names == ["ingest", "probe", "thumbnails"]
    assert part["thumbnails"].requires == dag["thumbnails"].requires, "declarations kept whole"
    with pytest.raises(ValueError, match="stage 'thumbnails' requires 'probe'"):
        dag.only("ingest", "thumbnails")
    with pytest.raises(ValueError, match="no stage 'nonesuch'"):
        dag.only("ingest", "nonesuch")


def test_default_dag_starts_with_ingest() -> None:
    dag = default_dag()
    assert dag.topological_order()[0] == "ingest"
    assert dag["ingest"].queue is Queue.INGEST


def test_independent_stages_run_at_the_same_time(tmp_path: Path) -> None:
    both_running = threading.Barrier(2, timeout=10)
    rec = Recorder()
    dag = diamond(rec, b=lambda ctx: both_running.wait(), c=lambda ctx: both_running.wait())
    status, workspace = run(make_settings(tmp_path), dag)
    assert status is JobStatus.SUCCEEDED, workspace.load_state()
    assert rec.calls[0] == "a" and rec.calls[-1] == "d"


def test_outputs_appear_only_when_stage_finishes_and_rerun_skips(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    seen_during_run: list[bool] = []
    rec = Recorder()

    def look(ctx: StageContext) -> None:
        seen_during_run.append(ctx.workspace.stage_dir("b").exists())

    status, workspace = run(settings, diamond(rec, b=look))
    assert status is JobStatus.SUCCEEDED
    assert seen_during_run == [False], "a running stage's outputs are not in place yet"
    assert (workspace.stage_dir("d") / "d.txt").read_text() == "made by d"
    assert not workspace.partial_dir("b").exists()

    rec.calls.clear()
    status, _ = run(settings, diamond(rec))
    assert status is JobStatus.SUCCEEDED
    assert rec.calls == [], "finished stages are skipped on a re-run"
    state = workspace.load_state()
    assert state is not None and all(s.reused for s in state.stages.values())
    assert state.stages["d"].attempts == 1, "skipping a finished stage spends no attempt"


def test_damaged_output_is_redone(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    rec = Recorder()
    _, workspace = run(settings, diamond(rec))
    (workspace.stage_dir("c") / "c.txt").write_text("truncated")
    rec.calls.clear()
    run(settings, diamond(rec))
    assert rec.calls == ["c"], "only the stage whose output no longer checks out runs again"


def test_permanent_failure_fails_job_at_once_and_resume_finishes(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, executor={"max_attempts": 3})
    attempts: list[int] = []
    b_running = threading.Event()

    def broken(ctx: StageContext) -> None:
        attempts.append(1)
        (ctx.out / "half-written.bin").write_bytes(b"x" * 100)
        assert b_running.wait(10), "b never ran"
        raise RecastError(ErrorCode.MEDIA_INVALID, "The file is corrupt.")

    rec = Recorder()
    status, workspace = run(settings, diamond(rec, b=lambda ctx: b_running.set(), c=broken))
    assert status is JobStatus.FAILED
    assert len(attempts) == 1, "a permanent error is not retried"
    state = workspace.load_state()
    assert state is not None
    assert state.error is not None and state.error.code == "media.invalid"
    assert state.stages["c"].status is StageStatus.FAILED
    assert state.stages["d"].status is StageStatus.CANCELLED
    assert state.stages["b"].status is StageStatus.DONE, "a running sibling finishes, kept"
    assert not workspace.stage_dir("c").exists(), "nothing half-written is kept"

    rec.calls.clear()
    status, _ = run(settings, diamond(rec))
    assert status is JobStatus.SUCCEEDED
    assert sorted(rec.calls) == ["c", "d"], "the re-run resumes from the failed stage"


def test_transient_failure_is_retried_then_succeeds(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, executor={"max_attempts": 3, "retry_base_delay_s": 0.01})
    failures = [RecastError(ErrorCode.NETWORK_SERVER_ERROR, "HTTP 503")]

    def flaky(ctx: StageContext) -> None:
        if failures:
            raise failures.pop()

    status, workspace = run(settings, diamond(Recorder(), b=flaky))
    assert status is JobStatus.SUCCEEDED
    state = workspace.load_state()
    assert state is not None and state.stages["b"].attempts == 2


def test_transient_failure_gives_up_after_max_attempts(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, executor={"max_attempts": 2, "retry_base_delay_s": 0.01})
    calls: list[int] = []

    def always(ctx: StageContext) -> None:
        calls.append(1)
        raise RecastError(ErrorCode.NETWORK_TIMEOUT, "timed out")

    status, workspace = run(settings, diamond(Recorder(), a=always))
    assert status is JobStatus.FAILED
    assert len(calls) == 2
    state = workspace.load_state()
    assert state is not None and state.error is not None
    assert state.error.code == "network.timeout" and state.error.transient


def test_unexpected_exception_is_an_internal_error(tmp_path: Path) -> None:
    def bug(ctx: StageContext) -> None:
        raise ZeroDivisionError("oops")

    status, workspace = run(make_settings(tmp_path), diamond(Recorder(), a=bug))
    state = workspace.load_state()
    assert status is JobStatus.FAILED
    assert state is not None and state.error is not None
    assert state.error.code == "internal.error" and "ZeroDivisionError" in state.error.message


def test_same_spec_same_job_id() -> None:
    a = JobSpec(source="HTTP://Example.ORG/watch?v=1", event="MSC")
    b = JobSpec(source="http://example.org/watch?v=1", event="MSC")
    c = JobSpec(source="http://example.org/watch?v=1", event="Other")
    assert a.job_id == b.job_id != c.job_id
