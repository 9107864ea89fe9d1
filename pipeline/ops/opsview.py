"""The cluster at a glance: workers, queues, running jobs, failures, throughput and alerts.

One :class:`Snapshot`, built from what Redis holds (the job store of
``pipeline.engine.distributed.jobstore``,
the workers' presence and reports, the events stream, the samples of ``pipeline.ops.opshistory``),
serves every ops view: ``recast status`` (and ``--json``), ``/healthz``'s alerts, the jobs
board and the gauges of ``/metrics``. It reads Redis directly, without the job store's
retries: a view of a cluster whose Redis is down says so at once.

What counts as what:

- a stage *waits* in its stage's queue from when it was scheduled (``queued_at``) until a
  worker starts it (its job queued or running, the stage pending); a stage scheduled for
  later (a retry's backoff, a paused source host) waits only from then; the *depth* of a queue is
  the number of waiting stages, its *oldest wait* the age of the longest-waiting one;
- a worker is *live* while its presence key lives (``cluster.reaper_stale_s``), *busy* while
  it runs a stage; workers also report their concurrency and workspace disk
  (:meth:`OpsView.report_worker`, every ``ops.worker_report_s``);
- *alerts worth a page*: a queue of the DAG with no live worker, a queue whose oldest wait is
  over ``ops.max_wait_s``, ``ops.blocked_burst`` or more ``source.blocked`` failures within
  ``ops.blocked_window_s`` (the job store's per-stage error counters for ``source.blocked``
  now, against the sample taken at the window's start), a source host paused after refusals
  or being tried again after its pause (``source.blocked`` too, one per host, from the host
  gate in Redis: :mod:`pipeline.engine.distributed.hostgate`), a workspace disk under
  ``ops.min_free_disk_gb`` or ``ops.min_free_disk_ratio`` free, Redis unreachable.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import socket
import time
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

import redis
from pydantic import BaseModel, Field

from pipeline.core.dag import Dag
from pipeline.core.errors import ErrorCode
from pipeline.core.hostgate import HostStatus, WaitReason, clock
from pipeline.core.job import ErrorInfo, JobStatus, StageStatus
from pipeline.core.redact import public_text, public_url
from pipeline.core.settings import Settings
from pipeline.core.stage import Queue
from pipeline.engine.distributed.counters import JobCounter, Stats
from pipeline.engine.distributed.hostgate import RedisHostGate
from pipeline.engine.distributed.jobstore import REDIS_DOWN, JobEvent, JobRecord, JobStore
from pipeline.engine.distributed.keys import RedisKeys
from pipeline.ops.opshistory import History, Sample, Throughput, increase, throughput
from pipeline.stages import default_dag

ACTIVE = (JobStatus.RUNNING, JobStatus.QUEUED)
MAX_ACTIVE = 5000
"""Active jobs read per snapshot (the oldest beyond this are not looked at)."""
SHOWN_ACTIVE = 50
EVENTS_SCANNED = 2000
THROUGHPUT_WINDOW_S = 3600.0
THROUGHPUT_BUCKETS = 12


class AlertKind(StrEnum):
    REDIS_DOWN = "redis.down"
    QUEUE_UNSERVED = "queue.unserved"
    QUEUE_BACKLOG = "queue.backlog"
    SOURCE_BLOCKED = "source.blocked"
    DISK_LOW = "disk.low"


class Alert(BaseModel):
    kind: AlertKind
    message: str
    queue: str | None = None
    host: str | None = None
    value: float | None = None
    threshold: float | None = None


class StageLine(BaseModel):
    status: StageStatus
    progress: float
    detail: str = ""
    reused: bool = False
    worker: str | None = None
    attempts: int = 0


class JobLine(BaseModel):
    """A job as the dashboards show it: its source and error message without credentials or
    signatures in their URLs (pipeline.core.redact)."""

    id: str
    source: str
    event: str | None
    status: JobStatus
    progress: float
    stages: dict[str, StageLine]
    error: ErrorInfo | None = None
    failed_stage: str | None = None
    card_id: str | None = None
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, record: JobRecord) -> JobLine:
        state = record.state
        stages = {
            name: StageLine(
                status=s.status,
                progress=round(s.progress, 1),
                detail=s.detail,
                reused=s.reused,
                worker=record.stage_runtime(name).worker,
                attempts=s.attempts,
            )
            for name, s in state.stages.items()
        }
        progress = sum(s.progress for s in stages.values()) / len(stages) if stages else 0.0
        failed = [n for n, s in state.stages.items() if s.status is StageStatus.FAILED]
        if state.error is not None:
            matching = [n for n in failed if (state.stages[n].error or state.error) == state.error]
            failed = matching or failed
        return cls(
            id=state.id,
            source=public_url(state.spec.source, keep_query=True),
            event=state.spec.event,
            status=state.status,
            progress=round(progress, 1),
            stages=stages,
            error=public_error(state.error),
            failed_stage=failed[0] if failed else None,
            card_id=state.card_id,
            created_at=state.created_at,
            updated_at=state.updated_at,
        )


def public_error(error: ErrorInfo | None) -> ErrorInfo | None:
    """The error with the URLs in its message in their public form (pipeline.core.redact)."""
    if error is None:
        return None
    return error.model_copy(update={"message": public_text(error.message)})


class RunningStage(BaseModel):
    job_id: str
    stage: str
    progress: float
    detail: str = ""


class WorkerView(BaseModel):
    hostname: str
    queues: list[str]
    concurrency: int | None = None
    busy: bool
    running: list[RunningStage]


class QueueView(BaseModel):
    name: str
    workers: list[str]
    busy_workers: int
    running: int
    depth: int
    oldest_wait_s: float | None


class Failure(BaseModel):
    job_id: str
    source: str
    stage: str | None
    code: str
    message: str
    time: datetime


class DiskView(BaseModel):
    host: str
    path: str
    free_bytes: int
    total_bytes: int


class Snapshot(BaseModel):
    time: datetime
    redis: bool
    jobs: dict[str, int] = Field(default_factory=dict)
    """Jobs by state (every state, zeros included)."""
    failures_by_code: dict[str, int] = Field(default_factory=dict)
    """Stages failed for good, by error code, since Redis began counting."""
    counters: dict[str, int] = Field(default_factory=dict)
    queues: dict[str, QueueView] = Field(default_factory=dict)
    workers: list[WorkerView] = Field(default_factory=list)
    active: list[JobLine] = Field(default_factory=list)
    """Running jobs, then queued ones (at most SHOWN_ACTIVE)."""
    failures: list[Failure] = Field(default_factory=list)
    throughput: Throughput | None = None
    disks: list[DiskView] = Field(default_factory=list)
    hosts: list[HostStatus] = Field(default_factory=list)
    """Source hosts paused after refusals, or being tried again after a pause: their jobs wait."""
    alerts: list[Alert] = Field(default_factory=list)


def dag_queues(dag: Dag) -> list[str]:
    used = {stage.queue.value for stage in dag}
    return [q.value for q in Queue if q.value in used]


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class OpsView:
    """Reads the cluster's state for the ops views; also where workers report themselves."""

    def __init__(self, settings: Settings, store: JobStore | None = None, dag: Dag | None = None):
        self.settings = settings
        self.ops = settings.ops
        self.store = store or JobStore(settings.cluster)
        self.redis: redis.Redis = self.store.redis
        self.keys: RedisKeys = self.store.keys
        self.dag = dag or default_dag()
        self.queue_of = {stage.name: stage.queue.value for stage in self.dag}
        self.history = History(
            self.redis, self.store.prefix, self.ops.sample_interval_s, self.ops.history_s
        )
        self.host_gate = RedisHostGate(self.store, settings.sources.backoff)

    # -- the snapshot ------------------------------------------------------------------------

    def snapshot(self, *, sample: bool = True) -> Snapshot:
        now = datetime.now(UTC)
        try:
            if not self.redis.ping():
                raise redis.ConnectionError("no PONG")
            return self._snapshot(now, sample)
        except REDIS_DOWN as exc:
            alert = Alert(kind=AlertKind.REDIS_DOWN, message=f"Redis is unreachable: {exc}")
            return Snapshot(time=now, redis=False, alerts=[alert])

    def _snapshot(self, now: datetime, sample: bool) -> Snapshot:
        server_now = self._server_time()
        counters = self._counters()
        active = self._active()
        live = self.store.live_workers()
        reports = self._reports()
        queues = self._queues(active, live, now)
        current = self._sample(server_now, queues, active, counters)
        if sample and self.history.due():
            self.history.add(current)
        history = self.history.since(
            server_now - max(THROUGHPUT_WINDOW_S, self.ops.blocked_window_s)
        )
        disks = self._disks(reports)
        snapshot = Snapshot(
            time=now,
            redis=True,
            jobs=self._job_counts(),
            failures_by_code=Stats(counters).failures_by_code(),
            counters=counters,
            queues={q.name: q for q in queues},
            workers=self._workers(live, reports, active),
            active=[JobLine.of(r) for r in _running_first(active)[:SHOWN_ACTIVE]],
            failures=self._failures(),
            throughput=throughput(history, current, THROUGHPUT_WINDOW_S, THROUGHPUT_BUCKETS),
            disks=disks,
            hosts=self.host_gate.hosts(),
        )
        blocked = increase(history, current, self.ops.blocked_window_s, _blocked)
        snapshot.alerts = self._alerts(snapshot, blocked)
        return snapshot

    def take_sample(self) -> bool:
        """Take a sample if one is due (the workers' reporter calls this); True if taken."""
        if not self.history.due():
            return False
        active = self._active()
        queues = self._queues(active, self.store.live_workers(), datetime.now(UTC))
        self.history.add(self._sample(self._server_time(), queues, active, self._counters()))
        return True

    def samples(self, window_s: float) -> list[Sample]:
        return self.history.since(self._server_time() - window_s)

    # -- parts -------------------------------------------------------------------------------

    def _server_time(self) -> float:
        seconds, micros = self.redis.time()
        return float(seconds) + float(micros) / 1_000_000

    def _counters(self) -> dict[str, int]:
        raw: dict[bytes, bytes] = self.redis.hgetall(self.keys.stats)  # type: ignore[assignment]
        return {k.decode(): int(v) for k, v in raw.items()}

    def _job_counts(self) -> dict[str, int]:
        with self.redis.pipeline(transaction=False) as pipe:
            for status in JobStatus:
                pipe.zcard(self.keys.jobs_by_status(status))
            counts = pipe.execute()
        return {str(status): int(n) for status, n in zip(JobStatus, counts, strict=True)}

    def _active(self) -> list[JobRecord]:
        ids: list[str] = []
        for status in ACTIVE:
            key = self.keys.jobs_by_status(status)
            ids += [_text(i) for i in self.redis.zrange(key, 0, MAX_ACTIVE - 1)]
        return self.records(ids[:MAX_ACTIVE])

    def records(self, job_ids: list[str]) -> list[JobRecord]:
        found: list[JobRecord] = []
        for start in range(0, len(job_ids), 500):
            chunk = job_ids[start : start + 500]
            raws = self.redis.mget([self.keys.job(i) for i in chunk])
            found += [JobRecord.model_validate_json(raw) for raw in raws if raw is not None]
        return found

    def _queues(
        self, active: list[JobRecord], live: dict[str, list[str]], now: datetime
    ) -> list[QueueView]:
        waiting: dict[str, list[datetime]] = {}
        running: dict[str, set[str]] = {}
        busy: dict[str, set[str]] = {}
        for record in active:
            for name, state in record.state.stages.items():
                queue = self.queue_of.get(name)
                if queue is None:
                    continue
                runtime = record.stage_runtime(name)
                queued_at = runtime.queued_at
                if state.status is StageStatus.PENDING and queued_at is not None:
                    if queued_at <= now:
                        waiting.setdefault(queue, []).append(queued_at)
                elif state.status is StageStatus.RUNNING:
                    running.setdefault(queue, set()).add(f"{record.id}/{name}")
                    if runtime.worker:
                        busy.setdefault(queue, set()).add(runtime.worker)
        views = []
        for queue in dag_queues(self.dag):
            times = waiting.get(queue, [])
            views.append(
                QueueView(
                    name=queue,
                    workers=sorted(h for h, qs in live.items() if queue in qs),
                    busy_workers=len(busy.get(queue, set())),
                    running=len(running.get(queue, set())),
                    depth=len(times),
                    oldest_wait_s=max(0.0, (now - min(times)).total_seconds()) if times else None,
                )
            )
        return views

    def _sample(
        self,
        server_now: float,
        queues: list[QueueView],
        active: list[JobRecord],
        counters: dict[str, int],
    ) -> Sample:
        stats = Stats(counters)
        return Sample(
            time=server_now,
            depth={q.name: q.depth for q in queues},
            running=sum(q.running for q in queues),
            succeeded=stats.jobs(JobCounter.SUCCEEDED),
            failed=stats.jobs(JobCounter.FAILED),
            cancelled=stats.jobs(JobCounter.CANCELLED),
            blocked=stats.attempts_failed_with(ErrorCode.SOURCE_BLOCKED),
        )

    def _workers(
        self,
        live: dict[str, list[str]],
        reports: dict[str, dict[str, Any]],
        active: list[JobRecord],
    ) -> list[WorkerView]:
        running: dict[str, list[RunningStage]] = {}
        for record in active:
            for name, state in record.state.stages.items():
                worker = record.stage_runtime(name).worker
                if state.status is StageStatus.RUNNING and worker:
                    running.setdefault(worker, []).append(
                        RunningStage(
                            job_id=record.id,
                            stage=name,
                            progress=round(state.progress, 1),
                            detail=state.detail,
                        )
                    )
        views = []
        for hostname in sorted(live):
            report = reports.get(hostname, {})
            concurrency = report.get("concurrency")
            views.append(
                WorkerView(
                    hostname=hostname,
                    queues=sorted(live[hostname]),
                    concurrency=int(concurrency) if concurrency else None,
                    busy=bool(running.get(hostname)),
                    running=running.get(hostname, []),
                )
            )
        return views

    def _failures(self) -> list[Failure]:
        """The last jobs that failed, newest first, from the events stream (read backwards in
        chunks, at most EVENTS_SCANNED entries)."""
        latest: dict[str, tuple[datetime, str]] = {}
        upper, scanned = "+", 0
        while scanned < EVENTS_SCANNED and len(latest) < self.ops.failures_shown:
            entries = self.redis.xrevrange(self.keys.events, max=upper, count=250)
            if not entries:
                break
            for entry_id, fields in entries:
                data = {_text(k): _text(v) for k, v in (fields or {}).items()}
                if data.get("type") != JobEvent.JOB_FAILED or data.get("job") in latest:
                    continue
                millis = int(_text(entry_id).split("-")[0])
                moment = datetime.fromtimestamp(millis / 1000, UTC)
                latest[data["job"]] = (moment, data.get("code", ""))
                if len(latest) >= self.ops.failures_shown:
                    break
            scanned += len(entries)
            upper = f"({_text(entries[-1][0])}"
        records = {r.id: r for r in self.records(list(latest))}
        failures = []
        for job_id, (moment, code) in latest.items():
            record = records.get(job_id)
            line = JobLine.of(record) if record is not None else None
            error = line.error if line is not None else None
            failures.append(
                Failure(
                    job_id=job_id,
                    source=line.source if line is not None else "",
                    stage=line.failed_stage if line is not None else None,
                    code=error.code if error is not None else code,
                    message=error.message if error is not None else "",
                    time=moment,
                )
            )
        return failures

    # -- workers' reports --------------------------------------------------------------------

    def report_worker(self, hostname: str, queues: list[str], concurrency: int | None) -> None:
        """A worker's concurrency and workspace disk, for the views (expires unless renewed)."""
        report: dict[str, Any] = {
            "hostname": hostname,
            "queues": queues,
            "concurrency": concurrency,
            "time": time.time(),
        }
        disk = local_disk(self.settings.storage.workspace, hostname)
        if disk is not None:
            report["disk"] = disk.model_dump()
        ttl_ms = int(self.ops.worker_report_s * 3 * 1000)
        self.redis.set(self.keys.worker_report(hostname), json.dumps(report), px=ttl_ms)

    def withdraw_worker(self, hostname: str) -> None:
        self.redis.delete(self.keys.worker_report(hostname))

    def _reports(self) -> dict[str, dict[str, Any]]:
        keys = list(self.redis.scan_iter(match=self.keys.worker_report_pattern, count=500))
        if not keys:
            return {}
        reports = {}
        for raw in self.redis.mget(keys):
            if raw is not None:
                data = json.loads(raw)
                reports[str(data["hostname"])] = data
        return reports

    def _disks(self, reports: dict[str, dict[str, Any]]) -> list[DiskView]:
        disks = [DiskView.model_validate(r["disk"]) for r in reports.values() if r.get("disk")]
        here = local_disk(
            self.settings.storage.workspace, f"{socket.gethostname()} (here)", must_exist=True
        )
        if here is not None and all(d.path != here.path or d.host != here.host for d in disks):
            disks.append(here)
        return disks

    # -- alerts ------------------------------------------------------------------------------

    def _alerts(self, snapshot: Snapshot, blocked: int) -> list[Alert]:
        ops = self.ops
        alerts = []
        for queue in snapshot.queues.values():
            if not queue.workers:
                alerts.append(
                    Alert(
                        kind=AlertKind.QUEUE_UNSERVED,
                        queue=queue.name,
                        message=f"No live worker consumes the {queue.name} queue.",
                        value=float(queue.depth),
                    )
                )
            if queue.oldest_wait_s is not None and queue.oldest_wait_s > ops.max_wait_s:
                alerts.append(
                    Alert(
                        kind=AlertKind.QUEUE_BACKLOG,
                        queue=queue.name,
                        message=f"A stage has waited {queue.oldest_wait_s:.0f} s in the "
                        f"{queue.name} queue (over {ops.max_wait_s:.0f} s).",
                        value=queue.oldest_wait_s,
                        threshold=ops.max_wait_s,
                    )
                )
        if blocked >= ops.blocked_burst:
            alerts.append(
                Alert(
                    kind=AlertKind.SOURCE_BLOCKED,
                    message=f"{blocked} downloads were refused (source.blocked) in the last "
                    f"{ops.blocked_window_s:.0f} s: the source site may be blocking us.",
                    value=float(blocked),
                    threshold=float(ops.blocked_burst),
                )
            )
        for host in snapshot.hosts:
            alerts.append(paused_host_alert(host))
        for disk in snapshot.disks:
            low = disk_low(disk, ops.min_free_disk_gb, ops.min_free_disk_ratio)
            if low:
                alerts.append(
                    Alert(
                        kind=AlertKind.DISK_LOW,
                        host=disk.host,
                        message=f"{disk.host}: {disk.free_bytes / 1e9:.1f} GB free of "
                        f"{disk.total_bytes / 1e9:.1f} GB in {disk.path}.",
                        value=float(disk.free_bytes),
                        threshold=ops.min_free_disk_gb * 1e9,
                    )
                )
        return alerts


