"""Runs one stage for a job, the same way for every executor.

It skips a stage whose outputs exist and check out, gives the stage a clean partial directory,
and moves the outputs into place only when the stage succeeds.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from pipeline.core.fsutil import atomic_write_json
from pipeline.core.stage import Stage, StageContext, StageResult
from pipeline.core.workspace import RESULT_FILE, Workspace


def finished_result(workspace: Workspace, stage: str) -> StageResult | None:
    """The stage's result if it finished earlier and every file it listed is intact."""
    path = workspace.result_file(stage)
    if not path.exists():
        return None
    try:
        result = StageResult.model_validate_json(path.read_text(encoding="utf-8"))
    except ValueError:
        return None
    root = workspace.stage_dir(stage)
    if all(record.intact_under(root) for record in result.files):
        return result
    return None


def run_stage(stage: Stage, ctx: StageContext) -> tuple[StageResult, bool]:
    """Run ``stage`` unless already done. Returns the result and whether it ran now."""
    previous = finished_result(ctx.workspace, stage.name)
    if previous is not None:
        return previous, False
    return run_afresh(stage, ctx), True


def run_afresh(stage: Stage, ctx: StageContext) -> StageResult:
    """Run ``stage`` in a fresh partial directory and commit its outputs (for a caller that
    has looked for an earlier result itself)."""
    ctx.out = ctx.workspace.begin_stage(stage.name)
    ctx.requires = stage.requires  # the readers refuse any other stage's outputs
    try:
        result = stage.run(ctx)
        _write_result(ctx.out, result)
    except BaseException:
        shutil.rmtree(ctx.out, ignore_errors=True)  # a failed attempt's leftovers are garbage
        raise
    ctx.workspace.commit_stage(stage.name)
    return result


def _write_result(out: Path, result: StageResult) -> None:
    atomic_write_json(out / RESULT_FILE, result.model_dump(mode="json"))
