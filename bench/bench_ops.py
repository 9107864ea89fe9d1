"""What watching the cluster costs: one ops snapshot and one /metrics scrape, against reading
one page of jobs the way ``GET /v1/jobs`` does, with more and more active jobs in Redis.

A private redis-server is filled with N active jobs (half queued, half running, every stage of
the default DAG in the record, each with a stage waiting or running) and the figures workers
write (stage histograms for every stage). Measured side by side, in one run, for each N:

- **page**: ``JobStore.list_jobs(limit=50)``: what a producer's list costs (the reference);
- **snapshot**: ``OpsView.snapshot()``: what ``recast status``, /healthz and the board pay;
- **scrape**: ``pipeline.ops.prometheus.render``: a Prometheus scrape of /metrics.

    .venv/bin/python bench/bench_ops.py [--jobs 50,500,2000] [--runs 5]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pipeline.core.job import JobSpec, JobStatus, StageStatus, utcnow  # noqa: E402
from pipeline.engine.distributed.jobstore import Effects, JobRecord, JobStore  # noqa: E402
from pipeline.ops.metrics import MetricsRecorder  # noqa: E402
from pipeline.ops.opsview import OpsView  # noqa: E402
from pipeline.ops.prometheus import render  # noqa: E402
from pipeline.stages import default_dag  # noqa: E402
from tests.conftest import make_settings  # noqa: E402
from tests.support.workers import RedisServer, cluster_test_settings  # noqa: E402


def fill(store: JobStore, first: int, count: int) -> None:
    dag = default_dag()

    def start(index: int) -> Callable[[JobRecord], Effects]:
        def change(record: JobRecord) -> Effects:
            record.state.status = JobStatus.RUNNING if index % 2 else JobStatus.QUEUED
            ingest = record.stage("ingest")
            if index % 2:
                ingest.status, ingest.progress = StageStatus.RUNNING, 40.0
                record.stage_runtime("ingest").worker = f"w{index % 4}@bench"
            else:
                record.stage_runtime("ingest").queued_at = utcnow()
            return Effects()

        return change

    for index in range(first, first + count):
        spec = JobSpec(source=f"https://example.org/talk-{index}")
        store.create(spec, dag.names, start(index))


def timed(action: Callable[[], object], runs: int) -> float:
    samples = []
    for _ in range(runs):
        began = time.perf_counter()
        action()
        samples.append(time.perf_counter() - began)
    return statistics.median(samples)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", default="50,500,2000")
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    sizes = [int(n) for n in args.jobs.split(",")]
    with tempfile.TemporaryDirectory() as tmp, RedisServer(Path(tmp) / "redis") as server:
        settings = make_settings(Path(tmp), cluster=cluster_test_settings(server.url))
        store = JobStore(settings.cluster)
        view = OpsView(settings, store)
        recorder = MetricsRecorder(store.redis, store.prefix)
        for stage in view.dag.names:
            for seconds in (0.4, 3, 40, 700):
                recorder.record_stage(stage, seconds, media_seconds=60.0)
        filled = 0
        print(f"{'active jobs':>11} {'page ms':>8} {'snapshot ms':>12} {'scrape ms':>10}  ratios")
        for size in sizes:
            fill(store, filled, size - filled)
            filled = size
            page = timed(lambda: store.list_jobs(limit=50), args.runs)
            snap = timed(view.snapshot, args.runs)
            scrape = timed(lambda: render(view), args.runs)
            print(
                f"{size:>11} {page * 1000:>8.1f} {snap * 1000:>12.1f} {scrape * 1000:>10.1f}"
                f"  snapshot/page {snap / page:.1f}x, scrape/snapshot {scrape / snap:.2f}x"
            )


if __name__ == "__main__":
    main()
