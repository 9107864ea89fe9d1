"""The cluster's metrics in Prometheus' text format (served at ``/metrics`` by the API).

A collector reads Redis at scrape time: the ops snapshot (``pipeline.ops.opsview``: jobs by
state, queues, workers, alerts), the job store's ``stats`` counters (read by name through
``pipeline.engine.distributed.counters``) and the workers' measurements
(``pipeline.ops.metrics``). Nothing is kept per process, so any API replica answers for the
whole cluster. Every metric is prefixed ``recast_``; docs/ops.md lists them
and config/grafana-dashboard.json charts them.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector, CollectorRegistry

from pipeline.engine.distributed.counters import (
    FINISHED_JOB_STATUSES,
    HistogramName,
    JobCounter,
    Measure,
    Stats,
    job_finished,
)
from pipeline.ops.metrics import MetricsRecorder
from pipeline.ops.opsview import AlertKind, OpsView, Snapshot

CONTENT_TYPE = CONTENT_TYPE_LATEST


class ClusterCollector(Collector):
    def __init__(self, view: OpsView):
        self.view = view
        self.recorder = MetricsRecorder(view.redis, view.store.prefix)

    def collect(self) -> Iterable[Metric]:
        snapshot = self.view.snapshot()
        up = GaugeMetricFamily("recast_up", "1 when Redis (job store) is reachable.")
        up.add_metric([], 1.0 if snapshot.redis else 0.0)
        yield up
        yield from _alerts(snapshot)
        if not snapshot.redis:
            return
        yield from _jobs(snapshot)
        yield from _stages(snapshot)
        yield from _queues(snapshot)
        yield from _hosts(snapshot)
        yield from self._measurements()

    def _measurements(self) -> Iterator[Metric]:
        for name, metric, doc in (
            (
                HistogramName.STAGE_SECONDS,
                "recast_stage_duration_seconds",
                "Wall time of finished stage runs (scheduling excluded), by stage.",
            ),
            (
                HistogramName.TRANSCODE_SPEED,
                "recast_transcode_speed_ratio",
                "Media seconds per wall second of the stages on the transcode queue.",
            ),
        ):
            family = HistogramMetricFamily(metric, doc, labels=["stage"])
            for stage, histogram in self.recorder.histograms(name).items():
                family.add_metric([stage], histogram.buckets, histogram.sum)
            yield family
        totals = self.recorder.totals()
        downloaded = CounterMetricFamily(
            "recast_downloaded_bytes", "Bytes ingest fetched from sources (media, captions)."
        )
        downloaded.add_metric([], totals.of(Measure.DOWNLOADED_BYTES))
        yield downloaded
        media_seconds = totals.by_stage(Measure.TRANSCODE_MEDIA_SECONDS)
        wall_seconds = totals.by_stage(Measure.TRANSCODE_WALL_SECONDS)
        media = CounterMetricFamily(
            "recast_transcode_media_seconds",
            "Media seconds gone through the stages of the transcode queue.",
            labels=["stage"],
        )
        wall = CounterMetricFamily(
            "recast_transcode_wall_seconds",
            "Wall seconds those stages took (rate(media)/rate(wall) is the speed).",
            labels=["stage"],
        )
        for stage, seconds in media_seconds.items():
            media.add_metric([stage], seconds)
            wall.add_metric([stage], wall_seconds.get(stage, 0.0))
        yield media
        yield wall


def _alerts(snapshot: Snapshot) -> Iterator[Metric]:
    family = GaugeMetricFamily(
        "recast_alerts", "Alerts worth a page that are firing, by kind.", labels=["alert"]
    )
    for kind in AlertKind:
        family.add_metric([kind.value], float(sum(a.kind is kind for a in snapshot.alerts)))
    yield family


def _jobs(snapshot: Snapshot) -> Iterator[Metric]:
    stats = Stats(snapshot.counters)
    jobs = GaugeMetricFamily("recast_jobs", "Jobs by state.", labels=["state"])
    for state, count in snapshot.jobs.items():
        jobs.add_metric([state], float(count))
    yield jobs
    submitted = CounterMetricFamily("recast_jobs_submitted", "Jobs created.")
    submitted.add_metric([], float(stats.jobs(JobCounter.SUBMITTED)))
    yield submitted
    finished = CounterMetricFamily(
        "recast_jobs_finished", "Jobs that ended, by how (a retried job may end twice).",
        labels=["state"],
    )  # fmt: skip
    for status in FINISHED_JOB_STATUSES:
        finished.add_metric([str(status)], float(stats.jobs(job_finished(status))))
    yield finished
    retried = CounterMetricFamily("recast_jobs_retried", "Retries asked for.")
    retried.add_metric([], float(stats.jobs(JobCounter.RETRIED)))
    yield retried
    failures = CounterMetricFamily(
        "recast_failures", "Stages failed for good, by error code.", labels=["code"]
    )
    for code, count in stats.failures_by_code().items():
        failures.add_metric([code], float(count))
    yield failures


def _stages(snapshot: Snapshot) -> Iterator[Metric]:
    stats = Stats(snapshot.counters)
    completions = CounterMetricFamily(
        "recast_stage_completions", "Stage runs that did their work, by stage.", labels=["stage"]
    )
    for stage, value in stats.stage_completions().items():
        completions.add_metric([stage], float(value))
    yield completions
    reused = CounterMetricFamily(
        "recast_stage_reuses",
        "Stage runs that found their outputs of an earlier run in place (no work), by stage.",
        labels=["stage"],
    )
    for stage, value in stats.stage_reuses().items():
        reused.add_metric([stage], float(value))
    yield reused
    errors = CounterMetricFamily(
        "recast_stage_errors",
        "Failed stage attempts (retried or not), by stage and error code.",
        labels=["stage", "code"],
    )
    for (stage, code), value in stats.stage_errors().items():
        errors.add_metric([stage, code], float(value))
    yield errors
    lost = CounterMetricFamily(
        "recast_stages_worker_lost", "Stage runs that died with their worker (reaped)."
    )
    lost.add_metric([], float(stats.worker_lost()))
    yield lost


def _queues(snapshot: Snapshot) -> Iterator[Metric]:
    depth = GaugeMetricFamily(
        "recast_queue_depth", "Stages waiting for a worker, by queue.", labels=["queue"]
    )
    oldest = GaugeMetricFamily(
        "recast_queue_oldest_wait_seconds",
        "How long the longest-waiting stage has waited, by queue (0 when none waits).",
        labels=["queue"],
    )
    workers = GaugeMetricFamily(
        "recast_queue_workers", "Live workers consuming the queue.", labels=["queue"]
    )
    busy = GaugeMetricFamily(
        "recast_queue_busy_workers", "Live workers running a stage of the queue.", labels=["queue"]
    )
    running = GaugeMetricFamily(
        "recast_queue_running", "Stages of the queue running now.", labels=["queue"]
    )
    for queue in snapshot.queues.values():
        depth.add_metric([queue.name], float(queue.depth))
        oldest.add_metric([queue.name], queue.oldest_wait_s or 0.0)
        workers.add_metric([queue.name], float(len(queue.workers)))
        busy.add_metric([queue.name], float(queue.busy_workers))
        running.add_metric([queue.name], float(queue.running))
    yield from (depth, oldest, workers, busy, running)
    live = GaugeMetricFamily("recast_workers", "Live workers.")
    live.add_metric([], float(len(snapshot.workers)))
    yield live
    disk = GaugeMetricFamily(
        "recast_workspace_free_bytes", "Free space on workspace disks, by host.", labels=["host"]
    )
    for item in snapshot.disks:
        disk.add_metric([item.host], float(item.free_bytes))
    yield disk


def _hosts(snapshot: Snapshot) -> Iterator[Metric]:
    paused = GaugeMetricFamily(
        "recast_source_host_paused_seconds",
        "Seconds left in the pause of a source host that refused us (0 while one job tries it "
        "again after the pause), by host; absent when no host is paused.",
        labels=["host"],
    )
    for host in snapshot.hosts:
        left = (host.paused_until - snapshot.time).total_seconds()
        paused.add_metric([host.host], max(0.0, left))
    yield paused


def render(view: OpsView) -> bytes:
    """The text exposition of the cluster's metrics, read now."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(ClusterCollector(view))
    return generate_latest(registry)