def paused_host_alert(host: HostStatus) -> Alert:
    """The ``source.blocked`` alert of one host that refused us: its jobs wait meanwhile."""
    cause = f" ({host.cause})" if host.cause else ""
    until = clock(host.paused_until.timestamp())
    if host.state is WaitReason.PAUSED:
        message = (
            f"{host.host} is paused until {until} after {host.refusals} refusals{cause}; "
            "its jobs wait."
        )
    else:
        message = (
            f"{host.host} was paused until {until}{cause}; one job is trying it again, "
            "the others wait."
        )
    return Alert(
        kind=AlertKind.SOURCE_BLOCKED,
        host=host.host,
        message=message,
        value=float(host.refusals),
    )


def disk_low(disk: DiskView, min_free_gb: float, min_free_ratio: float) -> bool:
    if disk.free_bytes < min_free_gb * 1e9:
        return True
    return disk.total_bytes > 0 and disk.free_bytes / disk.total_bytes < min_free_ratio


def local_disk(workspace: str, host: str, *, must_exist: bool = False) -> DiskView | None:
    """The disk holding the workspace here (its nearest existing parent's, unless
    ``must_exist``); None when there is none."""
    path = Path(workspace).expanduser()
    if must_exist and not path.is_dir():
        return None
    while not path.exists() and path != path.parent:
        path = path.parent
    with contextlib.suppress(OSError):
        usage = shutil.disk_usage(path)
        return DiskView(
            host=host, path=str(Path(workspace)), free_bytes=usage.free, total_bytes=usage.total
        )
    return None


def _blocked(sample: Sample) -> int:
    return sample.blocked


def _running_first(records: list[JobRecord]) -> list[JobRecord]:
    return sorted(
        records,
        key=lambda r: (r.state.status is not JobStatus.RUNNING, -r.state.created_at.timestamp()),
    )
