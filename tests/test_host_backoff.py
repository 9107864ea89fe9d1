"""Blocked sources: a host that refuses us (403, 429, bot checks) is backed off as a whole, its
jobs wait (uncounted) instead of failing one by one, and each site's downloads are limited in
number (pipeline/core/hostgate.py).

Real yt-dlp against the local server (switched to refuse by host name, its request log timed),
the local executor with its in-memory gate, and the distributed executor's production store,
coordinator, stage runner and Redis gate on a private redis-server, its stages run in this
process (the broker is a list: tests.support.workers.InlineDispatcher); outbox delays are
honoured, since only due entries are handed out. Pauses are a second or two; the only timing
asserted is a lower bound on a deliberate wait (Retry-After).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from yt_dlp.utils import ExtractorError

from pipeline.core.dag import Dag
from pipeline.core.errors import ErrorCode
from pipeline.core.hostgate import (
    HostGate,
    InMemoryHostGate,
    Refusal,
    Wait,
    WaitReason,
    host_key,
)
from pipeline.core.job import JobSpec, JobState, JobStatus, StageStatus
from pipeline.core.settings import HostBackoffSettings, Settings, SourcesSettings
from pipeline.engine.distributed.coordinator import Coordinator
from pipeline.engine.distributed.hostgate import RedisHostGate
from pipeline.engine.distributed.jobstore import JobRecord, JobStore
from pipeline.engine.distributed.stagerun import StageRunner, StageRunOutcome
from pipeline.engine.local import LocalExecutor
from pipeline.ops.opsview import AlertKind, OpsView
from pipeline.ops.prometheus import render
from pipeline.stages.ingest import STAGE as INGEST
from pipeline.tools.ytdlp import classify
from tests.conftest import make_settings
from tests.support.httpserver import LoggedRequest, MediaServer, Response
from tests.support.media import make_clip
from tests.support.workers import (
    InlineDispatcher,
    RedisServer,
    cluster_test_settings,
    wait_for,
)

INGEST_ONLY = Dag.of([INGEST])
BLOCKED = "127.0.0.1"
OTHER = "localhost"  # the same server under another host name: another gate
PAUSE_S = 0.6
FAST = {"window_s": 60.0, "pause_base_s": PAUSE_S, "probe_interval_s": 0.1, "max_wait_s": 60.0}


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("backoff") / "talk.mp4"
    return make_clip(path, duration=1.0, size="160x90")


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    with RedisServer(tmp_path_factory.mktemp("redis")) as server:
        yield server


def backoff_settings(tmp_path: Path, redis_url: str = "", **sections: Any) -> Settings:
    backoff = {**FAST, **sections.pop("backoff", {})}
    sources = {"backoff": backoff, **sections.pop("sources", {})}
    if redis_url:
        sections["cluster"] = cluster_test_settings(redis_url, key_prefix=tmp_path.name)
    return make_settings(tmp_path, sources=sources, **sections)


class Details:
    """A job observer: every (status, detail) the ingest stage showed, per job."""

    def __init__(self) -> None:
        self.seen: dict[str, list[tuple[StageStatus, str]]] = {}
        self.lock = threading.Lock()

    def stage_changed(self, job: JobState, stage: str) -> None:
        state = job.stages[stage]
        with self.lock:
            self.seen.setdefault(job.id, []).append((state.status, state.detail))

    def waits(self, job_id: str) -> list[str]:
        with self.lock:
            seen = list(self.seen.get(job_id, []))
        return [d for s, d in seen if s is StageStatus.PENDING and d.startswith("waiting: ")]


class Cluster:
    """The distributed executor with its stages run in this process, several jobs at once."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.store = JobStore(settings.cluster)
        self.dispatcher = InlineDispatcher()
        self.coordinator = Coordinator(settings, self.store, self.dispatcher, dag=INGEST_ONLY)
        self.runner = StageRunner(self.coordinator)
        self.outcomes: list[StageRunOutcome] = []

    def submit(self, url: str) -> str:
        record, _ = self.coordinator.submit(JobSpec(source=url))
        return record.id

    def drive(self, until: Callable[[], bool], timeout: float, message: str) -> None:
        """Hand out due stages and run them, until ``until()`` holds."""
        deadline = time.monotonic() + timeout
        while not until():
            assert time.monotonic() < deadline, f"timed out: {message}"
            self.coordinator.dispatch_due()
            while self.dispatcher.sent:
                job_id, stage = self.dispatcher.sent.pop(0)
                self.outcomes.append(self.runner.execute(job_id, stage, task_id="t", worker="test"))
            time.sleep(0.02)

    def record(self, job_id: str) -> JobRecord:
        record = self.store.get(job_id)
        assert record is not None
        return record

    def status(self, job_id: str) -> JobStatus:
        return self.record(job_id).state.status


