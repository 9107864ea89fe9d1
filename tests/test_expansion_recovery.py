"""A submitted URL's expansion is as robust as a stage (pipeline/engine/distributed/expansion.py):

- a worker killed (SIGKILL) mid-expansion: its lease in the outbox runs out, the reaper's
  outbox round sends the expansion again, and it completes;
- two runs of one playlist's expansion at once (a run judged dead that was only slow) give each
  entry one job, scheduled once, and the parent one clean children list;
- cancelling a playlist's parent cancels its entries' active jobs and leaves finished ones;
  retrying it retries the failed and cancelled ones; a parent cancelled while a worker expands
  it has the entries that run makes cancelled too;
- a paused source host makes the expansion wait, uncounted, in the outbox (no worker holds it),
  and a 403 at expansion is recorded with the host gate and waits instead of failing the job;
  a transient error is retried through the outbox.

Real Redis (a private redis-server), real yt-dlp against the local HTTP server, the production
store, coordinator, expander, reaper and stage runner; the broker is a list
(tests.support.workers.InlineDispatcher) and expansions run in this process, except the one
that is killed: a real subprocess. Only due outbox entries are handed out, so delays are
honoured; no speed is asserted.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from pipeline.core.dag import Dag
from pipeline.core.errors import ErrorCode
from pipeline.core.hostgate import HostState
from pipeline.core.job import JobSpec, JobStatus
from pipeline.core.settings import Settings
from pipeline.engine.distributed.coordinator import Coordinator, JobConflict
from pipeline.engine.distributed.expansion import Expander, ExpandOutcome, ExpandResult
from pipeline.engine.distributed.hostgate import RedisHostGate
from pipeline.engine.distributed.jobstore import EXPANSION_STAGE, JobRecord, JobStore
from pipeline.engine.distributed.keys import stage_member
from pipeline.engine.distributed.reaper import Reaper
from pipeline.engine.distributed.stagerun import StageRunner
from pipeline.stages.ingest import STAGE as INGEST
from tests.conftest import make_settings
from tests.support.httpserver import MediaServer, Response
from tests.support.media import make_clip
from tests.support.workers import (
    ROOT,
    InlineDispatcher,
    RedisServer,
    cluster_test_settings,
    wait_for,
)

INGEST_ONLY = Dag.of([INGEST])
HOST = "127.0.0.1"


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    with RedisServer(tmp_path_factory.mktemp("redis")) as server:
        yield server


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_clip(tmp_path_factory.mktemp("clip") / "talk.mp4", duration=1.0, size="160x90")


def cluster_settings(tmp_path: Path, redis_url: str, **sections: Any) -> Settings:
    cluster = cluster_test_settings(
        redis_url,
        key_prefix=tmp_path.name,
        heartbeat_s=0.2,
        reaper_stale_s=1.0,
        reaper_interval_s=0.2,
        **sections.pop("cluster", {}),
    )
    return make_settings(tmp_path, cluster=cluster, **sections)


class Cluster:
    """The distributed executor, expansions and stages run in this process."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.store = JobStore(settings.cluster)
        self.dispatcher = InlineDispatcher()
        self.coordinator = Coordinator(settings, self.store, self.dispatcher, dag=INGEST_ONLY)
        self.expander = Expander(self.coordinator)
        self.runner = StageRunner(self.coordinator)
        self.results: list[ExpandResult] = []

    def submit(self, url: str, event: str = "expansion") -> str:
        return self.expander.submit(JobSpec(source=url, event=event)).record.id

    def run_expansions(self) -> None:
        while self.dispatcher.expansions:
            job_id = self.dispatcher.expansions.pop(0)
            self.results.append(self.expander.expand(job_id, worker="test"))

    def drive(self, until: Callable[[], bool], timeout: float, message: str) -> None:
        """Send due outbox entries (the reaper's round) and run the expansions handed out;
        stages are left in ``dispatcher.sent``."""
        reaper = Reaper(self.coordinator, holder="test")
        deadline = time.monotonic() + timeout
        while not until():
            assert time.monotonic() < deadline, f"timed out: {message}"
            reaper.run_once()
            self.run_expansions()
            time.sleep(0.02)

    def record(self, job_id: str) -> JobRecord:
        record = self.store.get(job_id)
        assert record is not None
        return record

    def status(self, job_id: str) -> JobStatus:
        return self.record(job_id).state.status

    def outbox_due_in(self, job_id: str) -> float | None:
        score = self.store.redis.zscore(
            self.store.keys.outbox, stage_member(job_id, EXPANSION_STAGE)
        )
        return None if score is None else float(score) - time.time()


