"""Ops end to end: a private redis-server, two real ``recast worker`` processes (one for the
transcode queue, one for the rest) and a real ``recast api``, started once for the module.

After a mix of succeeded, failed and cancelled jobs, /metrics (parsed by prometheus_client's
text parser) and ``recast status --json`` match the jobs the test counted; the jobs board in
headless Chromium lists them, shows a running job's progress advancing without a reload, a
failure's code and log tail, refuses actions without the token and retries with it; every log
line of a job's run is JSON carrying its job id; the Grafana dashboard queries only exported
metrics; stopping the only transcode worker makes /healthz report the queue unserved. Every
wait is a poll with a deadline; nothing asserts a duration.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import BrowserContext, Page
from prometheus_client.parser import text_string_to_metric_families

from pipeline.core.job import FINISHED_STAGE_STATUSES, JobSpec, JobStatus, StageStatus
from pipeline.core.settings import Settings
from pipeline.engine.distributed.jobstore import JobRecord, JobStore
from pipeline.stages import default_dag
from tests.conftest import make_settings
from tests.support.browser import ARTIFACTS, chromium
from tests.support.httpserver import MediaServer, Response
from tests.support.media import make_clip
from tests.support.workers import (
    RECAST,
    ROOT,
    RedisServer,
    Worker,
    cluster_test_settings,
    free_port,
    processes_matching,
    shim_env,
    tiny_sections,
    wait_final,
    wait_for,
    workers,
    write_config,
)
from workers.producer import Producer

pytestmark = pytest.mark.slow

TOKEN = "ops-tests-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
DAG = default_dag()
OPS_TEST_SETTINGS = {
    "sample_interval_s": 0.5,
    "worker_report_s": 0.5,
    "blocked_burst": 2,
    "blocked_window_s": 3600,
    "max_wait_s": 3600,
    "min_free_disk_gb": 0.0,
    "min_free_disk_ratio": 0.0,
    "board_refresh_s": 0.5,
    "job_log_lines": 200,
}


class Api:
    """``recast api`` in a subprocess, its stderr (JSON lines) in a file."""

    def __init__(self, config: Path, log_path: Path):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        with log_path.open("wb") as log:
            self.process = subprocess.Popen(
                [RECAST, "--config", str(config), "api", "--port", str(self.port)],
                cwd=ROOT,
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**os.environ, "RECAST_CONFIG": str(config)},
            )
        self.client = httpx.Client(base_url=self.url, timeout=30)

        def up() -> bool:
            assert self.process.poll() is None, self.log_path.read_text()
            with contextlib.suppress(httpx.HTTPError):
                return self.client.get("/readyz").status_code == 200
            return False

        wait_for(up, 30, "recast api did not come up")

    def stop(self) -> None:
        self.client.close()
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


@dataclass
class Cluster:
    tmp: Path
    settings: Settings
    config: Path
    store: JobStore
    server: MediaServer
    api: Api
    general: Worker
    transcoder: Worker
    slow_file: Path
    gates: dict[str, int] = field(default_factory=dict)
    """Path -> HTTP status the media server answers instead of the file (200: the file)."""
    clips: dict[str, bytes] = field(default_factory=dict)
    jobs: dict[str, str] = field(default_factory=dict)
    """Name in the test -> job id."""

    def serve(self, name: str, duration: float = 2.0) -> str:
        path = self.tmp / "clips" / name
        make_clip(path, duration=duration, size="160x90", title=name)
        self.clips[name] = path.read_bytes()
        self.gates[name] = 200

        def answer(_handler: Any, name: str = name) -> Response:
            status = self.gates[name]
            if status != 200:
                return Response(status, b"refused", {"Content-Type": "text/plain"})
            return Response(200, self.clips[name], {"Content-Type": "video/mp4"})

        return self.server.route(f"media/{name}", answer)

    def submit(self, url: str, event: str | None = None) -> str:
        body: dict[str, Any] = {"url": url}
        if event:
            body["event"] = event
        response = self.api.client.post("/v1/jobs", json=body, headers=AUTH)
        assert response.status_code == 202, response.text
        [job] = response.json()["jobs"]
        return str(job["id"])

    def slow(self, job_id: str) -> None:
        with self.slow_file.open("a") as handle:
            handle.write(job_id + "\n")

    def unslow(self) -> None:
        self.slow_file.write_text("")

    def record(self, name: str) -> JobRecord:
        record = self.store.get(self.jobs[name])
        assert record is not None
        return record


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    tmp = tmp_path_factory.mktemp("ops")
    slow_file = tmp / "slow.txt"
    slow_file.write_text("")
    with RedisServer(tmp / "redis") as redis_server, MediaServer(tmp / "www") as server:
        settings = make_settings(
            tmp,
            cluster=cluster_test_settings(redis_server.url),
            executor={"max_attempts": 2, "retry_base_delay_s": 0.2},
            api={"tokens": [TOKEN]},
            ops=OPS_TEST_SETTINGS,
            # Refused sources fail at once here, feeding the source.blocked burst alert; with
            # the host backoff on they wait instead (tests/test_host_backoff.py).
            sources={"backoff": {"enabled": False}},
            **tiny_sections(),
        )
        config = write_config(tmp / "recast.toml", settings)
        store = JobStore(settings.cluster)
        env = shim_env(slow_file)
        general = Worker(
            config, "ingest,media,asr,publish", "general", tmp / "logs", concurrency=2, env=env
        )
        transcoder = Worker(config, "transcode", "transcoder", tmp / "logs", concurrency=2, env=env)
        with workers(general, transcoder, store=store):
            api = Api(config, tmp / "logs" / "api.log")
            try:
                yield Cluster(
                    tmp, settings, config, store, server, api, general, transcoder, slow_file
                )
            finally:
                api.stop()


def _metrics(cluster: Cluster) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    """Every sample of /metrics: name -> {sorted labels: value}."""
    response = cluster.api.client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    samples: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return samples


def _value(samples: dict[str, Any], name: str, **labels: str) -> float:
    return float(samples.get(name, {}).get(tuple(sorted(labels.items())), 0.0))


def _status_json(cluster: Cluster) -> dict[str, Any]:
    completed = subprocess.run(
        [RECAST, "--config", str(cluster.config), "status", "--json"],
        cwd=ROOT,
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr.decode()[-2000:]
    data: dict[str, Any] = json.loads(completed.stdout)
    return data


def _wait_running_tool(cluster: Cluster, job_id: str) -> JobRecord:
    """Until one of the job's stages runs ffmpeg (slowed by the shim)."""

    def running() -> JobRecord | None:
        record = cluster.store.get(job_id)
        assert record is not None
        assert record.state.status not in (JobStatus.FAILED, JobStatus.CANCELLED), record.state
        busy = [s for s in record.state.stages.values() if s.status is StageStatus.RUNNING]
        return record if busy and processes_matching(job_id) else None

    return wait_for(running, 60, f"no stage of {job_id} ran ffmpeg")


