"""The Celery tasks: one per stage of the DAG, each a few lines calling pipeline code."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from celery import Celery, Task

from pipeline.core.dag import Dag
from workers import runtime
from workers.config import task_name


def _stage_task(stage: str) -> Callable[..., str]:
    def run(self: Task, job_id: str) -> str:
        """Run one stage of one job (pipeline.engine.distributed.stagerun.StageRunner)."""
        hostname = str(self.request.hostname or "")
        outcome = runtime.runner().execute(job_id, stage, task_id=self.request.id, worker=hostname)
        return outcome.value

    run.__name__ = run.__qualname__ = f"stage_{stage}"
    return run


def register_tasks(app: Celery, dag: Dag) -> dict[str, Any]:
    """One task per stage; ``task_routes`` (workers.config) sends each to its stage's queue."""
    return {
        stage.name: app.task(name=task_name(stage.name), bind=True, acks_late=True, shared=False)(
            _stage_task(stage.name)
        )
        for stage in dag
    }
