"""Hands stages to the broker: the coordinator's StageDispatcher, implemented with Celery."""

from __future__ import annotations

from celery import Celery

from pipeline.core.settings import Settings
from pipeline.core.stage import Stage
from pipeline.engine.distributed.coordinator import TimeLimits
from pipeline.engine.distributed.jobstore import JobRecord
from workers.config import broker_priority, task_name


class CeleryDispatcher:
    def __init__(self, app: Celery, settings: Settings):
        self.app = app
        self.settings = settings

    def send(self, record: JobRecord, stage: Stage, limits: TimeLimits) -> str:
        result = self.app.send_task(
            task_name(stage.name),
            kwargs={"job_id": record.id},
            queue=stage.queue.value,
            priority=broker_priority(record.state.spec.priority, self.settings.cluster.broker_url),
            time_limit=limits.hard_s,
            soft_time_limit=limits.soft_s,
        )
        return str(result.id)

    def revoke(self, task_ids: list[str]) -> None:
        self.app.control.revoke(task_ids)