# -- the mix of jobs, /metrics and recast status ----------------------------------------------


def test_metrics_and_status_match_a_mix_of_jobs(cluster: Cluster) -> None:
    baseline = _metrics(cluster)  # also takes the first sample of the ops history
    assert _value(baseline, "recast_up") == 1.0
    assert _value(baseline, "recast_jobs_submitted_total") == 0

    for name in ("good-1", "good-2"):
        cluster.jobs[name] = cluster.submit(cluster.serve(f"{name}.mp4"), "msc-2026")
    # Sources that refuse (403) or are gone (404) fail at submission through the API (the
    # playlist check reads them); these jobs are created past that check, by the coordinator.
    producer = Producer(cluster.settings, store=cluster.store)
    for name, status in (("blocked-1", 403), ("blocked-2", 403), ("gone", 404)):
        url = cluster.serve(f"{name}.mp4")
        cluster.gates[f"{name}.mp4"] = status
        record, _ = producer.coordinator.submit(JobSpec(source=url, event="ops-trouble"))
        cluster.jobs[name] = record.id
    slow_url = cluster.serve("slow.mp4", duration=6.0)
    cluster.slow(JobSpec(source=slow_url, event="ops-trouble").job_id)
    cluster.jobs["slow"] = cluster.submit(slow_url, "ops-trouble")

    _wait_running_tool(cluster, cluster.jobs["slow"])
    cancelled = cluster.api.client.post(f"/v1/jobs/{cluster.jobs['slow']}/cancel", headers=AUTH)
    assert cancelled.status_code == 202, cancelled.text
    records = {
        name: wait_final(cluster.store, job_id, 120) for name, job_id in cluster.jobs.items()
    }
    cluster.unslow()
    states = {name: str(r.state.status) for name, r in records.items()}
    assert states == {
        "good-1": "succeeded",
        "good-2": "succeeded",
        "blocked-1": "failed",
        "blocked-2": "failed",
        "gone": "failed",
        "slow": "cancelled",
    }
    codes = {n: r.state.error.code for n, r in records.items() if r.state.error is not None}
    assert codes == {
        "blocked-1": "source.blocked",
        "blocked-2": "source.blocked",
        "gone": "source.unavailable",
        "slow": "job.cancelled",
    }

    def settled() -> dict[str, Any] | None:
        """Once no stage runs and every finished stage run has been measured."""
        samples = _metrics(cluster)
        running = sum(_value(samples, "recast_queue_running", queue=q) for q in _queues())
        measured = sum(samples.get("recast_stage_duration_seconds_count", {}).values())
        completed = sum(samples.get("recast_stage_completions_total", {}).values())
        return samples if running == 0 and measured == completed else None

    samples = wait_for(settled, 30, "stages still running after every job ended")
    # Jobs by state, as counted here.
    expected = {"queued": 0, "running": 0, "succeeded": 2, "failed": 3, "cancelled": 1}
    for state, count in expected.items():
        assert _value(samples, "recast_jobs", state=state) == count, state
    assert _value(samples, "recast_jobs_submitted_total") == 6
    assert _value(samples, "recast_jobs_finished_total", state="succeeded") == 2
    assert _value(samples, "recast_jobs_finished_total", state="failed") == 3
    assert _value(samples, "recast_jobs_finished_total", state="cancelled") == 1
    # Failures by code.
    assert _value(samples, "recast_failures_total", code="source.blocked") == 2
    assert _value(samples, "recast_failures_total", code="source.unavailable") == 1
    assert sum(samples.get("recast_failures_total", {}).values()) == 3
    # Stage durations: one observation per stage run that did its work, by stage.
    for stage in DAG.names:
        ran = sum(1 for r in records.values() if r.stage(stage).status in FINISHED_STAGE_STATUSES)
        assert _value(samples, "recast_stage_duration_seconds_count", stage=stage) == ran, stage
        assert _value(samples, "recast_stage_completions_total", stage=stage) == ran, stage
        assert (
            _value(samples, "recast_stage_duration_seconds_bucket", stage=stage, le="+Inf") == ran
        )
    # Transcode speed: media seconds through the transcode queue's stages.
    transcoded = [r for r in records.values() if r.stage("transcode").status is StageStatus.DONE]
    assert len(transcoded) == 2
    assert _value(samples, "recast_transcode_speed_ratio_count", stage="transcode") == 2
    media = _value(samples, "recast_transcode_media_seconds_total", stage="transcode")
    assert media == pytest.approx(sum(r.media_duration or 0 for r in transcoded))
    assert 3.5 < media < 4.5  # two clips of two seconds
    assert _value(samples, "recast_transcode_wall_seconds_total", stage="transcode") > 0
    # Bytes downloaded: the media files of every job whose ingest finished.
    fetched = [n for n, r in records.items() if r.stage("ingest").status is StageStatus.DONE]
    assert sorted(fetched) == ["good-1", "good-2", "slow"]
    assert _value(samples, "recast_downloaded_bytes_total") == sum(
        len(cluster.clips[f"{n}.mp4"]) for n in fetched
    )
    # Queues: nothing waits, each queue has its one live worker.
    for queue in _queues():
        assert _value(samples, "recast_queue_depth", queue=queue) == 0
        assert _value(samples, "recast_queue_oldest_wait_seconds", queue=queue) == 0
        assert _value(samples, "recast_queue_workers", queue=queue) == 1
    assert _value(samples, "recast_workers") == 2
    # Two source.blocked failures within the window: the burst alert fires (threshold 2).
    assert _value(samples, "recast_alerts", alert="source.blocked") == 1
    assert _value(samples, "recast_alerts", alert="queue.unserved") == 0

    status = _status_json(cluster)
    assert status["redis"] is True
    assert status["jobs"] == expected
    assert status["failures_by_code"] == {"source.blocked": 2, "source.unavailable": 1}
    for queue in _queues():
        view = status["queues"][queue]
        assert len(view["workers"]) == _value(samples, "recast_queue_workers", queue=queue)
        assert view["depth"] == _value(samples, "recast_queue_depth", queue=queue)
    assert {w["hostname"] for w in status["workers"]} == {
        cluster.general.hostname,
        cluster.transcoder.hostname,
    }
    assert {w["hostname"]: w["concurrency"] for w in status["workers"]} == {
        cluster.general.hostname: 2,
        cluster.transcoder.hostname: 2,
    }
    throughput = status["throughput"]
    assert (throughput["succeeded"], throughput["failed"], throughput["cancelled"]) == (2, 3, 1)
    assert sum(b["failed"] for b in throughput["buckets"]) == 3
    failures = {f["job_id"]: f for f in status["failures"]}
    assert set(failures) == {cluster.jobs[n] for n in ("blocked-1", "blocked-2", "gone")}
    assert failures[cluster.jobs["gone"]]["code"] == "source.unavailable"
    assert failures[cluster.jobs["gone"]]["stage"] == "ingest"
    assert [a["kind"] for a in status["alerts"]] == ["source.blocked"]

    health = cluster.api.client.get("/healthz")
    assert health.status_code == 200
    assert [a["kind"] for a in health.json()["alerts"]] == ["source.blocked"]

    terminal = subprocess.run(
        [RECAST, "--config", str(cluster.config), "status", "--once"],
        cwd=ROOT,
        env={**os.environ, "COLUMNS": "200"},
        capture_output=True,
        timeout=60,
        check=False,
    )
    text = terminal.stdout.decode()
    assert terminal.returncode == 0, terminal.stderr.decode()
    for expected_text in ("queues", "transcode", "last failures", "source.unavailable"):
        assert expected_text in text, expected_text
    assert "last hour: 2 succeeded, 3 failed, 1 cancelled" in text


