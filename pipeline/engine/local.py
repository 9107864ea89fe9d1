"""The local executor: runs a job's DAG in this process, independent stages at the same time.

This is the embedded default (``recast process URL``): no broker, no Redis. Job state is kept
in the workspace's job.json, so a re-run resumes where the last run stopped. Transient errors
are retried with backoff (``executor.max_attempts``; ``storage.unavailable`` for as long as
``storage.retry_span_s`` at least); a permanent one fails the job at once and cancels the
stages that depend on it.
"""

from __future__ import annotations

import logging
import threading
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Protocol

from pipeline.core.dag import Dag
from pipeline.core.errors import (
    ErrorCode,
    RecastError,
    as_recast_error,
    retry_decision,
    storage_failure,
)
from pipeline.core.job import (
    FINISHED_STAGE_STATUSES,
    ErrorInfo,
    JobSpec,
    JobState,
    JobStatus,
    StageState,
    StageStatus,
    utcnow,
)
from pipeline.core.settings import Settings
from pipeline.core.stage import Publisher, Stage, StageContext, StageResult
from pipeline.core.workspace import Workspace
from pipeline.engine.runner import finished_result, run_stage
from pipeline.stages import default_dag
from pipeline.storage import storage_roots

log = logging.getLogger("recast.executor")


class JobObserver(Protocol):
    """Told about a job's progress (the CLI's progress bars, logs, webhooks)."""

    def stage_changed(self, job: JobState, stage: str) -> None: ...


@dataclass
class LocalExecutor:
    settings: Settings
    dag: Dag = field(default_factory=default_dag)
    observer: JobObserver | None = None
    publisher: Publisher | None = None
    cancel_event: threading.Event = field(default_factory=threading.Event)

    def run(self, spec: JobSpec) -> JobState:
        workspace = Workspace.for_job(self.settings.storage.workspace, spec.job_id)
        state = workspace.load_state() or JobState.new(spec)
        state.spec = spec
        state.status = JobStatus.RUNNING
        state.error = None
        for name in self.dag.names:
            stage_state = state.stages.setdefault(name, StageState())
            if stage_state.status not in FINISHED_STAGE_STATUSES:
                state.stages[name] = StageState(attempts=stage_state.attempts)
        run = _JobRun(self, spec, state, workspace)
        return run.execute()


