"""The Celery executor end to end: a private redis-server, two real ``recast worker``
processes (prefork pool) started once for the module, jobs submitted through the API, and the
faults the issue names: SIGKILL mid-transcode, Redis restarting, a poison input, cancel,
retry, fifty jobs at once. Every wait is a poll with a deadline."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from pipeline.core.job import FINISHED_STAGE_STATUSES, JobSpec, StageStatus
from pipeline.core.settings import Settings
from pipeline.engine.distributed import counters
from pipeline.engine.distributed.counters import JobCounter
from pipeline.engine.distributed.jobstore import JobRecord, JobStore
from pipeline.stages import default_dag
from tests.conftest import make_settings
from tests.support.httpserver import MediaServer, Response
from tests.support.media import make_clip
from tests.support.workers import (
    ALL_QUEUES,
    ROOT,
    RedisServer,
    Worker,
    cluster_test_settings,
    processes_matching,
    shim_env,
    tiny_sections,
    wait_final,
    wait_for,
    workers,
    write_config,
)
from workers.api import create_api
from workers.producer import Producer

pytestmark = pytest.mark.slow

TOKEN = "worker-tests"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
DAG = default_dag()


@dataclass
class Cluster:
    tmp: Path
    settings: Settings
    config: Path
    store: JobStore
    client: TestClient
    server: MediaServer
    redis: RedisServer
    workers: list[Worker]
    slow_file: Path

    def serve(self, name: str, duration: float = 2.0, **clip: Any) -> str:
        path = self.tmp / "clips" / name
        if not path.exists():
            make_clip(path, duration=duration, size=clip.pop("size", "160x90"), **clip)
        return self.server.put_file(name, path)

    def submit(self, *urls: str, **body: Any) -> list[str]:
        payload = {"url": urls[0]} if len(urls) == 1 else {"urls": list(urls)}
        response = self.client.post("/v1/jobs", json=payload | body, headers=AUTH)
        assert response.status_code == 202, response.text
        return [job["id"] for job in response.json()["jobs"]]

    def slow(self, job_id: str, stage: str) -> None:
        """ffmpeg at real speed in ``stage`` of the job (its command names the partial dir)."""
        with self.slow_file.open("a") as handle:
            handle.write(f"{job_id}/.{stage}.partial\n")

    def unslow(self) -> None:
        self.slow_file.write_text("")

    def worker(self, hostname: str | None) -> Worker:
        return next(w for w in self.workers if w.hostname == hostname)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    tmp = tmp_path_factory.mktemp("cluster")
    slow_file = tmp / "slow.txt"
    slow_file.write_text("")
    with RedisServer(tmp / "redis") as redis_server, MediaServer(tmp / "www") as server:
        settings = make_settings(
            tmp,
            cluster=cluster_test_settings(redis_server.url),
            executor={"max_attempts": 3, "retry_base_delay_s": 0.2},
            api={"tokens": [TOKEN]},
            **tiny_sections(),
        )
        config = write_config(tmp / "recast.toml", settings)
        store = JobStore(settings.cluster)
        env = shim_env(slow_file)
        pair = [
            Worker(config, ALL_QUEUES, name, tmp / "logs", concurrency=2, env=env)
            for name in ("alpha", "beta")
        ]
        with workers(*pair, store=store) as started:
            client = TestClient(create_api(settings, Producer(settings, store=store)))
            yield Cluster(
                tmp, settings, config, store, client, server, redis_server, started, slow_file
            )


@pytest.fixture(autouse=True)
def both_workers_up(cluster: Cluster) -> Iterator[None]:
    """Every test starts with both workers running and no ffmpeg slowed, even when the test
    before it failed halfway through killing or stopping one (no failure in a chain)."""
    yield
    cluster.unslow()
    for worker in cluster.workers:
        if worker.process is None or worker.process.poll() is not None:
            worker.process = None
            worker.start(cluster.store)


def _ran(record: JobRecord) -> dict[str, int]:
    return {name: record.stage_runtime(name).completions for name in DAG.names}


def _assert_each_stage_once(record: JobRecord) -> None:
    for name in DAG.names:
        state = record.state.stages[name]
        assert state.status in FINISHED_STAGE_STATUSES, (name, state)
        runtime = record.stage_runtime(name)
        # A worker killed right after committing a stage's outputs, before recording it, leaves
        # work that the rerun finds intact and reuses: done once all the same, never twice.
        done = runtime.completions + (1 if state.reused else 0)
        assert done == 1, (record.id, name, runtime, state)


def _slow_stage() -> str:
    for name in ("transcode", "thumbnails", "playable"):
        if name in DAG.names:
            return name
    raise AssertionError(f"no ffmpeg stage in the DAG ({DAG.names}) to catch while it runs")


def _wait_running(cluster: Cluster, job_id: str, stage: str) -> JobRecord:
    def running() -> JobRecord | None:
        record = cluster.store.get(job_id)
        assert record is not None
        state = record.stage(stage)
        assert str(record.state.status) not in ("failed", "cancelled"), record.state
        if state.status is StageStatus.RUNNING and processes_matching(f"{job_id}/.{stage}.partial"):
            return record
        return None

    return wait_for(running, 60, f"{stage} of {job_id} never ran ffmpeg")


def _manifest(root: Path, card_id: str) -> dict[str, Any]:
    """The manifest without times. x264's multi-threaded rate control is not bit-exact from
    one run to the next (two ``recast process`` runs differ too), so encoded assets are
    compared by everything but their bytes: path, type, role, dimensions, duration, and a
    size within 5 %."""
    data = json.loads((root / card_id / "manifest.json").read_text())
    data.pop("updated", None)
    assets = {}
    for asset in data.pop("assets"):
        asset.pop("sha256", None)
        if asset.get("duration") is not None:
            asset["duration"] = round(asset["duration"], 1)
        assets[asset.pop("path")] = asset
    data["assets"] = assets
    return dict(data)


def _same_outputs(ours: dict[str, Any], theirs: dict[str, Any]) -> None:
    assert set(ours["assets"]) == set(theirs["assets"])
    for path, asset in ours["assets"].items():
        mine, other = dict(asset), dict(theirs["assets"][path])
        size, other_size = mine.pop("size"), other.pop("size")
        assert abs(size - other_size) <= max(0.05 * other_size, 100), (path, size, other_size)
        assert mine == other, path
    rest = {k: v for k, v in ours.items() if k != "assets"}
    assert rest == {k: v for k, v in theirs.items() if k != "assets"}


# -- the tests ---------------------------------------------------------------------------------


def test_api_job_gives_the_same_outputs_as_recast_process(cluster: Cluster) -> None:
    url = cluster.serve("same-as-local.mp4", duration=2.0, title="Quick Take")
    [job_id] = cluster.submit(url, event="msc-2026")
    record = wait_final(cluster.store, job_id, 120)
    assert str(record.state.status) == "succeeded", record.state
    _assert_each_stage_once(record)
    # Stages after ingest were sent with time limits scaled to this duration.
    assert record.media_duration == pytest.approx(2.0, abs=0.25)

    view = cluster.client.get(f"/v1/jobs/{job_id}", headers=AUTH).json()
    assert view["status"] == "succeeded" and view["progress"] == 100.0
    assert view["card_url"] == f"/v1/cards/{record.state.card_id}"
    card = cluster.client.get(view["card_url"], headers=AUTH).json()
    listed = cluster.client.get(
        "/v1/jobs", params={"state": "succeeded", "event": "msc-2026"}, headers=AUTH
    ).json()
    assert [j["id"] for j in listed["jobs"]] == [job_id]
    event = cluster.client.get("/v1/events/msc-2026/cards", headers=AUTH)
    assert event.status_code == 200 and record.state.card_id in event.text

    local_out, local_work = cluster.tmp / "local-out", cluster.tmp / "local-work"
    completed = subprocess.run(
        [
            str(Path(sys.executable).parent / "recast"),
            "--config",
            str(cluster.config),
            "process",
            url,
            "--event",
            "msc-2026",
            "--out",
            str(local_out),
            "--work",
            str(local_work),
            "--json",
        ],
        cwd=ROOT,
        capture_output=True,
        timeout=120,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr.decode()[-3000:]
    local = json.loads(completed.stdout)["jobs"][0]
    assert local["card_id"] == record.state.card_id
    local_card = json.loads((local_out / local["card_id"] / "card.json").read_text())
    assert local_card["status"] == card["status"]
    out = Path(cluster.settings.storage.output)
    _same_outputs(_manifest(out, local["card_id"]), _manifest(local_out, local["card_id"]))

    health = cluster.client.get("/healthz")
    assert health.status_code == 200, health.text
    hosts = sorted(w.hostname for w in cluster.workers)
    assert {q: sorted(h) for q, h in health.json()["queues"].items()} == {
        q: hosts for q in ALL_QUEUES.split(",")
    }

    oembed = cluster.client.get(
        "/oembed", params={"url": f"https://cms.example/{record.state.card_id}/watch.html"}
    )
    assert oembed.status_code == 200 and oembed.json()["type"] == "video"


def test_fifty_short_jobs_at_once_run_each_stage_exactly_once(cluster: Cluster) -> None:
    clip = cluster.tmp / "clips" / "short.mp4"
    make_clip(clip, duration=1.0, size="160x90")
    data = clip.read_bytes()
    urls = [cluster.server.add(f"batch/talk-{i:02}.mp4", data, "video/mp4") for i in range(50)]
    before = cluster.store.stats()
    job_ids = cluster.submit(*urls)
    assert len(set(job_ids)) == 50
    records = [wait_final(cluster.store, job_id, 240) for job_id in job_ids]
    assert [str(r.state.status) for r in records] == ["succeeded"] * 50
    for record in records:
        _assert_each_stage_once(record)
        assert all(record.stage_runtime(n).lost == 0 for n in DAG.names)
    after = cluster.store.stats()
    for name in DAG.names:
        key = counters.stage_completed(name)
        assert after.get(key, 0) - before.get(key, 0) == 50, key
    assert after[JobCounter.SUCCEEDED] - before.get(JobCounter.SUCCEEDED, 0) == 50
    busy = {record.stage_runtime(name).worker for record in records for name in DAG.names}
    assert busy == {w.hostname for w in cluster.workers}  # both workers took a share
    # Submitting the same sources again gives the same jobs, not new ones.
    response = cluster.client.post("/v1/jobs", json={"urls": urls[:3]}, headers=AUTH)
    assert [(j["id"], j["new"]) for j in response.json()["jobs"]] == [
        (job_id, False) for job_id in job_ids[:3]
    ]


def test_retry_after_a_failed_transcript_reruns_only_what_did_not_finish(
    cluster: Cluster,
) -> None:
    """The failure policy (pipeline.engine.jobflow): the job fails at once, stages still
    pending are cancelled (dependents of the transcript or not), running ones finish; a retry
    runs the rest, so every stage completes once in all."""
    target = "transcript" if "transcript" in DAG.names else DAG.topological_order()[-1]
    url = cluster.serve("transcript-fails.mp4")
    job_id = JobSpec(source=url).job_id
    workspace = Path(cluster.settings.storage.workspace).resolve() / job_id
    workspace.mkdir(parents=True)
    blocker = workspace / f".{target}.partial"
    blocker.write_text("a file where the stage's partial directory goes: the stage fails")
    assert cluster.submit(url) == [job_id]

    def settled() -> JobRecord | None:
        record = cluster.store.get(job_id)
        assert record is not None
        running = any(s.status is StageStatus.RUNNING for s in record.state.stages.values())
        return record if str(record.state.status) == "failed" and not running else None

    failed = wait_for(settled, 90, "the job did not fail")
    assert failed.state.error is not None and failed.state.error.code == "internal.error"
    assert failed.stage(target).status is StageStatus.FAILED
    for name in DAG.dependents(target):
        assert failed.stage(name).status is StageStatus.CANCELLED, name
    kept = {n for n in DAG.names if failed.stage(n).status in FINISHED_STAGE_STATUSES}
    for name in set(DAG.names) - kept - {target}:
        assert failed.stage(name).status is StageStatus.CANCELLED, name
    before = _ran(failed)

    blocker.unlink()
    response = cluster.client.post(f"/v1/jobs/{job_id}/retry", headers=AUTH)
    assert response.status_code == 202, response.text
    record = wait_final(cluster.store, job_id, 90)
    assert str(record.state.status) == "succeeded", record.state
    after = _ran(record)
    for name in DAG.names:
        assert after[name] == 1, name  # every stage completed once in all
        assert before[name] == (1 if name in kept else 0), name  # kept, or run by the retry
    again = cluster.client.post(f"/v1/jobs/{job_id}/retry", headers=AUTH)
    assert again.status_code == 409 and again.json()["error"]["code"] == "request.conflict"


def test_transient_errors_retry_with_backoff_permanent_ones_do_not(cluster: Cluster) -> None:
    clip = cluster.tmp / "clips" / "flaky.mp4"
    make_clip(clip, duration=1.0, size="160x90")
    data = clip.read_bytes()
    served = {"count": 0}

    def flaky(_handler: Any) -> Response:
        served["count"] += 1
        if served["count"] == 2:  # the first request is the submission's (playlist or not?)
            return Response(503, b"busy", {"Retry-After": "0"})
        return Response(200, data, {"Content-Type": "video/mp4"})

    def vanishing(_handler: Any) -> Response:
        served["gone"] = served.get("gone", 0) + 1
        if served["gone"] == 1:
            return Response(200, data, {"Content-Type": "video/mp4"})
        return Response(404, b"gone", {"Content-Type": "text/plain"})

    flaky_url = cluster.server.route("flaky.mp4", flaky)
    missing_url = cluster.server.route("vanishing.mp4", vanishing)
    flaky_id, missing_id = cluster.submit(flaky_url, missing_url)
    record = wait_final(cluster.store, flaky_id, 60)
    assert str(record.state.status) == "succeeded", record.state
    assert record.stage("ingest").attempts == 2  # 503: network.server_error, retried
    assert record.stage_runtime("ingest").completions == 1
    missing = wait_final(cluster.store, missing_id, 60)
    assert str(missing.state.status) == "failed"
    assert missing.state.error is not None and missing.state.error.code == "source.unavailable"
    assert missing.stage("ingest").attempts == 1  # permanent: no retry


def test_cancel_stops_a_running_transcode_and_leaves_no_ffmpeg(cluster: Cluster) -> None:
    stage = _slow_stage()
    url = cluster.serve("long-cancelled.mp4", duration=30.0)
    job_id = JobSpec(source=url).job_id
    cluster.slow(job_id, stage)
    try:
        assert cluster.submit(url) == [job_id]
        _wait_running(cluster, job_id, stage)
        response = cluster.client.post(f"/v1/jobs/{job_id}/cancel", headers=AUTH)
        assert response.status_code == 202 and response.json()["status"] == "cancelled"
        wait_for(lambda: not processes_matching(job_id), 10, "ffmpeg still runs after cancel")

        def stopped() -> JobRecord | None:
            record = cluster.store.get(job_id)
            assert record is not None
            return record if record.stage(stage).status is StageStatus.CANCELLED else None

        record = wait_for(stopped, 10, f"{stage} did not stop")
        assert str(record.state.status) == "cancelled"
        assert record.stage_runtime(stage).completions == 0
        assert not (Path(cluster.settings.storage.workspace) / job_id / stage).exists()
        again = cluster.client.post(f"/v1/jobs/{job_id}/cancel", headers=AUTH)
        assert again.status_code == 409
    finally:
        cluster.unslow()


def test_poison_input_ends_as_worker_lost_while_other_jobs_flow(cluster: Cluster) -> None:
    poison = cluster.serve("poison.mp4", title="RECAST-POISON")
    normal = [cluster.serve(f"healthy-{i}.mp4") for i in range(3)]
    [poison_id, *normal_ids] = cluster.submit(poison, *normal)
    record = wait_final(cluster.store, poison_id, 90)
    assert str(record.state.status) == "failed"
    assert record.state.error is not None and record.state.error.code == "worker.lost"
    lost = [n for n in DAG.names if record.stage_runtime(n).lost]
    assert lost == ["ingest"]
    assert record.stage_runtime("ingest").lost == 2  # max_worker_lost_attempts
    assert record.stage("ingest").attempts == 2
    for job_id in normal_ids:
        done = wait_final(cluster.store, job_id, 90)
        assert str(done.state.status) == "succeeded", done.state
        _assert_each_stage_once(done)
    # The poison job can be retried on purpose (after a fix); it is not retried by itself.
    assert cluster.store.get(poison_id).state.status == record.state.status  # type: ignore[union-attr]


def test_sigkill_mid_transcode_another_worker_finishes_once(cluster: Cluster) -> None:
    stage = _slow_stage()
    url = cluster.serve("killed-mid-transcode.mp4", duration=8.0)
    job_id = JobSpec(source=url).job_id
    cluster.slow(job_id, stage)
    assert cluster.submit(url) == [job_id]
    running = _wait_running(cluster, job_id, stage)
    victim = cluster.worker(running.stage_runtime(stage).worker)
    survivor = next(w for w in cluster.workers if w is not victim)
    victim.kill()
    cluster.unslow()
    wait_for(lambda: not processes_matching(job_id), 10, "ffmpeg outlived its killed worker")

    config = cluster.settings.cluster
    window = config.reaper_stale_s + 2 * config.reaper_interval_s + 10

    def taken_over() -> JobRecord | None:
        record = cluster.store.get(job_id)
        assert record is not None
        return record if record.stage_runtime(stage).worker == survivor.hostname else None

    wait_for(taken_over, window, f"{stage} was not given to {survivor.hostname}")
    record = wait_final(cluster.store, job_id, 120)
    assert str(record.state.status) == "succeeded", record.state
    assert record.stage_runtime(stage).completions == 1
    assert record.stage_runtime(stage).lost == 1
    assert record.stage(stage).attempts == 2
    _assert_each_stage_once(record)
    outputs = Path(cluster.settings.storage.workspace).resolve() / job_id / stage
    media = [
        p
        for p in outputs.rglob("*")
        if p.suffix in (".m3u8", ".mp4", ".m4a") and p.name != "init.mp4"
    ]
    assert media, f"no outputs in {outputs}"
    for path in media:
        decoded = subprocess.run(
            ["ffmpeg", "-v", "error", "-i", str(path), "-f", "null", "-"],
            capture_output=True,
            check=False,
        )
        assert decoded.returncode == 0 and not decoded.stderr, (path, decoded.stderr)
    victim.start(cluster.store)  # back to two workers for the tests after this one


def test_cold_shutdown_gives_the_running_stage_back_uncounted(cluster: Cluster) -> None:
    stage = _slow_stage()
    url = cluster.serve("cold-shutdown.mp4", duration=8.0)
    job_id = JobSpec(source=url).job_id
    cluster.slow(job_id, stage)
    assert cluster.submit(url) == [job_id]
    running = _wait_running(cluster, job_id, stage)
    stopping = cluster.worker(running.stage_runtime(stage).worker)
    assert stopping.process is not None
    stopping.process.send_signal(signal.SIGQUIT)  # Celery's cold shutdown
    stopping.process.wait(timeout=30)
    stopping.process = None
    cluster.unslow()
    record = wait_final(cluster.store, job_id, 60)
    assert str(record.state.status) == "succeeded", record.state
    assert record.stage_runtime(stage).lost == 0  # a shutdown is not a crash
    assert record.stage(stage).attempts == 2
    _assert_each_stage_once(record)
    stopping.start(cluster.store)


def test_redis_restart_loses_no_job_and_runs_none_twice(cluster: Cluster) -> None:
    urls = [cluster.serve(f"through-restart-{i}.mp4", duration=2.0) for i in range(6)]
    job_ids = [JobSpec(source=url).job_id for url in urls]
    for job_id in job_ids:
        cluster.slow(job_id, _slow_stage())  # running stages when Redis goes away
    assert cluster.submit(*urls) == job_ids

    def running_and_queued() -> bool:
        records = [r for r in (cluster.store.get(j) for j in job_ids) if r is not None]
        states = [s for r in records for s in r.state.stages.values()]
        running = any(s.status is StageStatus.RUNNING for s in states)
        waiting = any(
            r.stage_runtime(n).queued_at and r.stage(n).status is StageStatus.PENDING
            for r in records
            for n in DAG.names
        )
        return running and waiting and any(processes_matching(j) for j in job_ids)

    wait_for(running_and_queued, 60, "no moment with stages both running and queued")
    cluster.redis.stop()
    cluster.unslow()
    time.sleep(2)  # Redis stays down for a few heartbeats while workers and ffmpeg go on
    cluster.redis.start()
    records = [wait_final(cluster.store, job_id, 180) for job_id in job_ids]
    assert [str(r.state.status) for r in records] == ["succeeded"] * len(job_ids)
    for record in records:
        _assert_each_stage_once(record)
    for worker in cluster.workers:
        assert worker.process is not None and worker.process.poll() is None, worker.log()


def test_cli_submit_wait_and_job(cluster: Cluster) -> None:
    url = cluster.serve("from-the-cli.mp4")
    recast = str(Path(sys.executable).parent / "recast")
    env = {**os.environ, "RECAST_CONFIG": str(cluster.config)}
    submitted = subprocess.run(
        [recast, "submit", url, "--event", "cli-test", "--priority", "7", "--wait", "--json"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        timeout=120,
        check=False,
    )
    assert submitted.returncode == 0, submitted.stderr.decode()[-2000:]
    [job] = json.loads(submitted.stdout)["jobs"]
    assert job["status"] == "succeeded" and job["event"] == "cli-test"
    shown = subprocess.run(
        [recast, "job", job["id"], "--follow", "--json"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        timeout=60,
        check=True,
    )
    assert json.loads(shown.stdout)["progress"] == {n: 100.0 for n in DAG.names}
    listed = subprocess.run(
        [recast, "jobs", "--state", "succeeded", "--event", "cli-test", "--json"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        timeout=60,
        check=True,
    )
    assert [j["id"] for j in json.loads(listed.stdout)["jobs"]] == [job["id"]]
    assert shutil.which(recast)