def _queues() -> list[str]:
    return sorted({stage.queue.value for stage in DAG})


def test_grafana_dashboard_queries_only_exported_metrics(cluster: Cluster) -> None:
    dashboard = json.loads((ROOT / "config" / "grafana-dashboard.json").read_text())
    exprs = [
        target["expr"]
        for panel in dashboard["panels"]
        for target in panel.get("targets", [])
        if "expr" in target
    ]
    assert len(exprs) >= 10
    queried = {name for expr in exprs for name in re.findall(r"\brecast_[a-z_]+", expr)}
    exported = set(_metrics(cluster))
    assert queried, "the dashboard queries Recast's metrics"
    assert queried <= exported, queried - exported


# -- the jobs board --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrowserContext]:
    with chromium(tmp_path_factory.mktemp("chromium-profile"), 1400, 1000) as context:
        yield context


def _row(page: Page, job_id: str) -> Any:
    return page.locator(f'tr.job[data-job="{job_id}"]')


def _running_progress(page: Page, job_id: str) -> tuple[str, float] | None:
    found: list[Any] = page.evaluate(
        """(id) => Array.from(
            document.querySelectorAll(`tr.job[data-job="${id}"] progress[data-status="running"]`),
            (p) => [p.dataset.stage, p.value])""",
        job_id,
    )
    return (str(found[0][0]), float(found[0][1])) if found else None