def page(entries: list[str], server: MediaServer) -> bytes:
    videos = "".join(
        f'<video controls><source src="{server.url(e)}" type="video/mp4"></video>' for e in entries
    )
    return f"<html><body>{videos}</body></html>".encode()


class HeldPage:
    """A playlist page whose requests are held until :meth:`release` (a look-up in flight)."""

    def __init__(self, server: MediaServer, path: str, entries: list[str]):
        self.body = page(entries, server)
        self.arrived = threading.Semaphore(0)
        self.released = threading.Event()
        self.url = server.route(path, self._answer)

    def _answer(self, _handler: Any) -> Response:
        self.arrived.release()
        self.released.wait(30)
        return Response(200, self.body, {"Content-Type": "text/html; charset=utf-8"})

    def wait_arrival(self) -> None:
        assert self.arrived.acquire(timeout=30), "the look-up never reached the page"

    def release(self) -> None:
        self.released.set()


def entry_ids(server: MediaServer, entries: list[str], event: str = "expansion") -> list[str]:
    return [JobSpec(source=server.url(e), event=event).job_id for e in entries]


# -- 1. a killed worker; two runs at once ------------------------------------------------------

KILLED_RUN = """
import json, sys
from pipeline.core.dag import Dag
from pipeline.core.settings import load_settings
from pipeline.engine.distributed.coordinator import Coordinator
from pipeline.engine.distributed.expansion import Expander
from pipeline.engine.distributed.jobstore import JobStore
from pipeline.stages.ingest import STAGE
from tests.support.workers import InlineDispatcher

settings = load_settings(**json.loads(open(sys.argv[1]).read()))
coordinator = Coordinator(
    settings, JobStore(settings.cluster), InlineDispatcher(), dag=Dag.of([STAGE])
)
Expander(coordinator).expand(sys.argv[2], worker="doomed")
"""


def test_an_expansion_whose_worker_was_killed_is_sent_again_and_completes(
    tmp_path: Path, server: MediaServer, redis_server: RedisServer
) -> None:
    settings = cluster_settings(tmp_path, redis_server.url)
    cluster = Cluster(settings)
    entries = ["killed/one.mp4", "killed/two.mp4"]
    held = HeldPage(server, "killed/recordings.html", entries)
    parent = cluster.submit(held.url)
    assert cluster.dispatcher.expansions == [parent], "handed out through the outbox"
    cluster.dispatcher.expansions.clear()  # the doomed worker took the message

    config = tmp_path / "settings.json"
    config.write_text(settings.model_dump_json())
    doomed = subprocess.Popen(
        [sys.executable, "-c", KILLED_RUN, str(config), parent],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        start_new_session=True,
    )
    try:
        held.wait_arrival()
        os.killpg(doomed.pid, signal.SIGKILL)
        doomed.wait(timeout=10)
    finally:
        if doomed.poll() is None:
            os.killpg(doomed.pid, signal.SIGKILL)
            doomed.wait(timeout=10)
    held.release()  # later look-ups get the page at once
    left = cluster.record(parent).expansion
    assert left is not None and left.running and left.worker == "doomed", "killed mid-run"
    assert cluster.status(parent) is JobStatus.QUEUED

    cluster.drive(
        lambda: cluster.status(parent) is not JobStatus.QUEUED,
        30,
        "the killed worker's expansion was never sent again",
    )
    record = cluster.record(parent)
    assert record.state.status is JobStatus.SUCCEEDED, record.state.error
    assert record.expansion is not None
    assert record.expansion.children == entry_ids(server, entries)
    assert record.expansion.lost == 1, "the next run counted the killed one"
    assert not record.expansion.running
    assert [r.outcome for r in cluster.results] == [ExpandOutcome.PLAYLIST]
    assert len(server.hits("killed/recordings.html")) == 2, "looked up again after the kill"
    assert cluster.outbox_due_in(parent) is None, "nothing left to send"


