"""What a worker process holds, and the worker's background chores.

Each process (the worker's main process and every prefork pool process) builds its own job
store client, coordinator and stage runner on first use, after any fork. The main process
also runs a background thread that announces the worker and its queues in Redis (``/healthz``
reads it) and runs the reaper (``pipeline.engine.distributed.reaper``) and the outbox every
``cluster.reaper_interval_s``, and one that prunes finished jobs every
``retention.prune_interval_s`` (``pipeline.ops.retention``; a long prune never delays the
worker's announcements).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from typing import Any

from celery import Celery
from celery.exceptions import SoftTimeLimitExceeded
from celery.signals import task_received, worker_process_init, worker_ready, worker_shutdown

from pipeline.core import logs
from pipeline.core.errors import ErrorCode, RecastError
from pipeline.core.settings import Settings, default_settings
from pipeline.core.stage import Publisher
from pipeline.engine.distributed.coordinator import Coordinator
from pipeline.engine.distributed.jobstore import JobStore
from pipeline.engine.distributed.reaper import Reaper, note_reserved
from pipeline.engine.distributed.remote_workspace import RemoteWorkspace, open_workspace_store
from pipeline.engine.distributed.stagerun import StageRunner
from pipeline.ops.retention import prune_round
from pipeline.publish.publisher import CardPublisher
from workers.config import stage_of_task
from workers.dispatch import CeleryDispatcher

log = logging.getLogger("recast.worker")

_cache: dict[str, Any] = {}
_lock = threading.RLock()


def _after_fork_in_child() -> None:
    """A pool process forked while the main process's background thread held the lock (or
    a client) starts with fresh ones."""
    global _lock
    _lock = threading.RLock()
    _cache.clear()


os.register_at_fork(after_in_child=_after_fork_in_child)


def make_publisher(settings: Settings) -> Publisher:
    """The early publisher, the same as ``recast process`` uses."""
    return CardPublisher(settings)


def translate(exc: BaseException) -> RecastError | None:
    """Celery's own exceptions, in the error taxonomy."""
    if isinstance(exc, SoftTimeLimitExceeded):
        return RecastError(ErrorCode.STAGE_TIMEOUT, "The stage ran past its time limit.")
    return None


def _cached(name: str, build: Any) -> Any:
    with _lock:
        if _cache.get("pid") != os.getpid():
            _cache.clear()
            _cache["pid"] = os.getpid()
        if name not in _cache:
            _cache[name] = build()
        return _cache[name]


def settings() -> Settings:
    return default_settings()


_app_provider: Callable[[], Celery] | None = None


def provide_app(provider: Callable[[], Celery]) -> None:
    """Called by :mod:`workers.app` when it is imported: how this process gets its Celery app
    (runtime sits below the app module, so it is told rather than importing it)."""
    global _app_provider
    _app_provider = provider


def app() -> Celery:
    if _app_provider is None:
        raise RuntimeError("import workers.app before using the worker runtime")
    return _app_provider()


def store() -> JobStore:
    result: JobStore = _cached("store", lambda: JobStore(settings().cluster))
    return result


def coordinator() -> Coordinator:
    def build() -> Coordinator:
        config = settings()
        dispatcher = CeleryDispatcher(app(), config)
        return Coordinator(config, store(), dispatcher, publisher=make_publisher(config))

    result: Coordinator = _cached("coordinator", build)
    return result


def runner() -> StageRunner:
    def build() -> StageRunner:
        remote_storage = open_workspace_store(settings())
        remote = RemoteWorkspace(remote_storage) if remote_storage is not None else None
        current = coordinator()
        return StageRunner(current, current.publisher, remote=remote, translate=translate)

    result: StageRunner = _cached("runner", build)
    return result


class Background(threading.Thread):
    """The worker's announcements and the reaper, in the worker's main process."""

    def __init__(self, hostname: str, queues: list[str]):
        super().__init__(name="recast-background", daemon=True)
        self.hostname = hostname
        self.queues = queues
        self.stopped = threading.Event()

    def run(self) -> None:
        config = settings().cluster
        reaper = Reaper(coordinator(), holder=f"{self.hostname}:{os.getpid()}")
        tick = min(config.heartbeat_s, config.reaper_interval_s)
        next_reap = 0.0
        while not self.stopped.is_set():
            try:
                store().worker_alive(self.hostname, self.queues, ttl_s=config.reaper_stale_s)
                if time.monotonic() >= next_reap:
                    next_reap = time.monotonic() + config.reaper_interval_s
                    reaper.run_once()
            except Exception:  # Redis restarting, a bug: log it and keep the worker alive
                log.exception("background round failed")
            self.stopped.wait(tick)
        try:
            store().worker_gone(self.hostname)
        except Exception:
            log.warning("could not withdraw the worker's announcement")

    def stop(self) -> None:
        self.stopped.set()
        self.join(timeout=10)


class Pruning(threading.Thread):
    """Prunes finished jobs every ``retention.prune_interval_s`` (see pipeline.ops.retention)."""

    def __init__(self, hostname: str):
        super().__init__(name="recast-retention", daemon=True)
        self.holder = f"{hostname}:{os.getpid()}"
        self.stopped = threading.Event()

    def run(self) -> None:
        config = settings()
        while not self.stopped.is_set():
            try:
                prune_round(config, store(), self.holder)
            except Exception:  # Redis restarting, a full disk: try again next round
                log.exception("pruning round failed")
            self.stopped.wait(config.retention.prune_interval_s)

    def stop(self) -> None:
        self.stopped.set()
        self.join(timeout=10)


_background: list[Background | Pruning] = []


def _process_init(**_: Any) -> None:
    config = settings()
    logs.configure(config.log.level, config.log.json_lines)


def _worker_ready(sender: Any = None, **_: Any) -> None:
    config = settings()
    logs.configure(config.log.level, config.log.json_lines)
    try:
        queues = sorted(q.name for q in sender.app.amqp.queues.consume_from.values())
    except Exception:
        log.exception("cannot tell which queues this worker consumes")
        raise
    background = Background(str(sender.hostname), queues)
    background.start()
    _background.append(background)
    if config.retention.prune_interval_s > 0:
        pruning = Pruning(str(sender.hostname))
        pruning.start()
        _background.append(pruning)


def _worker_shutdown(**_: Any) -> None:
    while _background:
        _background.pop().stop()


def _task_received(request: Any = None, **_: Any) -> None:
    stage = stage_of_task(str(getattr(request, "name", "")))
    if stage is None:
        return
    job_id = (request.kwargs or {}).get("job_id")
    if isinstance(job_id, str):
        try:
            note_reserved(coordinator(), job_id, stage, str(request.hostname))
        except Exception:
            log.exception("could not note a reserved stage", extra={"job_id": job_id})


worker_process_init.connect(_process_init, weak=False)
worker_ready.connect(_worker_ready, weak=False)
worker_shutdown.connect(_worker_shutdown, weak=False)
task_received.connect(_task_received, weak=False)