def test_jobs_board_in_chromium(cluster: Cluster, browser: BrowserContext) -> None:
    page = browser.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("requestfailed", lambda r: errors.append(f"failed: {r.url}"))
    external: list[str] = []
    page.on(
        "request",
        lambda r: external.append(r.url) if not r.url.startswith(cluster.api.url) else None,
    )
    page.goto(f"{cluster.api.url}/board")  # 401: the login form (ops.public_board is off)
    page.fill("#token", TOKEN)
    page.click("#login")
    page.wait_for_selector("tr.job")
    loaded_at = page.evaluate("window.recastBoardLoadedAt")

    # It lists the jobs.
    for job_id in cluster.jobs.values():
        assert _row(page, job_id).count() == 1, job_id
    assert _row(page, cluster.jobs["good-1"]).get_attribute("data-status") == "succeeded"

    # A failed job shows its code, message and the tail of its stage's log (yt-dlp's).
    gone = cluster.jobs["gone"]
    assert "source.unavailable" in _row(page, gone).locator(".status").inner_text()
    details = page.locator(f'details[data-job="{gone}"]')
    details.locator("summary").click()
    assert details.locator(".error-code").inner_text() == "source.unavailable"
    assert details.locator(".failed-stage").inner_text() == "ingest"
    tail = details.locator("pre.log-tail").inner_text()
    assert "404" in tail and "ytdlp" in tail, tail
    page.wait_for_timeout(1200)  # a few polls: the opened failure stays open
    assert page.locator(f'details[data-job="{gone}"]').evaluate("d => d.open")
    blocked_tail = page.evaluate(
        "(id) => document.querySelector(`details[data-job='${id}'] pre`).textContent",
        cluster.jobs["blocked-1"],
    )
    assert "403" in blocked_tail

    # Filters by state and by event.
    page.select_option("select[name=state]", "failed")
    page.wait_for_function(
        "() => [...document.querySelectorAll('tr.job')].every(r => r.dataset.status === 'failed')"
    )
    assert page.locator("tr.job").count() == 3
    page.select_option("select[name=state]", "")
    page.select_option("select[name=event]", "msc-2026")
    page.wait_for_function("() => document.querySelectorAll('tr.job').length === 2")
    shown = {r.get_attribute("data-job") for r in page.locator("tr.job").all()}
    assert shown == {cluster.jobs["good-1"], cluster.jobs["good-2"]}
    page.select_option("select[name=event]", "")

    # A running job's progress advances without a reload.
    url = cluster.serve("board-slow.mp4", duration=6.0)
    slow_id = cluster.submit(url, "board-demo")
    cluster.slow(slow_id)
    try:
        page.wait_for_function(
            """(id) => { const p = document.querySelector(
                   `tr.job[data-job="${id}"] progress[data-status="running"]`);
                 return p && p.value > 0 && p.value < 90; }""",
            arg=slow_id,
            timeout=60_000,
        )
        first = _running_progress(page, slow_id)
        assert first is not None
        stage, value = first
        page.wait_for_function(
            """([id, stage, value]) => { const p = document.querySelector(
                   `tr.job[data-job="${id}"] progress[data-stage="${stage}"]`);
                 return p && p.value > value; }""",
            arg=[slow_id, stage, value],
            timeout=60_000,
        )
        assert page.evaluate("window.recastBoardLoadedAt") == loaded_at, "the page reloaded"

        # Logged out (the session cookie gone), the page's actions are refused and it says so.
        browser.clear_cookies()
        _row(page, gone).locator("button[data-action=retry]").click()
        page.wait_for_function(
            "() => document.getElementById('notice').textContent.startsWith('Refused: retry')"
        )
        assert "token" in page.locator("#notice").inner_text()
        _row(page, slow_id).locator("button[data-action=cancel]").click()
        page.wait_for_function(
            "() => document.getElementById('notice').textContent.startsWith('Refused: cancel')"
        )
        assert str(cluster.record("gone").state.status) == "failed"
        assert cluster.store.get(slow_id).state.status is JobStatus.RUNNING  # type: ignore[union-attr]

        # Logged in again from the page: cancel the running job, retry the failed one.
        page.fill("#token", TOKEN)
        page.click("#token-save")
        page.wait_for_function("() => document.getElementById('notice').className === 'done'")
        _row(page, slow_id).locator("button[data-action=cancel]").click()
        page.wait_for_function(
            "(id) => document.querySelector(`tr.job[data-job='${id}']`).dataset.status"
            " === 'cancelled'",
            arg=slow_id,
            timeout=30_000,
        )
    finally:
        cluster.unslow()
    cluster.gates["gone.mp4"] = 200  # the source is back
    _row(page, gone).locator("button[data-action=retry]").click()
    page.wait_for_function(
        "(id) => document.querySelector(`tr.job[data-job='${id}']`).dataset.status === 'succeeded'",
        arg=gone,
        timeout=90_000,
    )
    assert str(cluster.record("gone").state.status) == "succeeded"
    assert page.locator("#notice").inner_text().startswith("retry accepted")
    assert page.locator(".chart polyline.throughput").count() == 1
    assert page.locator('.queue[data-queue="transcode"] .workers').inner_text().startswith("1 ")
    assert page.evaluate("window.recastBoardLoadedAt") == loaded_at, "the page reloaded"
    assert not errors, errors
    assert not external, f"the board loaded something from elsewhere: {external}"
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "ops-board.png"), full_page=True)
    page.close()


