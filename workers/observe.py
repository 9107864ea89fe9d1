"""What workers tell ops: JSON logs with job context, per-stage job logs, figures, reports.

Bound to Celery's signals by :func:`connect` (``workers.app.create_celery`` calls it):

- ``setup_logging``: Recast configures logging instead of Celery: JSON lines (``log.json_lines``)
  at ``log.level`` for Celery's loggers too; Celery's records about a task (received,
  succeeded, failed) carry its job id, stage and task id, read from Celery's task data;
- ``worker_process_init``: each pool process attaches the per-stage job log
  (``pipeline.ops.joblog``), which keeps ffmpeg's and yt-dlp's own output;
- ``task_prerun`` / ``task_postrun``: the task's job id, stage and task id are bound for every
  line logged while it runs (``pipeline.core.logs``); the stage's start and outcome are logged;
  a finished run's figures are recorded (``pipeline.ops.metrics``); the job log is flushed;
- ``worker_ready`` / ``worker_shutdown``: a reporter thread in the worker's main process reports
  its concurrency and workspace disk and takes the ops samples when due (``pipeline.ops.opsview``).
"""

from __future__ import annotations

import logging
import re
import threading
from contextvars import Token
from typing import Any

from celery.signals import (
    setup_logging,
    task_postrun,
    task_prerun,
    worker_process_init,
    worker_ready,
    worker_shutdown,
)

from pipeline.core import logs
from pipeline.core.workspace import Workspace
from pipeline.engine.distributed.stagerun import StageRunOutcome
from pipeline.ops.joblog import JobLogHandler
from pipeline.ops.metrics import MetricsRecorder, record_stage_run
from pipeline.ops.opsview import OpsView
from workers import runtime
from workers.config import stage_of_task

log = logging.getLogger("recast.worker.task")

_JOB_ID = re.compile(r"job_id['\"]?\s*[:=]\s*['\"](j[0-9a-f]{20})['\"]")

_state: dict[str, Any] = {"connected": False, "handler": None, "reporters": []}
_tokens: dict[str, Token[dict[str, str] | None]] = {}


def celery_context(record: logging.LogRecord) -> dict[str, str]:
    """Job id, stage and task id from the task data Celery puts on its records."""
    data = getattr(record, "data", None)
    if not isinstance(data, dict):
        return {}
    found: dict[str, str] = {}
    if data.get("id"):
        found["task_id"] = str(data["id"])
    stage = stage_of_task(str(data.get("name") or ""))
    if stage is not None:
        found["stage"] = stage
    kwargs = data.get("kwargs")
    if isinstance(kwargs, dict) and isinstance(kwargs.get("job_id"), str):
        found["job_id"] = kwargs["job_id"]
    elif kwargs:
        match = _JOB_ID.search(str(kwargs))
        if match:
            found["job_id"] = match.group(1)
    return found


def _setup_logging(**_: Any) -> None:
    config = runtime.settings().log
    logs.configure(config.level, config.json_lines, root_level=config.level)
    logs.add_enricher(celery_context)


def _process_init(**_: Any) -> None:
    settings = runtime.settings()
    logs.add_enricher(celery_context)
    store = runtime.store()
    handler = JobLogHandler(store.redis, store.prefix, settings.ops)
    logs.attach(handler)
    _state["handler"] = handler


def _stage_of(task: Any) -> str | None:
    return stage_of_task(str(getattr(task, "name", "") or ""))


def _task_prerun(task_id: str = "", task: Any = None, kwargs: Any = None, **_: Any) -> None:
    stage = _stage_of(task)
    job_id = (kwargs or {}).get("job_id")
    if stage is None or not isinstance(job_id, str):
        return
    _tokens[task_id] = logs.bind(job_id=job_id, stage=stage, task_id=task_id)
    log.info("stage task started")


