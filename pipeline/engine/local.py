"""The local executor: runs a job's DAG in this process, independent stages at the same time.

This is the embedded default (``recast process URL``): no broker, no Redis. Job state is kept
in the workspace's job.json, so a re-run resumes where the last run stopped. Transient errors
are retried with backoff (``executor.max_attempts``; ``storage.unavailable`` for as long as
``storage.retry_span_s`` at least). A stage whose source host is paused waits, uncounted
(:mod:`pipeline.core.hostgate`, in memory: one gate per executor, shared by the jobs it runs,
even at once from several threads). What a failure for good or a cancel (``cancel_event``)
does to the rest of the job is decided by the job state machine, :mod:`pipeline.engine.jobflow`,
the same as for the distributed executor; this module runs stages on a thread pool and
carries out its transitions.
"""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Protocol

from pipeline.core.dag import Dag
from pipeline.core.errors import ErrorCode, as_recast_error, retry_decision, storage_failure
from pipeline.core.hostgate import HostGate, HostWait, InMemoryHostGate
from pipeline.core.job import ErrorInfo, JobSpec, JobState, JobStatus, utcnow
from pipeline.core.settings import Settings
from pipeline.core.stage import Publisher, Stage, StageContext, StageResult
from pipeline.core.workspace import Workspace
from pipeline.engine import jobflow
from pipeline.engine.runner import finished_result, run_afresh
from pipeline.stages import default_dag
from pipeline.storage import storage_roots

log = logging.getLogger("recast.executor")

CANCEL_POLL_S = 0.2
"""How often the main thread looks at ``cancel_event`` while stages run."""


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
    host_gate: HostGate | None = None
    """The gates of source hosts (pass one to share it between executors); by default one of
    this executor's own, under ``sources.backoff``."""

    def __post_init__(self) -> None:
        self.gate: HostGate = self.host_gate or InMemoryHostGate(self.settings.sources.backoff)

    def run(self, spec: JobSpec) -> JobState:
        workspace = Workspace.for_job(self.settings.storage.workspace, spec.job_id)
        state = workspace.load_state() or JobState.new(spec)
        state.spec = spec
        # Finished stages go through the runner again, which skips them if their outputs
        # are intact and redoes them if not.
        jobflow.resume(state, self.dag, recheck_finished=True)
        run = _JobRun(self, spec, state, workspace)
        return run.execute()


@dataclass
class _Attempt:
    """What one attempt of a stage came back with."""

    result: StageResult
    ran: bool
    warnings: list[str]