# -- logs --------------------------------------------------------------------------------------


def test_every_log_line_of_a_job_is_json_with_its_job_id(cluster: Cluster) -> None:
    job_id = cluster.jobs["good-1"]
    log_path = f"/board/jobs/{job_id}/log"
    assert cluster.api.client.get(log_path).status_code == 401  # ops.public_board is off
    response = cluster.api.client.get(log_path, params={"lines": 1000}, headers=AUTH)
    assert response.status_code == 200
    stages: dict[str, list[str]] = response.json()["stages"]
    assert set(stages) == set(DAG.names)
    loggers = set()
    for stage, lines in stages.items():
        assert lines, f"nothing kept for {stage}"
        assert len(lines) <= OPS_TEST_SETTINGS["job_log_lines"]
        for line in lines:
            entry = json.loads(line)
            assert entry["job_id"] == job_id and entry["stage"] == stage, entry
            assert entry["task_id"], entry
            loggers.add(entry["logger"])
    assert {"recast.tool.ffmpeg", "recast.tool.ytdlp", "recast.worker.task"} <= loggers
    assert any("Output #0" in line for line in stages["transcode"]), "ffmpeg's own output kept"

    # The workers' and the API's own output: JSON lines; those about the job carry its id.
    about_job = 0
    for path in (cluster.general.log_path, cluster.transcoder.log_path, cluster.api.log_path):
        for line in path.read_text(errors="replace").splitlines():  # no banner: all JSON
            if not line.strip():
                continue
            assert line.startswith("{"), f"not a JSON line in {path.name}: {line!r}"
            entry = json.loads(line)
            assert {"time", "level", "logger", "message"} <= set(entry), entry
            if job_id in line:
                about_job += 1
                assert entry.get("job_id") == job_id, entry
    assert about_job > 10
    task_lines = [
        json.loads(line)
        for line in cluster.general.log_path.read_text().splitlines()
        if line.startswith("{") and "celery" in line and job_id in line
    ]
    assert any("received" in e["message"] and e.get("task_id") for e in task_lines)


