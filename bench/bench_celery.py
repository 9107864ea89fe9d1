"""Celery's cost: the same short jobs through the local executor and through Celery, in one run.

Twenty short recordings (``--seconds`` long, 320x180, distinct URLs on a local HTTP server)
go through every stage of the DAG with a small ladder, measured side by side:

- **local**: ``LocalExecutor`` in this process, one job after another (``recast process``);
- **celery**: the twenty submitted at once to two ``recast worker`` processes (prefork, one
  pool process each: the same two cores), with a private redis-server;
- **latency**: one job alone (after a warm-up job), submit to ``succeeded``, each way: the
  per-job overhead of the broker, the job store and a task per stage.

Prints wall times, jobs per hour and the ratios. Figures go to docs/benchmarks.md.

    .venv/bin/python bench/bench_celery.py [--jobs 20] [--seconds 3]
"""

from __future__ import annotations

import argparse
import logging
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pipeline.core.job import JobSpec  # noqa: E402
from pipeline.core.settings import Settings  # noqa: E402
from pipeline.engine.distributed.jobstore import JobStore  # noqa: E402
from pipeline.engine.local import LocalExecutor  # noqa: E402
from pipeline.publish.publisher import CardPublisher  # noqa: E402
from tests.conftest import make_settings  # noqa: E402
from tests.support.httpserver import MediaServer  # noqa: E402
from tests.support.media import make_clip  # noqa: E402
from tests.support.workers import (  # noqa: E402
    ALL_QUEUES,
    RedisServer,
    Worker,
    cluster_test_settings,
    tiny_sections,
    wait_final,
    workers,
    write_config,
)
from workers.producer import Producer  # noqa: E402


def settings_for(root: Path, redis_url: str) -> Settings:
    sections = tiny_sections()
    sections["media"]["ladder"] = [
        {"height": 180, "bitrate_kbps": 300, "peak_kbps": 450},
        {"height": 90, "bitrate_kbps": 120, "peak_kbps": 180},
    ]
    return make_settings(
        root,
        cluster=cluster_test_settings(redis_url, heartbeat_s=2.0, reaper_stale_s=30.0),
        **sections,
    )


def run_local(settings: Settings, urls: list[str]) -> float:
    publisher = CardPublisher(settings)
    started = time.perf_counter()
    for url in urls:
        state = LocalExecutor(settings, publisher=publisher).run(JobSpec(source=url))
        assert str(state.status) == "succeeded", state.error
    return time.perf_counter() - started


def run_celery(producer: Producer, store: JobStore, urls: list[str]) -> float:
    started = time.perf_counter()
    submitted = producer.submit(urls)
    for item in submitted:
        record = wait_final(store, item.record.id, 900)
        assert str(record.state.status) == "succeeded", record.state.error
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=3.0)
    args = parser.parse_args()
    logging.disable(logging.WARNING)
    tmp = Path(tempfile.mkdtemp(prefix="bench-celery-"))
    try:
        clip = make_clip(tmp / "clip.mp4", duration=args.seconds, size="320x180")
        data = clip.read_bytes()
        with RedisServer(tmp / "redis") as redis_server, MediaServer(tmp / "www") as server:
            urls = {
                way: [server.add(f"{way}/talk-{i:02}.mp4", data, "video/mp4") for i in range(n)]
                for way, n in (("local", args.jobs), ("celery", args.jobs), ("one", 4))
            }
            local_settings = settings_for(tmp / "local", redis_server.url)
            celery_settings = settings_for(tmp / "celery", redis_server.url)
            config = write_config(tmp / "recast.toml", celery_settings)
            store = JobStore(celery_settings.cluster)
            pair = [
                Worker(config, ALL_QUEUES, name, tmp / "logs", concurrency=1)
                for name in ("one", "two")
            ]
            with workers(*pair, store=store):
                producer = Producer(celery_settings, store=store)
                run_celery(producer, store, urls["one"][0:1])  # warm: pool processes import
                latency_celery = run_celery(producer, store, urls["one"][1:2])
                run_local(local_settings, urls["one"][2:3])
                latency_local = run_local(local_settings, urls["one"][3:4])
                celery_s = run_celery(producer, store, urls["celery"])
                local_s = run_local(local_settings, urls["local"])
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    jobs = args.jobs
    print(f"{jobs} jobs of {args.seconds:.0f} s at 320x180, every stage, two-rung ladder")
    print(f"{'way':<8} {'wall s':>8} {'s/job':>7} {'jobs/hour':>10}")
    for way, wall in (("local", local_s), ("celery", celery_s)):
        print(f"{way:<8} {wall:8.1f} {wall / jobs:7.2f} {3600 * jobs / wall:10.0f}")
    print(f"celery / local wall: {celery_s / local_s:.2f}")
    print(
        f"one job alone: local {latency_local:.2f} s, celery {latency_celery:.2f} s "
        f"(overhead {latency_celery - latency_local:+.2f} s per job)"
    )


if __name__ == "__main__":
    main()