def test_a_lost_expansion_message_is_sent_again_each_time_later(
    tmp_path: Path, server: MediaServer, redis_server: RedisServer
) -> None:
    settings = cluster_settings(tmp_path, redis_server.url)
    cluster = Cluster(settings)
    url = server.add("lost/recordings.html", page(["lost/one.mp4", "lost/two.mp4"], server))
    parent = cluster.submit(url)
    assert cluster.dispatcher.expansions == [parent]
    cluster.dispatcher.expansions.clear()  # the message is lost before any worker runs it
    stale = settings.cluster.reaper_stale_s
    due_in = cluster.outbox_due_in(parent)
    assert due_in is not None and 0 < due_in <= stale, "kept, due again after a stale period"

    wait_for(cluster.coordinator.dispatch_due, 30, "never sent again", interval=0.05)
    assert cluster.dispatcher.expansions == [parent]
    due_in = cluster.outbox_due_in(parent)
    assert due_in is not None and due_in > stale, "the next re-send waits twice as long"

    cluster.dispatcher.expansions.clear()  # lost again, and its entry too (a job recorded
    cluster.store.done_dispatching(parent, EXPANSION_STAGE)  # before expansions had one)
    assert cluster.submit(url) == parent
    assert cluster.dispatcher.expansions == [parent], "submitting it again sends it at once"
    cluster.run_expansions()
    assert cluster.status(parent) is JobStatus.SUCCEEDED
    assert cluster.outbox_due_in(parent) is None


def test_two_runs_of_one_playlist_at_once_give_each_entry_one_job(
    tmp_path: Path, server: MediaServer, redis_server: RedisServer
) -> None:
    cluster = Cluster(cluster_settings(tmp_path, redis_server.url))
    entries = ["twice/one.mp4", "twice/two.mp4", "twice/one.mp4", "twice/three.mp4"]
    held = HeldPage(server, "twice/recordings.html", entries)
    parent = cluster.submit(held.url, event="twice")
    cluster.dispatcher.expansions.clear()
    results: dict[str, ExpandResult] = {}

    def run(worker: str) -> None:
        results[worker] = cluster.expander.expand(parent, worker=worker)

    first = threading.Thread(target=run, args=("slow",))
    first.start()
    held.wait_arrival()
    # The first run stalls past its lease (its lock expires, as if it were dead): a second
    # worker takes the expansion over while the first one still fetches the page.
    cluster.store.redis.delete(cluster.store.keys.lock(parent, EXPANSION_STAGE))
    second = threading.Thread(target=run, args=("other",))
    second.start()
    held.wait_arrival()
    held.release()
    first.join(30)
    second.join(30)

    assert {w: r.outcome for w, r in results.items()} == {
        "slow": ExpandOutcome.PLAYLIST,
        "other": ExpandOutcome.PLAYLIST,
    }, "both looked the playlist up and made its entries' jobs"
    children = entry_ids(server, ["twice/one.mp4", "twice/two.mp4", "twice/three.mp4"], "twice")
    record = cluster.record(parent)
    assert record.state.status is JobStatus.SUCCEEDED
    assert record.expansion is not None and record.expansion.children == children
    listed = cluster.store.page_jobs(event="twice", limit=50).jobs
    assert sorted(r.id for r in listed) == sorted([parent, *children]), "one job per entry"
    for child in children:
        assert cluster.dispatcher.sent.count((child, "ingest")) == 1, "scheduled once"
        assert cluster.status(child) is JobStatus.QUEUED


# -- 2. cancel and retry a playlist --------------------------------------------------------------