class _JobRun:
    """One execution of one job's DAG."""

    def __init__(self, executor: LocalExecutor, spec: JobSpec, state: JobState, ws: Workspace):
        self.executor = executor
        self.settings = executor.settings
        self.dag = executor.dag
        self.spec = spec
        self.state = state
        self.workspace = ws
        self.storage_roots = (*storage_roots(self.settings), ws.root)
        self.lock = threading.Lock()

    def execute(self) -> JobState:
        self._save()
        pending = set(self.dag.names)
        running: dict[Future[None], str] = {}
        workers = self.settings.executor.max_parallel_stages
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="stage") as pool:
            while pending or running:
                for name in self._ready(pending, running):
                    pending.discard(name)
                    running[pool.submit(self._run_with_retries, self.dag[name])] = name
                if not running:
                    break
                finished, _ = wait(running, return_when=FIRST_COMPLETED)
                for future in finished:
                    name = running.pop(future)
                    crash = future.exception()
                    if crash is not None:  # a bug in the bookkeeping: never taken for success
                        log.error("stage %s ended abnormally", name, exc_info=crash)
                        self._fail(name, as_recast_error(crash, self.storage_roots))
                if self.state.error is not None:
                    self.executor.cancel_event.set()
            for name in pending:
                self.state.stages[name].status = StageStatus.CANCELLED
        self._finish()
        return self.state

    def _ready(self, pending: set[str], running: dict[Future[None], str]) -> list[str]:
        if self.state.error is not None:
            return []
        ready = []
        for name in sorted(pending):
            requires = self.dag[name].requires
            if all(self.state.stages[r].status in FINISHED_STAGE_STATUSES for r in requires):
                ready.append(name)
        return ready

    def _run_with_retries(self, stage: Stage) -> None:
        attempt = 0
        while True:
            attempt += 1
            try:
                self._run_once(stage)
                return
            except BaseException as exc:  # every failure is classified, then decided on
                error = as_recast_error(exc, self.storage_roots)
                if error.code is ErrorCode.INTERNAL:
                    log.exception(
                        "stage %s crashed",
                        stage.name,
                        extra={"job_id": self.state.id, "stage": stage.name},
                    )
                decision = retry_decision(
                    error,
                    attempt,
                    max_attempts=self.settings.executor.max_attempts,
                    base_delay_s=self.settings.executor.retry_base_delay_s,
                    max_delay_s=self.settings.executor.retry_max_delay_s,
                    storage_span_s=self.settings.storage.retry_span_s,
                )
                if decision.retry and not self.executor.cancel_event.is_set():
                    self._update(stage.name, detail=f"retrying after {error.code}")
                    self.executor.cancel_event.wait(decision.delay_s)
                    continue
                self._fail(stage.name, error)
                return

    def _run_once(self, stage: Stage) -> None:
        if self.executor.cancel_event.is_set():
            raise RecastError(ErrorCode.JOB_CANCELLED, "The job was cancelled.")
        earlier = finished_result(self.workspace, stage.name)
        if earlier is not None:  # done in an earlier run: no attempt is spent on it
            self._complete(stage.name, earlier, ran=False, warnings=[])
            return
        stage_state = self.state.stages[stage.name]
        self._update(
            stage.name,
            status=StageStatus.RUNNING,
            attempts=stage_state.attempts + 1,
            started_at=utcnow(),
            progress=0.0,
            error=None,
        )
        ctx = StageContext(
            job_id=self.state.id,
            stage=stage.name,
            spec=self.spec,
            settings=self.settings,
            workspace=self.workspace,
            out=self.workspace.partial_dir(stage.name),
            on_progress=self._on_progress,
            publisher=self.executor.publisher,
            cancel_event=self.executor.cancel_event,
        )
        result, ran = run_stage(stage, ctx)
        self._complete(stage.name, result, ran, ctx.warnings)

    def _on_progress(self, stage: str, percent: float, detail: str) -> None:
        self._update(stage, progress=percent, detail=detail)

    def _complete(self, name: str, result: StageResult, ran: bool, warnings: list[str]) -> None:
        detail = result.detail if ran else f"already done {result.detail}".strip()
        card_id = result.data.get("card_id")
        if isinstance(card_id, str):
            self.state.card_id = card_id
        self._update(
            name,
            status=result.status,
            progress=100.0,
            detail=detail,
            finished_at=utcnow(),
            warnings=warnings,
        )

    def _fail(self, name: str, error: RecastError) -> None:
        info = ErrorInfo.from_error(error)
        status = (
            StageStatus.CANCELLED if error.code is ErrorCode.JOB_CANCELLED else StageStatus.FAILED
        )
        with self.lock:
            if self.state.error is None:
                self.state.error = info
        self._update(name, status=status, error=info, finished_at=utcnow())

    def _update(self, name: str, **fields: object) -> None:
        with self.lock:
            stage_state = self.state.stages[name]
            for key, value in fields.items():
                setattr(stage_state, key, value)
            self.state.updated_at = utcnow()
            self._save()
        observer = self.executor.observer
        if observer is not None:
            observer.stage_changed(self.state, name)

    def _save(self) -> None:
        """Record the state in job.json; a full or read-only workspace only delays that (the
        state is kept here and written again with the next change)."""
        try:
            self.workspace.save_state(self.state)
        except OSError as exc:
            if storage_failure(exc, self.storage_roots) is None:
                raise
            log.warning("job.json not saved: %s", exc, extra={"job_id": self.state.id})

    def _finish(self) -> None:
        with self.lock:
            if self.state.error is None:
                self.state.status = JobStatus.SUCCEEDED
            elif self.state.error.code == ErrorCode.JOB_CANCELLED:
                self.state.status = JobStatus.CANCELLED
            else:
                self.state.status = JobStatus.FAILED
            self.state.updated_at = utcnow()
            self._save()
        if self.state.status is not JobStatus.SUCCEEDED and self.executor.publisher is not None:
            self.executor.publisher.job_failed(self.state)