class _JobRun:
    """One execution of one job's DAG. The state machine's steps (:mod:`jobflow`) are taken
    under the lock, by the main thread except a stage's start; pool threads run stages."""

    def __init__(self, executor: LocalExecutor, spec: JobSpec, state: JobState, ws: Workspace):
        self.executor = executor
        self.settings = executor.settings
        self.dag = executor.dag
        self.spec = spec
        self.state = state
        self.workspace = ws
        self.storage_roots = (*storage_roots(self.settings), ws.root)
        self.lock = threading.Lock()
        self.stop = threading.Event()
        """What running stages watch (their cancel event): set when they must stop."""
        self.in_flight: dict[Future[_Attempt | None], str] = {}
        self.retry_at: dict[str, float] = {}
        """Stages waiting out a retry's backoff: when they may run again (monotonic)."""
        self.failures: dict[str, int] = {}
        """Failed attempts per stage in this run: each run has its own retry budget."""

    def execute(self) -> JobState:
        self._save()
        workers = self.settings.executor.max_parallel_stages
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="stage") as pool:
            while True:
                self._notice_cancel()
                self._submit_ready(pool)
                if not self.in_flight and not self.retry_at:
                    break
                self._wait_for_news()
        self._finish()
        return self.state

    def _notice_cancel(self) -> None:
        if not self.executor.cancel_event.is_set():
            return
        with self.lock:
            if not jobflow.is_active(self.state):
                return
            transition = jobflow.on_cancel(self.state, self.dag)
            self._save()
        self._stepped(transition)

    def _submit_ready(self, pool: ThreadPoolExecutor) -> None:
        """Hand every ready stage to the pool, unless it is there already or waits out a
        retry's backoff."""
        with self.lock:
            ready = jobflow.ready(self.state, self.dag)
        self.retry_at = {name: at for name, at in self.retry_at.items() if name in ready}
        now = time.monotonic()
        busy = set(self.in_flight.values())
        for name in ready:
            if name in busy or self.retry_at.get(name, now) > now:
                continue
            self.retry_at.pop(name, None)
            self.in_flight[pool.submit(self._attempt, self.dag[name])] = name

    def _wait_for_news(self) -> None:
        """Until a stage ends, a retry is due, or a moment has passed to look for a cancel."""
        timeout = CANCEL_POLL_S
        if self.retry_at:
            timeout = min(timeout, max(0.0, min(self.retry_at.values()) - time.monotonic()))
        if not self.in_flight:
            self.executor.cancel_event.wait(timeout)
            return
        ended, _ = wait(self.in_flight, timeout=timeout, return_when=FIRST_COMPLETED)
        for future in ended:
            name = self.in_flight.pop(future)
            try:
                attempt = future.result()
            except BaseException as exc:  # every failure is classified, then decided on
                self._failed(name, exc)
                continue
            if attempt is not None:
                self._complete(name, attempt.result, attempt.ran, attempt.warnings)

    def _attempt(self, stage: Stage) -> _Attempt | None:
        """One attempt at ``stage``, in a pool thread; None if the job ended before it began."""
        with self.lock:
            if not jobflow.runnable(self.state, self.dag, stage.name):
                return None
        earlier = finished_result(self.workspace, stage.name)
        if earlier is not None:  # done in an earlier run: no attempt is spent on it
            return _Attempt(earlier, ran=False, warnings=[])
        with self.lock:
            if not jobflow.runnable(self.state, self.dag, stage.name):
                return None
            jobflow.start(self.state, stage.name)
        self._update(stage.name)
        ctx = StageContext(
            job_id=self.state.id,
            stage=stage.name,
            spec=self.spec,
            settings=self.settings,
            workspace=self.workspace,
            out=self.workspace.partial_dir(stage.name),
            on_progress=self._on_progress,
            publisher=self.executor.publisher,
            cancel_event=self.stop,
            host_gate=self.executor.gate,
        )
        return _Attempt(run_afresh(stage, ctx), ran=True, warnings=ctx.warnings)

    def _failed(self, name: str, exc: BaseException) -> None:
        error = as_recast_error(exc, self.storage_roots)
        if isinstance(error, HostWait):
            self._waiting(name, error)
            return
        if error.code is ErrorCode.INTERNAL:
            log.error(
                "stage %s crashed",
                name,
                exc_info=exc,
                extra={"job_id": self.state.id, "stage": name},
            )
        self.failures[name] = self.failures.get(name, 0) + 1
        decision = retry_decision(
            error,
            self.failures[name],
            max_attempts=self.settings.executor.max_attempts,
            base_delay_s=self.settings.executor.retry_base_delay_s,
            max_delay_s=self.settings.executor.retry_max_delay_s,
            storage_span_s=self.settings.storage.retry_span_s,
        )
        info = ErrorInfo.from_error(error)
        with self.lock:
            transition = jobflow.on_stage_failed(self.state, self.dag, name, info, decision)
        self._update(name)
        self._stepped(transition)

    def _waiting(self, name: str, wait: HostWait) -> None:
        """The stage's source host is paused: pending again after the wait, uncounted."""
        backoff = self.settings.sources.backoff
        give_up = ErrorInfo.from_error(wait.gave_up(backoff.max_wait_s)) if wait.blocked else None
        refused = ErrorInfo.from_error(wait.refused_every_time()) if wait.refused_alone else None
        log.info(
            "stage %s %s",
            name,
            wait.wait.detail,
            extra={"job_id": self.state.id, "stage": name},
        )
        with self.lock:
            transition = jobflow.on_stage_waiting(
                self.state,
                self.dag,
                name,
                wait.wait.delay_s,
                wait.wait.detail,
                give_up=give_up,
                max_wait_s=backoff.max_wait_s,
                refused=refused,
                max_attempts=self.settings.executor.max_attempts,
            )
        self._update(name)
        self._stepped(transition)

    def _stepped(self, transition: jobflow.Transition) -> None:
        """Carry out what a step of the state machine asks of this executor."""
        now = time.monotonic()
        for name, delay in transition.retry_in.items():
            self.retry_at[name] = now + delay
        if transition.stop_running:
            self.stop.set()
        for name in transition.cancelled:
            self._update(name)

    def _on_progress(self, stage: str, percent: float, detail: str) -> None:
        self._update(stage, progress=percent, detail=detail)

    def _complete(self, name: str, result: StageResult, ran: bool, warnings: list[str]) -> None:
        detail = result.detail if ran else f"already done {result.detail}".strip()
        card_id = result.data.get("card_id")
        if isinstance(card_id, str):
            self.state.card_id = card_id
        with self.lock:
            jobflow.on_stage_done(self.state, self.dag, name, result.status)
        self._update(
            name,
            detail=detail,
            reused=not ran,
            warnings=warnings,
        )

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
        """Nothing is in flight any more: the job has settled; withdraw what it published if
        it did not succeed."""
        with self.lock:
            jobflow.settle(self.state, self.dag)
            self.state.updated_at = utcnow()
            self._save()
        if self.state.status is not JobStatus.SUCCEEDED and self.executor.publisher is not None:
            self.executor.publisher.job_failed(self.state)