# -- alerts ------------------------------------------------------------------------------------


def test_stopping_the_only_transcode_worker_reports_the_queue_unserved(cluster: Cluster) -> None:
    before = cluster.api.client.get("/healthz")
    assert before.status_code == 200 and before.json()["queues"]["transcode"]
    cluster.transcoder.kill()  # SIGKILL: no goodbye, the presence key simply expires

    def unserved() -> dict[str, Any] | None:
        response = cluster.api.client.get("/healthz")
        body: dict[str, Any] = response.json()
        kinds = {(a["kind"], a.get("queue")) for a in body["alerts"]}
        if response.status_code == 503 and ("queue.unserved", "transcode") in kinds:
            return body
        return None

    body = wait_for(unserved, 60, "/healthz never reported the transcode queue unserved")
    assert body["ok"] is False and body["redis"] is True
    assert body["queues"]["transcode"] == []
    assert all(body["queues"][q] for q in _queues() if q != "transcode")
    unserved_queues = [a["queue"] for a in body["alerts"] if a["kind"] == "queue.unserved"]
    assert unserved_queues == ["transcode"]
    samples = _metrics(cluster)
    assert _value(samples, "recast_queue_workers", queue="transcode") == 0
    assert _value(samples, "recast_alerts", alert="queue.unserved") == 1
    status = _status_json(cluster)
    assert ("queue.unserved", "transcode") in {(a["kind"], a["queue"]) for a in status["alerts"]}
