"""The reaper: gives the stages of dead workers to live ones, and stops poison inputs.

Every worker runs it periodically (``cluster.reaper_interval_s``); a short lease in Redis lets
one process at a time do a round. A round:

- finds running stages whose heartbeat is older than ``cluster.reaper_stale_s`` (the worker
  was SIGKILLed, its machine lost, a pool process killed by the OOM killer): the stage goes
  back to pending and to the broker, long before the broker's visibility timeout would hand
  the old message out again (then it finds the stage done or running, and does nothing);
- counts such losses per stage: the ``cluster.max_worker_lost_attempts``-th fails the job with
  ``worker.lost`` (an input that crashes every worker stops, other jobs keep flowing);
- re-queues stages whose message a dead worker had taken but not started;
- sends outbox entries that are due (retries after backoff, sends a crash interrupted), among
  them submitted URLs' expansions whose message or worker was lost: an expansion keeps its
  entry until it has an outcome, a run in flight pushing it ahead as its lease
  (:mod:`pipeline.engine.distributed.expansion`).

Right after Redis restarts, heartbeats could not be written for a while: the reaper waits
one stale period of Redis uptime before it judges any heartbeat.
"""

from __future__ import annotations

import logging
import os
import socket
from dataclasses import dataclass

from pipeline.core.job import ErrorInfo, JobStatus, StageStatus, utcnow
from pipeline.engine import jobflow
from pipeline.engine.distributed import counters
from pipeline.engine.distributed.coordinator import Coordinator, carry_out, follow_up
from pipeline.engine.distributed.jobstore import Change, Effects, JobEvent, JobRecord
from pipeline.engine.distributed.stagerun import worker_lost

log = logging.getLogger("recast.reaper")


@dataclass
class ReapReport:
    requeued: int = 0
    lost: int = 0
    reserved: int = 0
    dispatched: int = 0
    skipped: bool = False


class Reaper:
    def __init__(self, coordinator: Coordinator, holder: str | None = None):
        self.coordinator = coordinator
        self.store = coordinator.store
        self.settings = coordinator.settings
        self.holder = holder or f"{socket.gethostname()}:{os.getpid()}"

    def run_once(self) -> ReapReport:
        config = self.settings.cluster
        report = ReapReport()
        if not self.store.lease("reaper", self.holder, config.reaper_interval_s * 3):
            report.skipped = True
            return report
        if self.store.redis_uptime_s() >= config.reaper_stale_s:
            for job_id, stage, _age in self.store.stale_heartbeats(config.reaper_stale_s):
                self._reap(job_id, stage, report)
            self._reserved_by_dead_workers(report)
        report.dispatched = self.coordinator.dispatch_due()
        return report

    def _reap(self, job_id: str, stage: str, report: ReapReport) -> None:
        max_lost = self.settings.cluster.max_worker_lost_attempts
        dag = self.coordinator.dag
        old_token: str | None = None
        lost = False
        transition = jobflow.Transition()

        def reap(record: JobRecord) -> Effects:
            nonlocal old_token, lost, transition
            lost = False
            transition = jobflow.Transition()
            effects = Effects(clear_heartbeat=[stage])
            if stage not in dag.names:
                return effects
            state = record.stage(stage)
            runtime = record.stage_runtime(stage)
            old_token = runtime.token
            if state.status is not StageStatus.RUNNING:
                return effects
            runtime.token = None
            if not jobflow.is_active(record.state):
                transition = jobflow.on_stage_interrupted(record.state, dag, stage, "")
                carry_out(record, transition, effects)
                return effects
            lost = True
            runtime.lost += 1
            effects.count(counters.WORKER_LOST)
            effects.event(JobEvent.STAGE_WORKER_LOST, record, stage, worker=runtime.worker or "")
            if runtime.lost >= max_lost:
                error = ErrorInfo.from_error(worker_lost(stage, runtime.lost))
                transition = jobflow.on_stage_failed(
                    record.state, dag, stage, error, jobflow.GIVE_UP
                )
            else:
                detail = f"worker {runtime.worker} lost; queued again"
                transition = jobflow.on_stage_interrupted(record.state, dag, stage, detail)
            carry_out(record, transition, effects)
            return effects

        record = self.store.transact(job_id, reap)
        if record is None:
            self.store.forget_heartbeat(job_id, stage)
            return
        if old_token is not None:
            self.store.release(job_id, stage, old_token)
        follow_up(self.store, self.coordinator.publisher, record, transition)
        if not lost:
            return
        verdict = "failed for good" if transition.failed else "queued again"
        log.warning("stage of a dead worker: %s", verdict, extra={"job_id": job_id, "stage": stage})
        if transition.failed:
            report.lost += 1
        else:
            report.requeued += 1

    def _reserved_by_dead_workers(self, report: ReapReport) -> None:
        live = set(self.store.live_workers())
        for status in (JobStatus.QUEUED, JobStatus.RUNNING):
            for record in self.store.iter_status(status):
                dead = [
                    name
                    for name, runtime in record.runtime.items()
                    if runtime.reserved_by is not None
                    and runtime.reserved_by not in live
                    and record.stage(name).status is StageStatus.PENDING
                ]
                for name in dead:
                    self.store.transact(record.id, _requeue_reserved(name))
                    report.reserved += 1


def _requeue_reserved(stage: str) -> Change:
    def requeue(record: JobRecord) -> Effects | None:
        runtime = record.stage_runtime(stage)
        if runtime.reserved_by is None or record.stage(stage).status is not StageStatus.PENDING:
            return None
        runtime.reserved_by = None
        runtime.queued_at = utcnow()
        effects = Effects()
        effects.dispatch[stage] = 0.0
        return effects

    return requeue


def note_reserved(coordinator: Coordinator, job_id: str, stage: str, worker: str) -> None:
    """A worker took a stage's message (before running it): remembered for the reaper."""

    def reserve(record: JobRecord) -> Effects | None:
        if record.stage(stage).status is not StageStatus.PENDING:
            return None
        record.stage_runtime(stage).reserved_by = worker
        return Effects()

    coordinator.store.transact(job_id, reserve)
