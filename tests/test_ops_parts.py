"""Ops parts against a real redis-server (no workers): the per-stage job log (bounded, JSON,
ffmpeg's and yt-dlp's output in it), alerts worth a page (backlog, source.blocked burst, disk,
unserved queues, Redis down) in the snapshot and in /metrics, throughput from samples, and
Flower as docker-compose runs it, serving its own Prometheus /metrics."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from pipeline.core import logs
from pipeline.core.errors import ErrorCode, RecastError
from pipeline.core.job import JobSpec, utcnow
from pipeline.core.settings import Settings
from pipeline.core.stage import StageContext
from pipeline.core.workspace import Workspace
from pipeline.engine.distributed import counters
from pipeline.engine.distributed.jobstore import Effects, JobEvent, JobRecord, JobStore
from pipeline.ops.joblog import JobLogHandler, read_log, render_line
from pipeline.ops.metrics import STAGE_BUCKETS
from pipeline.ops.opshistory import Sample, throughput
from pipeline.ops.opsview import AlertKind, OpsView
from pipeline.ops.prometheus import render
from pipeline.tools import ffmpeg_tools
from pipeline.tools.ytdlp import _QuietLogger
from tests.conftest import make_settings
from tests.support.workers import (
    ROOT,
    RedisServer,
    cluster_test_settings,
    free_port,
    wait_for,
    write_config,
)

JOB = "j" + "0" * 19 + "1"


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    with RedisServer(tmp_path_factory.mktemp("redis")) as server:
        yield server


def _settings(tmp: Path, redis_url: str, prefix: str = "recast", **ops: Any) -> Settings:
    celery = cluster_test_settings(redis_url, key_prefix=prefix)
    return make_settings(tmp, cluster=celery, ops=ops)


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


@contextlib.contextmanager
def _job_log(settings: Settings, store: JobStore) -> Iterator[JobLogHandler]:
    logs.configure("INFO", json_lines=True)
    handler = JobLogHandler(store.redis, store.prefix, settings.ops)
    logs.attach(handler)
    try:
        yield handler
    finally:
        logs.detach(handler)


def test_job_log_keeps_the_tail_of_each_stage_as_json_lines(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    settings = _settings(tmp_path, redis_server.url, job_log_lines=10, job_log_line_chars=300)
    store = JobStore(settings.cluster)
    log = logging.getLogger("recast.stage.transcode")
    with _job_log(settings, store) as handler:
        with logs.job_context(job_id=JOB, stage="transcode", task_id="t-1"):
            for index in range(25):
                log.info("line %d", index)
            log.warning("x" * 1000)
            try:
                raise ValueError("boom " * 100)
            except ValueError:
                log.exception("it failed")
        log.info("no job here: not kept")
        logging.getLogger("recast.stage.probe").info(
            "another stage", extra={"job_id": JOB, "stage": "probe"}
        )
        logging.getLogger("recast.stage.probe").debug("below the level: not kept")
        handler.flush()
    lines = read_log(store.redis, store.prefix, JOB, "transcode", limit=100)
    assert len(lines) == 10, "bounded to job_log_lines"
    entries = [json.loads(line) for line in lines]
    assert [e["message"] for e in entries[:8]] == [f"line {i}" for i in range(17, 25)]
    assert all(e["job_id"] == JOB and e["stage"] == "transcode" for e in entries)
    assert all(e["task_id"] == "t-1" for e in entries)
    long_one, failed = entries[-2], entries[-1]
    assert long_one["truncated"] is True and long_one["message"].endswith("[...]")
    assert all(len(line) <= 310 for line in lines), [len(line) for line in lines]
    assert failed["message"] == "it failed" and failed["level"] == "error"
    assert failed["exception"].startswith("[...]") and failed["exception"].endswith("boom ")
    assert [
        json.loads(x)["message"] for x in read_log(store.redis, store.prefix, JOB, "probe")
    ] == ["another stage"]
    assert store.redis.ttl(store.keys.job_log(JOB, "transcode")) > 0
    assert render_line(lines[0]).endswith("recast.stage.transcode: line 17")


def test_ffmpeg_and_ytdlp_output_reach_the_stage_log(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    settings = _settings(tmp_path, redis_server.url)
    store = JobStore(settings.cluster)
    job = "j" + "0" * 19 + "2"
    with _job_log(settings, store) as handler:
        with (
            logs.job_context(job_id=job, stage="thumbnails", task_id="t-2"),
            pytest.raises(RecastError),
        ):
            ffmpeg_tools.run(["-i", str(tmp_path / "missing.mp4"), "-f", "null", "-"], timeout_s=30)
        workspace = Workspace(tmp_path / job)
        ctx = StageContext(
            job_id=job,
            stage="ingest",
            spec=JobSpec(source="https://example.org/v"),
            settings=settings,
            workspace=workspace,
            out=workspace.root,
        )
        _QuietLogger(ctx).debug("[generic] Extracting URL: https://example.org/v")
        _QuietLogger(ctx).error("ERROR: HTTP Error 403: Forbidden")
        handler.flush()
    thumbnails = [json.loads(x) for x in read_log(store.redis, store.prefix, job, "thumbnails")]
    assert thumbnails, "ffmpeg's stderr kept"
    assert {e["logger"] for e in thumbnails} == {"recast.tool.ffmpeg"}
    assert any("missing.mp4" in e["message"] for e in thumbnails)
    assert all(e["job_id"] == job and e["task_id"] == "t-2" for e in thumbnails)
    ingest = [json.loads(x) for x in read_log(store.redis, store.prefix, job, "ingest")]
    assert [(e["logger"], e["message"]) for e in ingest] == [
        ("recast.tool.ytdlp", "[generic] Extracting URL: https://example.org/v"),
        ("recast.stage.ingest", "yt-dlp: ERROR: HTTP Error 403: Forbidden"),
    ]


def _waiting_job(store: JobStore, source: str, waited: timedelta) -> JobRecord:
    def schedule(record: JobRecord) -> Effects:
        record.stage_runtime("ingest").queued_at = utcnow() - waited
        return Effects()

    record, _ = store.create(JobSpec(source=source), ["ingest", "probe"], schedule)
    return record


def _blocked_failure(store: JobStore, record: JobRecord) -> None:
    """What the job store records when ingest fails with source.blocked
    (pipeline.engine.distributed.stagerun)."""

    def fail(current: JobRecord) -> Effects:
        effects = Effects()
        effects.count(counters.stage_errors("ingest", ErrorCode.SOURCE_BLOCKED))
        effects.count(counters.failures(ErrorCode.SOURCE_BLOCKED))
        effects.event(JobEvent.STAGE_FAILED, current, "ingest", code="source.blocked")
        return effects

    store.transact(record.id, fail)


def test_alerts_worth_a_page(tmp_path: Path, redis_server: RedisServer) -> None:
    settings = _settings(
        tmp_path,
        redis_server.url,
        prefix="alerts",
        max_wait_s=600,
        blocked_burst=3,
        blocked_window_s=600,
        min_free_disk_ratio=1.0,
    )
    Path(settings.storage.workspace).mkdir(parents=True)
    store = JobStore(settings.cluster)
    view = OpsView(settings, store)
    old = _waiting_job(store, "https://example.org/old", timedelta(hours=2))
    _waiting_job(store, "https://example.org/new", timedelta(seconds=1))
    assert view.take_sample()  # as the workers' reporters do all the time
    for _ in range(2):
        _blocked_failure(store, old)

    snapshot = view.snapshot()
    kinds = [(a.kind, a.queue) for a in snapshot.alerts]
    assert (AlertKind.QUEUE_BACKLOG, "ingest") in kinds
    assert {q for k, q in kinds if k is AlertKind.QUEUE_UNSERVED} == set(snapshot.queues)
    assert AlertKind.SOURCE_BLOCKED not in {k for k, _ in kinds}, "2 is under the burst of 3"
    assert AlertKind.DISK_LOW in {k for k, _ in kinds}, "min_free_disk_ratio = 1: always low"
    ingest = snapshot.queues["ingest"]
    assert ingest.depth == 2 and ingest.oldest_wait_s is not None and ingest.oldest_wait_s > 7000
    assert snapshot.jobs["queued"] == 2

    _blocked_failure(store, old)
    store.worker_alive("ingest@host", ["ingest", "publish"], ttl_s=30)
    view.report_worker("ingest@host", ["ingest", "publish"], concurrency=4)
    snapshot = view.snapshot()
    kinds = [(a.kind, a.queue) for a in snapshot.alerts]
    blocked = [a for a in snapshot.alerts if a.kind is AlertKind.SOURCE_BLOCKED]
    assert len(blocked) == 1 and blocked[0].value == 3
    unserved = {q for k, q in kinds if k is AlertKind.QUEUE_UNSERVED}
    assert unserved == set(snapshot.queues) - {"ingest", "publish"}
    [worker] = snapshot.workers
    assert (worker.hostname, worker.concurrency, worker.busy) == ("ingest@host", 4, False)
    assert any(d.host == "ingest@host" for d in snapshot.disks)

    metrics = _samples(render(view).decode())
    assert metrics[("recast_alerts", (("alert", "queue.backlog"),))] == 1
    assert metrics[("recast_alerts", (("alert", "source.blocked"),))] == 1
    assert metrics[("recast_alerts", (("alert", "queue.unserved"),))] == len(unserved)
    assert metrics[("recast_queue_depth", (("queue", "ingest"),))] == 2
    assert metrics[("recast_queue_oldest_wait_seconds", (("queue", "ingest"),))] > 7000
    assert metrics[("recast_queue_workers", (("queue", "publish"),))] == 1


def test_redis_down_is_an_alert_not_an_error(tmp_path: Path) -> None:
    settings = _settings(tmp_path, f"redis://127.0.0.1:{free_port()}/0")
    view = OpsView(settings)
    snapshot = view.snapshot()
    assert snapshot.redis is False
    assert [a.kind for a in snapshot.alerts] == [AlertKind.REDIS_DOWN]
    metrics = _samples(render(view).decode())
    assert metrics[("recast_up", ())] == 0
    assert metrics[("recast_alerts", (("alert", "redis.down"),))] == 1


def _sample(time: float, succeeded: int, failed: int, cancelled: int) -> Sample:
    return Sample(
        time=time, depth={}, running=0, succeeded=succeeded, failed=failed, cancelled=cancelled
    )


def test_throughput_is_the_difference_of_samples_around_the_window() -> None:
    history = [_sample(0, 0, 0, 0), _sample(600, 2, 1, 0), _sample(1800, 5, 1, 1)]
    now = _sample(3000, 6, 2, 1)
    hour = throughput(history, now, 3600, 12)
    assert (hour.succeeded, hour.failed, hour.cancelled) == (6, 2, 1)
    assert sum(b.succeeded for b in hour.buckets) == 6
    assert sum(b.failed for b in hour.buckets) == 2
    assert hour.since is not None and hour.since.timestamp() == 0
    recent = throughput(history, now, 1000, 4)  # from t=2000: the sample at 1800 is the base
    assert (recent.succeeded, recent.failed, recent.cancelled) == (1, 1, 0)
    # A counter that went backwards (Redis lost its data) counts as nothing, not negative.
    reset = throughput([_sample(0, 9, 9, 9)], _sample(10, 1, 0, 0), 60, 2)
    assert (reset.succeeded, reset.failed, reset.cancelled) == (0, 0, 0)
    assert throughput([], now, 3600, 12).since is None


@pytest.mark.slow
def test_flower_from_docker_compose_serves_prometheus_metrics(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    from flower.options import options as flower_options

    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    flower = compose["services"]["flower"]
    env = {k: str(v) for k, v in flower["environment"].items() if k.startswith("FLOWER_")}
    assert env, "Flower's settings are in docker-compose.yml"
    for name in env:  # Flower reads FLOWER_<OPTION> (tornado spells options with dashes)
        option = name.removeprefix("FLOWER_").lower().replace("_", "-")
        assert option in flower_options._options, name
    buckets = [float(v) for v in env["FLOWER_TASK_RUNTIME_METRIC_BUCKETS"].split(",")]
    assert buckets == [float(b) for b in STAGE_BUCKETS], "Flower's buckets are Recast's"

    config = write_config(tmp_path / "recast.toml", _settings(tmp_path, redis_server.url))
    port = free_port()
    command = [c.replace("--port=5555", f"--port={port}") for c in flower["command"]]
    assert command[:3] == ["celery", "-A", "workers.app"]
    process = subprocess.Popen(
        [str(Path(sys.executable).parent / command[0]), *command[1:], "--address=127.0.0.1"],
        cwd=ROOT,
        env={**os.environ, **env, "RECAST_CONFIG": str(config)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:

        def metrics() -> str | None:
            assert process.poll() is None, "flower exited"
            with contextlib.suppress(httpx.HTTPError):
                response = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5)
                if response.status_code == 200:
                    return response.text
            return None

        text = wait_for(metrics, 60, "Flower's /metrics did not answer")
    finally:
        process.terminate()
        process.wait(timeout=10)
    names = {family.name for family in text_string_to_metric_families(text)}
    assert {"flower_events", "flower_task_runtime_seconds", "flower_worker_online"} <= names