def test_cancelling_a_playlist_cancels_its_active_entries_and_keeps_finished_ones(
    tmp_path: Path, server: MediaServer, redis_server: RedisServer, clip: Path
) -> None:
    cluster = Cluster(cluster_settings(tmp_path, redis_server.url))
    server.put_file("cancel/done.mp4", clip)
    server.put_file("cancel/queued.mp4", clip)
    entries = ["cancel/done.mp4", "cancel/missing.mp4", "cancel/queued.mp4"]
    url = server.add("cancel/recordings.html", page(entries, server))
    parent = cluster.submit(url)
    cluster.drive(lambda: cluster.status(parent) is JobStatus.SUCCEEDED, 30, "not expanded")
    done, missing, queued = entry_ids(server, entries)
    for job_id in (done, missing):  # run these two entries' jobs to their end
        cluster.runner.execute(job_id, "ingest", task_id="t", worker="test")
    assert [cluster.status(j) for j in (done, missing, queued)] == [
        JobStatus.SUCCEEDED,
        JobStatus.FAILED,
        JobStatus.QUEUED,
    ]

    cancelled = cluster.expander.cancel(parent)
    assert cancelled.id == parent and cancelled.state.status is JobStatus.SUCCEEDED
    assert cluster.status(queued) is JobStatus.CANCELLED, "the active entry was cancelled"
    assert cluster.status(done) is JobStatus.SUCCEEDED, "a finished entry stays"
    assert cluster.status(missing) is JobStatus.FAILED, "a finished entry stays"
    with pytest.raises(JobConflict):
        cluster.expander.cancel(parent)  # nothing left to cancel

    cluster.expander.retry(parent)
    assert cluster.status(queued) is JobStatus.QUEUED, "the cancelled entry runs again"
    assert cluster.status(missing) is JobStatus.QUEUED, "the failed entry runs again"
    assert cluster.status(done) is JobStatus.SUCCEEDED
    assert cluster.record(done).stage("ingest").attempts == 1, "the finished entry left alone"
    assert cluster.status(parent) is JobStatus.SUCCEEDED


def test_a_parent_cancelled_while_it_is_expanded_has_its_entries_cancelled(
    tmp_path: Path, server: MediaServer, redis_server: RedisServer
) -> None:
    cluster = Cluster(cluster_settings(tmp_path, redis_server.url))
    entries = ["midway/one.mp4", "midway/two.mp4"]
    held = HeldPage(server, "midway/recordings.html", entries)
    parent = cluster.submit(held.url)
    cluster.dispatcher.expansions.clear()
    results: list[ExpandResult] = []
    run = threading.Thread(target=lambda: results.append(cluster.expander.expand(parent)))
    run.start()
    held.wait_arrival()
    assert cluster.expander.cancel(parent).state.status is JobStatus.CANCELLED
    held.release()
    run.join(30)

    assert [r.outcome for r in results] == [ExpandOutcome.PLAYLIST]
    record = cluster.record(parent)
    children = entry_ids(server, entries)
    assert record.state.status is JobStatus.CANCELLED
    assert record.expansion is not None and record.expansion.children == children
    assert [cluster.status(c) for c in children] == [JobStatus.CANCELLED] * 2, "none runs"

    cluster.expander.retry(parent)
    assert [cluster.status(c) for c in children] == [JobStatus.QUEUED] * 2
    assert cluster.status(parent) is JobStatus.SUCCEEDED


# -- 3. the host gate; transient errors ----------------------------------------------------------

BACKOFF = {"window_s": 60.0, "pause_base_s": 0.6, "probe_interval_s": 0.1, "max_wait_s": 60.0}