def serve(server: MediaServer, clip: Path, name: str, host: str = BLOCKED) -> str:
    server.put_file(name, clip)
    return f"http://{host}:{server.port}/{name}"


def requests_to(server: MediaServer, host: str) -> list[LoggedRequest]:
    return [r for r in server.requests if r.host == host]


def refusals_of(server: MediaServer, url: str) -> int:
    """How many times the server refused ``url``'s path."""
    path = urlsplit(url).path
    return sum(r.status in (401, 403, 429) and r.path == path for r in server.requests)


# -- 1. a 429's Retry-After ----------------------------------------------------------------------


def test_a_429_retry_after_pauses_the_host_that_long_and_spends_no_attempt(
    tmp_path: Path, server: MediaServer, clip: Path
) -> None:
    settings = backoff_settings(tmp_path)
    url = serve(server, clip, "rate-limited.mp4")
    server.refuse(429, {"Retry-After": "2"}, times=1)
    details = Details()

    state = LocalExecutor(settings, dag=INGEST_ONLY, observer=details).run(JobSpec(source=url))

    assert state.status is JobStatus.SUCCEEDED, state.error
    # executor.max_attempts is 1 here: a wait that spent an attempt would have failed the job.
    assert state.stages["ingest"].attempts == 1, "the wait gave its attempt back"
    log = requests_to(server, BLOCKED)
    [refused] = [r for r in log if r.status == 429]
    after = [r for r in log if r.started > refused.started]
    assert after, "the host was asked again"
    assert after[0].started - refused.ended >= 2.0, "nothing asked before Retry-After passed"
    assert all(r.status in (200, 206) for r in after)
    [wait] = details.waits(state.id)
    assert wait.startswith(f"waiting: {BLOCKED} paused until ") and "(HTTP 429 ×1)" in wait


# -- 2. five refusals pause the host: the distributed executor, the alert ------------------------


