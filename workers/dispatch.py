"""Hands work to the broker: the coordinator's StageDispatcher, implemented with Celery, and a
submitted URL's expansion (``recast.expand``, pipeline.engine.distributed.expansion)."""

from __future__ import annotations

from celery import Celery

from pipeline.core.settings import Settings
from pipeline.core.stage import Queue, Stage
from pipeline.engine.distributed.coordinator import TimeLimits
from pipeline.engine.distributed.jobstore import JobRecord
from workers.config import broker_priority, task_name

EXPAND_TASK = "recast.expand"


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

    def send_expansion(self, record: JobRecord) -> str:
        """Hand the job's expansion to a worker on the ingest queue, within the base time
        limit (a flat extraction does not scale with any media's duration). The coordinator
        calls it for the expansion's outbox entry."""
        cluster = self.settings.cluster
        result = self.app.send_task(
            EXPAND_TASK,
            kwargs={"job_id": record.id},
            queue=Queue.INGEST.value,
            priority=broker_priority(record.state.spec.priority, cluster.broker_url),
            time_limit=cluster.time_limit_base_s,
            soft_time_limit=cluster.time_limit_base_s * cluster.soft_time_limit_ratio,
        )
        return str(result.id)

    def revoke(self, task_ids: list[str]) -> None:
        self.app.control.revoke(task_ids)
