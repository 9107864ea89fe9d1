"""A small DAG of tiny stages whose behaviour each job chooses, for running the same failure
scenarios through both executors (tests/test_executors_agree.py)::

    a ──┬─► b ──┬─► e
        └─► c ──┴─► d      (d requires b and c)

A job's ``options`` say what each stage does (its *plan*) and name a directory of signal
files, so that stages running in a worker process and the test that watches them can wait
for each other without sleeping: every stage touches ``started-<stage>`` when it begins.

Plan entries, per stage: ``{"wait_for": [signal, ...], "then": action}`` with the action

- ``ok``: write a file and finish;
- ``fail``: fail for good (``media.invalid``);
- ``flaky``: fail with a transient error (``network.server_error``) the first time, then
  finish;
- ``hold``: wait for the signal ``release-<stage>``, then finish; stop if the job is
  cancelled (the stage's cancel event).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from pipeline.core.dag import Dag
from pipeline.core.errors import ErrorCode, RecastError
from pipeline.core.job import JobSpec
from pipeline.core.stage import Queue, Stage, StageContext, StageResult

STAGES = ("a", "b", "c", "d", "e")
WAIT_LIMIT_S = 20.0


def signal(directory: Path, name: str) -> None:
    (directory / name).touch()


def _signals(ctx: StageContext) -> Path:
    return Path(str(ctx.spec.options["signals"]))


def _wait_for(ctx: StageContext, names: list[str]) -> None:
    """Until every signal in ``names`` is there; stops with the job's cancel."""
    directory = _signals(ctx)
    deadline = time.monotonic() + WAIT_LIMIT_S
    while not all((directory / name).exists() for name in names):
        ctx.check_cancelled()
        if time.monotonic() > deadline:
            raise RecastError(ErrorCode.INTERNAL, f"stage {ctx.stage} waited in vain for {names}")
        ctx.cancel_event.wait(0.01)


def _run(ctx: StageContext) -> StageResult:
    plan: dict[str, Any] = ctx.spec.options["plan"].get(ctx.stage, {})
    directory = _signals(ctx)
    signal(directory, f"started-{ctx.stage}")
    _wait_for(ctx, list(plan.get("wait_for", [])))
    action = plan.get("then", "ok")
    if action == "fail":
        raise RecastError(ErrorCode.MEDIA_INVALID, f"stage {ctx.stage} fails for good")
    if action == "flaky" and not (directory / f"failed-once-{ctx.stage}").exists():
        signal(directory, f"failed-once-{ctx.stage}")
        raise RecastError(ErrorCode.NETWORK_SERVER_ERROR, f"stage {ctx.stage} fails once")
    if action == "hold":
        _wait_for(ctx, [f"release-{ctx.stage}"])
    (ctx.out / f"{ctx.stage}.txt").write_text(f"made by {ctx.stage}")
    return StageResult.done(ctx.out, detail=ctx.stage)


def _stage(name: str, *requires: str) -> Stage:
    return Stage(name=name, queue=Queue.MEDIA, run=_run, requires=requires)


SCENARIO_DAG = Dag.of(
    [_stage("a"), _stage("b", "a"), _stage("c", "a"), _stage("d", "b", "c"), _stage("e", "b")]
)


def scenario_spec(name: str, signals: Path, plan: dict[str, dict[str, Any]]) -> JobSpec:
    """The job for one run of a scenario (its own signal directory makes it a new job)."""
    signals.mkdir(parents=True, exist_ok=True)
    return JobSpec(source=f"scenario:{name}", options={"signals": str(signals), "plan": plan})
