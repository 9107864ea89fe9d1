"""The Celery tasks: one per stage of the DAG, and ``recast.expand`` (a submitted URL looked up
before its job runs), each a few lines calling pipeline code."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from celery import Celery, Task

from pipeline.core.dag import Dag
from pipeline.engine.distributed.expansion import Expander
from workers import runtime
from workers.config import task_name
from workers.dispatch import EXPAND_TASK


def _stage_task(stage: str) -> Callable[..., str]:
    def run(self: Task, job_id: str) -> str:
        """Run one stage of one job (pipeline.engine.distributed.stagerun.StageRunner)."""
        hostname = str(self.request.hostname or "")
        outcome = runtime.runner().execute(job_id, stage, task_id=self.request.id, worker=hostname)
        return outcome.value

    run.__name__ = run.__qualname__ = f"stage_{stage}"
    return run


def expand_source(self: Task, job_id: str) -> str:
    """Expand a submitted URL: its job's stages, or one job per playlist entry
    (pipeline.engine.distributed.expansion). A transient failure or a paused source host puts
    the expansion back in the job store's outbox, which sends it again when due: the task ends
    at once, no worker holds it meanwhile."""
    expander = Expander(runtime.coordinator(), translate=runtime.translate)
    return expander.expand(job_id, worker=str(self.request.hostname or "")).outcome.value


def register_tasks(app: Celery, dag: Dag) -> dict[str, Any]:
    """One task per stage; ``task_routes`` (workers.config) sends each to its stage's queue.
    The expansion is sent to the ingest queue by ``CeleryDispatcher.send_expansion``."""
    tasks = {
        stage.name: app.task(name=task_name(stage.name), bind=True, acks_late=True, shared=False)(
            _stage_task(stage.name)
        )
        for stage in dag
    }
    tasks["expand"] = app.task(name=EXPAND_TASK, bind=True, acks_late=True, shared=False)(
        expand_source
    )
    return tasks
