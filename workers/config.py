"""The Celery configuration, derived from settings and the DAG.

- JSON only, for tasks and results.
- One queue per kind of work (``pipeline.core.stage.Queue``); each stage's task is routed to its
  stage's queue, so the routing follows the DAG declaration.
- Late acknowledgement: a task's message is acknowledged when the stage ends, so a message
  whose worker vanished is not lost. A pool process killed mid-task is not redelivered by
  Celery (``task_reject_on_worker_lost`` off): the reaper gives the stage to another worker
  and counts the loss, so a poison input stops with ``worker.lost`` instead of looping.
- Prefetch of one for workers on long queues (``cluster.prefetch_multiplier``): a worker busy
  transcoding does not sit on messages another worker could start.
- Time limits are set per task when it is sent, scaled to the media's duration
  (``pipeline.engine.distributed.coordinator.time_limits``); the defaults here are the
  longest allowed.
- Broker visibility timeout (Redis): an unacknowledged message is handed out again after
  ``cluster.visibility_timeout_s``. With late acknowledgement a stage's message stays
  unacknowledged for as long as the stage runs, so the timeout must be longer than the
  longest hard time limit, or Redis would give a long transcode to a second worker while the
  first is still at it. Recovering from a dead worker does not wait for it: the reaper
  re-queues a stage after ``cluster.reaper_stale_s`` without a heartbeat; the old message,
  handed out hours later, finds the stage done and does nothing.
- RabbitMQ (``amqp://``) works through the same settings: queues are declared with
  ``x-max-priority``; its ``consumer_timeout`` must likewise exceed the longest hard limit.
"""

from __future__ import annotations

from typing import Any

from kombu.entity import Exchange
from kombu.entity import Queue as KombuQueue

from pipeline.core.dag import Dag
from pipeline.core.settings import Settings
from pipeline.core.stage import Queue

LONG_QUEUES = frozenset({Queue.INGEST, Queue.TRANSCODE, Queue.MEDIA, Queue.ASR})
PRIORITY_LEVELS = 10


TASK_PREFIX = "recast.stage."


def task_name(stage: str) -> str:
    """The Celery task that runs ``stage``."""
    return f"{TASK_PREFIX}{stage}"


def stage_of_task(name: str) -> str | None:
    """The stage a :func:`task_name` runs; None for any other task."""
    return name.removeprefix(TASK_PREFIX) if name.startswith(TASK_PREFIX) else None


def is_amqp(url: str) -> bool:
    return url.split("://", 1)[0] in ("amqp", "amqps", "pyamqp")


def broker_priority(priority: int, broker_url: str) -> int:
    """A job's priority (0 lowest .. 9 most urgent) as the broker reads it.

    RabbitMQ serves higher numbers first; Celery's Redis transport serves 0 first.
    """
    return priority if is_amqp(broker_url) else PRIORITY_LEVELS - 1 - priority


def prefetch_for(queues: list[str], settings: Settings) -> int:
    if any(q in LONG_QUEUES for q in queues):
        return settings.cluster.prefetch_multiplier
    return settings.cluster.short_prefetch_multiplier


def celery_config(settings: Settings, dag: Dag) -> dict[str, Any]:
    config = settings.cluster
    amqp = is_amqp(config.broker_url)
    arguments = {"x-max-priority": PRIORITY_LEVELS} if amqp else None
    queues = [
        KombuQueue(  # type: ignore[no-untyped-call]
            q.value,
            Exchange(q.value, type="direct"),  # type: ignore[no-untyped-call]
            routing_key=q.value,
            queue_arguments=arguments,
        )
        for q in Queue
    ]
    transport: dict[str, Any] = {}
    if not amqp:
        transport = {
            "visibility_timeout": config.visibility_timeout_s,
            "priority_steps": list(range(PRIORITY_LEVELS)),
            "sep": ":",
            "queue_order_strategy": "priority",
        }
    hard = config.max_time_limit_s
    return {
        "broker_url": config.broker_url,
        "result_backend": config.result_backend,
        "broker_transport_options": transport,
        "result_backend_transport_options": {"retry_policy": {"timeout": 5.0}},
        "result_backend_always_retry": True,
        "result_backend_max_retries": 30,
        "result_expires": config.result_expires_s,
        "task_serializer": "json",
        "result_serializer": "json",
        "accept_content": ["json"],
        "result_accept_content": ["json"],
        "task_queues": queues,
        "task_default_queue": Queue.PUBLISH.value,
        "task_routes": {task_name(stage.name): {"queue": stage.queue.value} for stage in dag},
        "task_acks_late": True,
        "task_reject_on_worker_lost": False,
        "task_acks_on_failure_or_timeout": True,
        "task_time_limit": hard,
        "task_soft_time_limit": hard * config.soft_time_limit_ratio,
        "task_track_started": True,
        "task_send_sent_event": True,
        "worker_send_task_events": True,
        "worker_prefetch_multiplier": config.prefetch_multiplier,
        "worker_concurrency": config.concurrency,
        "worker_hijack_root_logger": False,
        "worker_cancel_long_running_tasks_on_connection_loss": False,
        "broker_connection_retry_on_startup": True,
        "broker_connection_max_retries": None,
        "broker_channel_error_retry": True,
        "task_publish_retry": True,
        "task_publish_retry_policy": {
            "max_retries": 60,
            "interval_start": 0.2,
            "interval_step": 0.5,
            "interval_max": 2.0,
        },
        "enable_utc": True,
        "timezone": "UTC",
    }