def test_five_403s_pause_the_host_its_jobs_wait_and_resume_and_the_alert_follows(
    tmp_path: Path, server: MediaServer, clip: Path, redis_server: RedisServer
) -> None:
    # A job refused before the host is paused spends an attempt (a lone refusal would, too);
    # enough of them that a slow machine cannot exhaust them before the burst.
    settings = backoff_settings(tmp_path, redis_server.url, executor={"max_attempts": 10})
    cluster = Cluster(settings)
    gate = RedisHostGate(cluster.store, settings.sources.backoff)
    view = OpsView(settings, cluster.store, dag=INGEST_ONLY)
    server.refuse(403, hosts=(BLOCKED,))
    blocked = [cluster.submit(serve(server, clip, f"talk-{i}.mp4")) for i in range(5)]
    other = cluster.submit(serve(server, clip, "other.mp4", host=OTHER))

    def paused() -> bool:
        return [(h.host, h.state) for h in gate.hosts()] == [(BLOCKED, WaitReason.PAUSED)]

    cluster.drive(
        lambda: paused() and cluster.status(other) is JobStatus.SUCCEEDED,
        30,
        "the host did not pause, or the other host's job did not finish",
    )
    refusals = [r for r in requests_to(server, BLOCKED) if r.status == 403]
    assert {r.path for r in refusals} == {f"/talk-{i}.mp4" for i in range(5)}, "five jobs refused"
    for job_id in blocked:
        record = cluster.record(job_id)
        ingest = record.stage("ingest")
        assert record.state.status is JobStatus.RUNNING, "waiting, not failed"
        assert ingest.status is StageStatus.PENDING
        assert ingest.detail.startswith(f"waiting: {BLOCKED} "), ingest.detail
        assert ingest.attempts <= refusals_of(server, record.state.spec.source)
        assert ingest.error is None
    assert StageRunOutcome.FAILED not in cluster.outcomes

    snapshot = view.snapshot(sample=False)
    [alert] = [a for a in snapshot.alerts if a.kind is AlertKind.SOURCE_BLOCKED]
    assert alert.host == BLOCKED
    assert alert.message.startswith(f"{BLOCKED} is paused until ") and "HTTP 403" in alert.message
    status = snapshot.model_dump(mode="json")  # what `recast status --json` prints
    # 5, or more when the pause ran out and a refused probe paused the host again meanwhile.
    [(host, state, refused)] = [(h["host"], h["state"], h["refusals"]) for h in status["hosts"]]
    assert (host, state) == (BLOCKED, "paused") and refused >= 5
    assert f'recast_source_host_paused_seconds{{host="{BLOCKED}"}}' in render(view).decode()

    server.allow()
    cluster.drive(
        lambda: all(cluster.status(j) is JobStatus.SUCCEEDED for j in blocked),
        30,
        "the paused host's jobs did not complete once it answered",
    )
    pause_ended = max(r.ended for r in refusals)
    answered = [r for r in requests_to(server, BLOCKED) if r.status in (200, 206)]
    assert min(r.started for r in answered) - pause_ended >= PAUSE_S, "asked only after the pause"
    for job_id in blocked:
        record = cluster.record(job_id)
        # The success, and one per refusal before the pause: the waits while paused, the
        # refusal that paused the host and a refused probe spent none.
        assert record.stage("ingest").attempts <= 1 + refusals_of(server, record.state.spec.source)
    total = sum(cluster.record(j).stage("ingest").attempts for j in blocked)
    assert total <= len(blocked) + len(refusals) - 1, "the pausing refusal spent no attempt"
    assert gate.hosts() == []
    snapshot = view.snapshot(sample=False)
    assert [a for a in snapshot.alerts if a.kind is AlertKind.SOURCE_BLOCKED] == []
    assert snapshot.hosts == []


# -- 3. the local executor: the same with its in-memory gate -------------------------------------


def test_the_local_executor_pauses_and_resumes_a_host_with_its_own_gate(
    tmp_path: Path, server: MediaServer, clip: Path
) -> None:
    settings = backoff_settings(tmp_path, executor={"max_attempts": 10})
    details = Details()
    executor = LocalExecutor(settings, dag=INGEST_ONLY, observer=details)
    specs = [JobSpec(source=serve(server, clip, f"local-{i}.mp4")) for i in range(5)]
    server.refuse(403, hosts=(BLOCKED,))
    states: dict[str, JobState] = {}

    def run(spec: JobSpec) -> None:
        states[spec.job_id] = executor.run(spec)

    threads = [threading.Thread(target=run, args=(spec,)) for spec in specs]
    for thread in threads:
        thread.start()
    [host] = wait_for(executor.gate.hosts, 30, "the host did not pause", interval=0.02)
    assert (host.host, host.state, host.refusals) == (BLOCKED, WaitReason.PAUSED, 5)
    server.allow()
    for thread in threads:
        thread.join(timeout=60)
    assert {s.status for s in states.values()} == {JobStatus.SUCCEEDED}
    for state in states.values():
        refused = refusals_of(server, state.spec.source)
        assert 1 <= state.stages["ingest"].attempts <= 1 + refused, "paused waits spent none"
    for spec in specs:
        assert details.waits(spec.job_id), "every job showed it was waiting"
    shown = [w for spec in specs for w in details.waits(spec.job_id)]
    assert any(f"waiting: {BLOCKED} paused until " in w and "(HTTP 403 ×5)" in w for w in shown)
    assert executor.gate.hosts() == [], "resumed"


# -- 4. download slots per site -------------------------------------------------------------------