def _task_postrun(
    task_id: str = "", task: Any = None, kwargs: Any = None, retval: Any = None, **_: Any
) -> None:
    token = _tokens.pop(task_id, None)
    stage = _stage_of(task)
    job_id = (kwargs or {}).get("job_id")
    try:
        if stage is not None and isinstance(job_id, str):
            _after_stage(job_id, stage, _outcome_of(retval))
    except Exception:
        log.exception("could not record the stage's figures")
    finally:
        handler = _state.get("handler")
        if handler is not None:
            handler.flush()
        if token is not None:
            logs.unbind(token)


def _outcome_of(retval: Any) -> StageRunOutcome | None:
    """The stage task's return value (a StageRunOutcome's value); None when it raised."""
    try:
        return StageRunOutcome(retval)
    except ValueError:
        return None


def _after_stage(job_id: str, stage: str, outcome: StageRunOutcome | None) -> None:
    store = runtime.store()
    record = store.get(job_id)
    if record is None:
        return
    state = record.stage(stage)
    error = state.error
    if outcome is StageRunOutcome.RAN:
        settings = runtime.settings()
        recorder = MetricsRecorder(store.redis, store.prefix)
        workspace = Workspace.for_job(settings.storage.workspace, job_id)
        record_stage_run(recorder, runtime.coordinator().dag, record, stage, workspace)
        log.info("stage %s: %s (job %s)", str(state.status), state.detail, record.state.status)
    elif outcome in (StageRunOutcome.FAILED, StageRunOutcome.RETRY) and error is not None:
        log.warning("stage %s: %s: %s", outcome, error.code, error.message)
    else:
        log.info("stage task ended: %s", outcome)


class Reporter(threading.Thread):
    """Reports the worker (concurrency, disk) and takes ops samples, in the main process."""

    def __init__(self, hostname: str, queues: list[str], concurrency: int | None):
        super().__init__(name="recast-ops-reporter", daemon=True)
        self.hostname = hostname
        self.queues = queues
        self.concurrency = concurrency
        self.stopped = threading.Event()
        self.view: OpsView | None = None

    def run(self) -> None:
        settings = runtime.settings()
        self.view = OpsView(settings, runtime.store(), runtime.coordinator().dag)
        tick = min(settings.ops.worker_report_s, settings.ops.sample_interval_s)
        while not self.stopped.is_set():
            try:
                self.view.report_worker(self.hostname, self.queues, self.concurrency)
                self.view.take_sample()
            except Exception:  # Redis restarting: try again next tick
                log.warning("could not report the worker to ops", exc_info=True)
            self.stopped.wait(tick)

    def stop(self) -> None:
        self.stopped.set()
        self.join(timeout=5)
        if self.view is not None:
            try:
                self.view.withdraw_worker(self.hostname)
            except Exception:
                log.warning("could not withdraw the worker's ops report")


def _worker_ready(sender: Any = None, **_: Any) -> None:
    try:
        queues = sorted(q.name for q in sender.app.amqp.queues.consume_from.values())
    except Exception:
        queues = []
    concurrency = getattr(getattr(sender, "controller", None), "concurrency", None)
    reporter = Reporter(str(sender.hostname), queues, int(concurrency) if concurrency else None)
    reporter.start()
    _state["reporters"].append(reporter)


def _worker_shutdown(**_: Any) -> None:
    reporters: list[Reporter] = _state["reporters"]
    while reporters:
        reporters.pop().stop()


def connect() -> None:
    """Bind the handlers above to Celery's signals (once per process)."""
    if _state["connected"]:
        return
    _state["connected"] = True
    setup_logging.connect(_setup_logging, weak=False)
    worker_process_init.connect(_process_init, weak=False)
    task_prerun.connect(_task_prerun, weak=False)
    task_postrun.connect(_task_postrun, weak=False)
    worker_ready.connect(_worker_ready, weak=False)
    worker_shutdown.connect(_worker_shutdown, weak=False)