def test_a_paused_host_makes_the_expansion_wait_uncounted_then_it_completes(
    tmp_path: Path, server: MediaServer, redis_server: RedisServer
) -> None:
    settings = cluster_settings(tmp_path, redis_server.url, sources={"backoff": BACKOFF})
    cluster = Cluster(settings)
    gate = RedisHostGate(cluster.store, settings.sources.backoff)
    entries = ["paused/one.mp4", "paused/two.mp4"]
    url = server.add("paused/recordings.html", page(entries, server))
    gate.refuse(HOST, "another-job", "HTTP 429", retry_after=1.0)  # the host is paused 1 s

    parent = cluster.submit(url)
    cluster.run_expansions()
    [waited] = cluster.results
    assert waited.outcome is ExpandOutcome.WAITING, "the task ended: no worker holds the wait"
    assert server.hits("paused/recordings.html") == [], "nothing asked while paused"
    record = cluster.record(parent)
    assert record.state.status is JobStatus.QUEUED and record.expansion is not None
    assert record.expansion.attempts == 0, "the wait spent no attempt"
    assert record.expansion.detail.startswith(f"waiting: {HOST} paused until ")
    due_in = cluster.outbox_due_in(parent)
    assert due_in is not None and due_in > 0.3, "back in the outbox until the pause ends"

    cluster.drive(lambda: cluster.status(parent) is not JobStatus.QUEUED, 30, "never expanded")
    # executor.max_attempts is 1 here: a wait that spent an attempt would fail the job.
    record = cluster.record(parent)
    assert record.state.status is JobStatus.SUCCEEDED, record.state.error
    assert record.expansion is not None and record.expansion.children == entry_ids(server, entries)
    assert [r.outcome for r in cluster.results] == [ExpandOutcome.WAITING, ExpandOutcome.PLAYLIST]


def test_a_403_at_expansion_is_recorded_with_the_gate_and_waits_instead_of_failing(
    tmp_path: Path, server: MediaServer, redis_server: RedisServer
) -> None:
    settings = cluster_settings(
        tmp_path,
        redis_server.url,
        sources={"backoff": BACKOFF},
        executor={"max_attempts": 2},  # a job's own refusal spends an attempt, as in ingest
    )
    cluster = Cluster(settings)
    url = server.add(
        "refused/recordings.html", page(["refused/one.mp4", "refused/two.mp4"], server)
    )
    server.refuse(403, hosts=(HOST,), times=1)

    parent = cluster.submit(url)
    cluster.run_expansions()
    assert [r.outcome for r in cluster.results] == [ExpandOutcome.WAITING]
    [refused] = server.hits("refused/recordings.html")
    assert refused.status == 403
    raw = cluster.store.redis.get(cluster.store.keys.source_host(HOST))
    assert raw is not None, "the refusal was recorded with the host's gate"
    assert parent in HostState.model_validate_json(raw).refusals
    record = cluster.record(parent)
    assert record.state.status is JobStatus.QUEUED, "waiting, not failed"
    assert record.expansion is not None
    assert record.expansion.detail.startswith(f"waiting: {HOST} refused this job (HTTP 403)")
    assert record.expansion.attempts == 1, "its own refusal (host not paused) is counted"

    cluster.drive(lambda: cluster.status(parent) is not JobStatus.QUEUED, 30, "never expanded")
    assert cluster.status(parent) is JobStatus.SUCCEEDED
    assert cluster.store.redis.get(cluster.store.keys.source_host(HOST)) is None, "answered"


def test_a_transient_error_retries_the_expansion_through_the_outbox(
    tmp_path: Path, server: MediaServer, redis_server: RedisServer
) -> None:
    settings = cluster_settings(
        tmp_path,
        redis_server.url,
        executor={"max_attempts": 2, "retry_base_delay_s": 0.5, "retry_max_delay_s": 0.5},
    )
    cluster = Cluster(settings)
    body = page(["flaky/one.mp4", "flaky/two.mp4"], server)
    answers = iter([Response(503, b"busy")])

    def flaky(_handler: Any) -> Response:
        return next(answers, Response(200, body, {"Content-Type": "text/html"}))

    parent = cluster.submit(server.route("flaky/recordings.html", flaky))
    cluster.run_expansions()
    [retry] = cluster.results
    assert retry.outcome is ExpandOutcome.RETRY, "the task ended: the outbox holds the retry"
    due_in = cluster.outbox_due_in(parent)
    assert due_in is not None and due_in > 0, "due after the backoff"
    record = cluster.record(parent)
    assert record.expansion is not None and not record.expansion.running
    assert record.expansion.detail == f"retrying after {ErrorCode.NETWORK_SERVER_ERROR}"

    cluster.drive(lambda: cluster.status(parent) is not JobStatus.QUEUED, 30, "never retried")
    record = cluster.record(parent)
    assert record.state.status is JobStatus.SUCCEEDED, record.state.error
    assert record.expansion is not None and record.expansion.attempts == 2