@pytest.mark.parametrize("gates", ["one in memory", "one per worker in redis"])
def test_max_concurrent_downloads_lets_one_job_fetch_from_a_site_at_a_time(
    tmp_path: Path, server: MediaServer, clip: Path, redis_server: RedisServer, gates: str
) -> None:
    site = {"hosts": [BLOCKED], "max_concurrent_downloads": 1}
    settings = backoff_settings(tmp_path, redis_server.url, sources={"sites": [site]})
    body = clip.read_bytes()

    def slow(_handler: object) -> Response:
        time.sleep(0.15)  # long enough that two jobs' requests would overlap without the limit
        return Response(200, body, {"Content-Type": "video/mp4"})

    urls = [server.route(f"slot-{i}.mp4", slow) for i in range(2)]
    details = Details()
    if gates == "one in memory":
        shared = LocalExecutor(settings, dag=INGEST_ONLY, observer=details)
        executors = [shared, shared]
    else:  # two workers: separate clients of the same Redis
        executors = [
            LocalExecutor(
                settings,
                dag=INGEST_ONLY,
                observer=details,
                host_gate=RedisHostGate(JobStore(settings.cluster), settings.sources.backoff),
            )
            for _ in urls
        ]
    states: list[JobState] = []
    threads = [
        threading.Thread(target=lambda e=e, u=u: states.append(e.run(JobSpec(source=u))))
        for e, u in zip(executors, urls, strict=True)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert [s.status for s in states] == [JobStatus.SUCCEEDED] * 2
    spans = []
    for index in range(2):
        mine = [r for r in server.requests if r.path == f"/slot-{index}.mp4"]
        spans.append((min(r.started for r in mine), max(r.ended for r in mine)))
    first, second = sorted(spans)
    assert first[1] <= second[0], f"the two jobs fetched at the same time: {spans}"
    waited = [w for s in states for w in details.waits(s.id)]
    assert any(f"every download slot of {BLOCKED} is taken (1)" in w for w in waited), waited


# -- 5. the longest wait --------------------------------------------------------------------------


@pytest.mark.parametrize("executor", ["local", "distributed"])
def test_a_job_waiting_past_max_wait_fails_with_source_blocked(
    tmp_path: Path, server: MediaServer, clip: Path, redis_server: RedisServer, executor: str
) -> None:
    settings = backoff_settings(
        tmp_path, redis_server.url, backoff={"burst": 1, "pause_base_s": 0.3, "max_wait_s": 1.0}
    )
    url = serve(server, clip, "always-refused.mp4")
    server.refuse(403)
    if executor == "local":
        state = LocalExecutor(settings, dag=INGEST_ONLY).run(JobSpec(source=url))
    else:
        cluster = Cluster(settings)
        job_id = cluster.submit(url)
        cluster.drive(
            lambda: cluster.status(job_id) is JobStatus.FAILED, 30, "the job did not give up"
        )
        state = cluster.record(job_id).state
    assert state.status is JobStatus.FAILED
    assert state.error is not None and state.error.code == ErrorCode.SOURCE_BLOCKED
    assert "sources.backoff.max_wait_s" in state.error.message
    assert not state.error.transient
    assert state.stages["ingest"].attempts == 1, "the waits spent no attempt"
    assert len(requests_to(server, BLOCKED)) >= 2, "it tried again while waiting"


@pytest.mark.parametrize("executor", ["local", "distributed"])
def test_a_source_refused_alone_fails_once_its_attempts_are_spent(
    tmp_path: Path, server: MediaServer, clip: Path, redis_server: RedisServer, executor: str
) -> None:
    """A private or removed video (403 for this job, the host not paused) must not wait for
    max_wait_s: each refusal spends an attempt, the last one fails the job."""
    settings = backoff_settings(
        tmp_path,
        redis_server.url,
        backoff={"pause_base_s": 0.1, "max_wait_s": 3600.0},
        executor={"max_attempts": 3},
    )
    url = serve(server, clip, "private.mp4")
    server.refuse(403)
    details = Details()
    if executor == "local":
        state = LocalExecutor(settings, dag=INGEST_ONLY, observer=details).run(JobSpec(source=url))
        waits = details.waits(state.id)
    else:
        cluster = Cluster(settings)
        job_id = cluster.submit(url)
        cluster.drive(lambda: cluster.status(job_id) is JobStatus.FAILED, 30, "it kept waiting")
        state = cluster.record(job_id).state
        waits = []
    assert state.status is JobStatus.FAILED
    assert state.error is not None and state.error.code == ErrorCode.SOURCE_BLOCKED
    assert "on every attempt" in state.error.message, state.error.message
    assert state.stages["ingest"].attempts == 3
    assert len([r for r in requests_to(server, BLOCKED) if r.status == 403]) == 3
    if executor == "local":
        assert len(waits) == 2 and all(f"{BLOCKED} refused this job" in w for w in waits)


# -- the rules, and what counts as a refusal ------------------------------------------------------


class FakeClock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def test_the_gate_rules() -> None:
    policy = HostBackoffSettings(burst=3, window_s=100, pause_base_s=10, pause_max_s=25)
    clock = FakeClock()
    gate: HostGate = InMemoryHostGate(policy, clock)
    host = "example.org"

    def refuse(holder: str, retry_after: float | None = None) -> Wait:
        return gate.refuse(host, holder, "HTTP 403", retry_after)

    # One job refused again and again never pauses the host: burst counts different jobs.
    for _ in range(5):
        assert refuse("a").reason is WaitReason.REFUSED
    assert refuse("b").reason is WaitReason.REFUSED
    pause = refuse("c")
    assert (pause.reason, pause.delay_s, pause.refusals) == (WaitReason.PAUSED, 10, 3)
    assert gate.admit(host, "d") == pause
    clock.now += 10
    assert gate.admit(host, "d").probe  # type: ignore[union-attr]
    probing = gate.admit(host, "e")
    assert isinstance(probing, Wait) and probing.reason is WaitReason.PROBING
    # The probe refused: paused again at once, twice as long, then capped at pause_max_s.
    assert refuse("d").delay_s == 20
    clock.now += 20
    assert gate.admit(host, "e").probe  # type: ignore[union-attr]
    assert refuse("e").delay_s == 25
    clock.now += 25
    assert gate.admit(host, "f").probe  # type: ignore[union-attr]
    gate.succeed(host, "f")
    gate.leave(host, "f")
    assert gate.hosts() == [] and gate.admit(host, "g") == gate.admit(host, "h")
    # A 429's Retry-After pauses at once, for that long (at most pause_max_s).
    assert refuse("g", retry_after=7).delay_s == 7
    clock.now += 7
    assert refuse("h", retry_after=3600).delay_s == 25
    # Slots: a dead holder's lease expires.
    other = "cdn.example.net"
    assert not isinstance(gate.admit(other, "x", max_slots=1), Wait)
    busy = gate.admit(other, "y", max_slots=1)
    assert isinstance(busy, Wait) and busy.reason is WaitReason.BUSY
    clock.now += 61
    assert not isinstance(gate.admit(other, "y", max_slots=1), Wait)


def test_a_site_and_its_cdn_share_one_gate() -> None:
    sources = SourcesSettings(sites=[{"hosts": ["example-tube.com", "cdn.example.net"]}])
    assert host_key("https://www.example-tube.com/watch?v=1", sources) == "example-tube.com"
    assert host_key("https://r3.cdn.example.net/v.mp4", sources) == "example-tube.com"
    assert host_key("https://WWW.Other.org/v.mp4", sources) == "other.org"
    assert host_key("relative/path.mp4", sources) is None


def test_a_bot_check_page_is_a_refusal() -> None:
    page = ExtractorError(
        "Sign in to confirm you\u2019re not a bot. Use --cookies-from-browser or --cookies",
        expected=True,
    )
    error = classify(page)
    assert isinstance(error, Refusal)
    assert (error.code, error.cause) == (ErrorCode.SOURCE_BLOCKED, "bot check")
    gone = classify(ExtractorError("Video unavailable. This video has been removed", expected=True))
    assert not isinstance(gone, Refusal) and gone.code is ErrorCode.SOURCE_UNAVAILABLE
