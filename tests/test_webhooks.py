"""Webhooks against a real receiver (a local HTTP server): signatures it can verify, retries
with the same event id, give-up after the span, an outbox that survives a restart, the events
a real job sends, and the verification helper (and the one docs/webhooks.md shows)."""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from pipeline.core.card import CardStatus
from pipeline.core.errors import ErrorCode, RecastError, backoff_delay
from pipeline.core.job import JobStatus
from pipeline.core.settings import Settings
from pipeline.core.stage import StageContext, StageResult
from pipeline.engine.local import LocalExecutor
from pipeline.publish import sign, verify_signature, webhooks
from pipeline.publish.publisher import CardPublisher
from tests.conftest import make_settings
from tests.support.publishing import JobMedia, make_job, publish_dag

SECRET = "whsec_test_4f1c"
ROOT = Path(__file__).resolve().parent.parent


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes

    @property
    def event(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(self.body)
        return data


@dataclass
class Receiver:
    """A CMS endpoint: records every request; answers the scripted statuses, then 200."""

    statuses: list[int] = field(default_factory=list)
    delays: list[float] = field(default_factory=list)
    received: list[Received] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    url: str = ""

    def wait_for(self, count: int, timeout: float = 10.0) -> list[Received]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if len(self.received) >= count:
                    return list(self.received)
            time.sleep(0.01)
        raise AssertionError(f"expected {count} requests, got {len(self.received)}")


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    state = Receiver()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            pass

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            with state.lock:
                state.received.append(Received(dict(self.headers.items()), body))
                status = state.statuses.pop(0) if state.statuses else 200
                delay = state.delays.pop(0) if state.delays else 0.0
            time.sleep(delay)
            try:
                self.send_response(status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")
            except (BrokenPipeError, ConnectionResetError):
                pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}/hooks/recast"
    yield state
    server.shutdown()
    server.server_close()


@pytest.fixture(autouse=True)
def _stop_dispatchers() -> Iterator[None]:
    yield
    webhooks.stop_dispatchers()


def hook_settings(tmp_path: Path, receiver: Receiver, **publish: Any) -> Settings:
    values: dict[str, Any] = {
        "webhook_urls": [receiver.url],
        "webhook_secret": SECRET,
        "webhook_retry_base_s": 0.05,
        "webhook_retry_max_delay_s": 0.2,
        "webhook_timeout_s": 2.0,
        "gc_grace_s": 0,
    }
    values.update(publish)
    return make_settings(tmp_path, publish=values)


def ready_event(card_id: str = "youtube-x") -> webhooks.WebhookEvent:
    return webhooks.WebhookEvent(
        type=webhooks.EventType.CARD_READY,
        job_id="j1",
        card_id=card_id,
        card={"id": card_id, "status": "ready", "title": 'A "quoted" & <b>title</b> — ü'},
    )


def test_delivery_is_signed_and_verifies(tmp_path: Path, receiver: Receiver) -> None:
    settings = hook_settings(tmp_path, receiver)
    event = ready_event()
    assert webhooks.notify(settings, event) == 1
    [request] = receiver.wait_for(1)
    header = request.headers["Recast-Signature"]
    assert re.fullmatch(r"t=\d+,v1=[0-9a-f]{64}", header)
    assert verify_signature(SECRET, header, request.body)
    assert not verify_signature("whsec_wrong", header, request.body), "wrong secret fails"
    assert not verify_signature(SECRET, header, request.body + b" "), "changed body fails"
    body = request.event
    assert body["id"] == event.id and body["type"] == "card.ready"
    assert body["card"]["title"] == 'A "quoted" & <b>title</b> — ü'
    assert body["time"].endswith("Z") or "+00:00" in body["time"]
    assert request.headers["Content-Type"] == "application/json"
    assert request.headers["Recast-Event-Id"] == event.id
    webhooks.dispatcher(settings).drain(5)
    assert webhooks.Outbox.for_settings(settings).files() == []


def test_failed_deliveries_are_retried_with_the_same_event_id(
    tmp_path: Path, receiver: Receiver
) -> None:
    receiver.statuses = [500, 500]
    settings = hook_settings(tmp_path, receiver)
    event = ready_event()
    webhooks.notify(settings, event)
    requests = receiver.wait_for(3)
    assert [r.event["id"] for r in requests] == [event.id] * 3
    assert [r.headers["Recast-Delivery-Attempt"] for r in requests] == ["1", "2", "3"]
    assert all(verify_signature(SECRET, r.headers["Recast-Signature"], r.body) for r in requests)
    time.sleep(0.3)
    assert len(receiver.received) == 3, "delivered once the receiver said 200: no more attempts"
    assert webhooks.Outbox.for_settings(settings).files() == []


def test_a_timeout_is_retried(tmp_path: Path, receiver: Receiver) -> None:
    receiver.delays = [1.0]
    settings = hook_settings(tmp_path, receiver, webhook_timeout_s=0.3)
    webhooks.notify(settings, ready_event())
    requests = receiver.wait_for(2)
    assert requests[0].event["id"] == requests[1].event["id"]


def test_delivery_is_given_up_after_the_retry_span(tmp_path: Path, receiver: Receiver) -> None:
    receiver.statuses = [503] * 100
    settings = hook_settings(tmp_path, receiver, webhook_retry_span_s=0.5)
    webhooks.notify(settings, ready_event())
    outbox = webhooks.Outbox.for_settings(settings)
    deadline = time.monotonic() + 5
    while outbox.files() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert outbox.files() == []
    [dead] = list(outbox.dead.glob("*.json"))
    delivery = webhooks.Delivery.model_validate_json(dead.read_text())
    assert delivery.attempts >= 3 and delivery.last_error == "HTTP 503"
    count = len(receiver.received)
    time.sleep(0.3)
    assert len(receiver.received) == count


def test_backoff_doubles_with_jitter_up_to_the_maximum() -> None:
    import random

    rng = random.Random(7)
    delays = [backoff_delay(n, 10.0, 3600.0, rng) for n in range(1, 12)]
    for attempt, delay in enumerate(delays, start=1):
        ceiling = min(3600.0, 10.0 * 2 ** (attempt - 1))
        assert ceiling / 2 <= delay <= ceiling
    assert len({round(d, 6) for d in delays}) == len(delays), "jittered"


def test_outbox_survives_a_restart(tmp_path: Path, receiver: Receiver) -> None:
    receiver.statuses = [500]
    settings = hook_settings(tmp_path, receiver, webhook_retry_base_s=0.5)
    event = ready_event()
    outbox = webhooks.Outbox.for_settings(settings)
    outbox.add(event, receiver.url, settings, trusted=True)  # queued by a process that died
    sender = webhooks.Sender(settings)
    assert sender.deliver_due() == 1  # first attempt fails (500) and is scheduled
    [path] = outbox.files()
    pending = webhooks.Delivery.model_validate_json(path.read_text())
    assert pending.attempts == 1 and pending.next_attempt > time.time()
    # "Restart": a new process's dispatcher finds the outbox and finishes the job.
    webhooks.dispatcher(settings)
    requests = receiver.wait_for(2)
    assert [r.event["id"] for r in requests] == [event.id, event.id]
    assert requests[1].headers["Recast-Delivery-Attempt"] == "2"
    deadline = time.monotonic() + 5
    while outbox.files() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert outbox.files() == []


def test_two_senders_never_send_the_same_attempt_twice(tmp_path: Path, receiver: Receiver) -> None:
    receiver.delays = [0.3]
    settings = hook_settings(tmp_path, receiver)
    webhooks.Outbox.for_settings(settings).add(ready_event(), receiver.url, settings, trusted=True)
    senders = [webhooks.Sender(settings) for _ in range(3)]
    threads = [threading.Thread(target=s.deliver_due) for s in senders]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(receiver.received) == 1


def test_callback_urls_to_forbidden_addresses_are_refused(
    tmp_path: Path, receiver: Receiver
) -> None:
    settings = hook_settings(tmp_path, receiver, webhook_urls=[])
    forbidden = receiver.url.replace("127.0.0.1", "127.0.0.2")
    assert webhooks.notify(settings, ready_event(), callback_url=forbidden) == 1
    outbox = webhooks.Outbox.for_settings(settings)
    deadline = time.monotonic() + 5
    while outbox.files() and time.monotonic() < deadline:
        time.sleep(0.02)
    [dead] = list(outbox.dead.glob("*.json"))
    assert "refused" in webhooks.Delivery.model_validate_json(dead.read_text()).last_error


def test_verify_signature_helper() -> None:
    body = b'{"id":"evt_1","type":"card.ready"}'
    now = 1_800_000_000
    header = sign(SECRET, body, timestamp=now)
    assert verify_signature(SECRET, header, body, now=now + 10)
    assert verify_signature(SECRET, header, body.decode(), now=now)
    assert not verify_signature(SECRET, header, body, now=now + 301), "old timestamp rejected"
    assert not verify_signature(SECRET, header, body, now=now - 301), "future timestamp rejected"
    assert verify_signature(SECRET, header, body, tolerance_s=600, now=now + 500)
    assert not verify_signature("other", header, body, now=now)
    rotated = f"{header},v1={'0' * 64}"
    assert verify_signature(SECRET, rotated, body, now=now), "one matching v1 is enough"
    stale = sign(SECRET, body, timestamp=now - 1000)
    assert not verify_signature(SECRET, stale, body, now=now)
    for bad in ("", "t=abc,v1=00", f"v1={'0' * 64}", f"t={now}", "garbage", None):
        assert not verify_signature(SECRET, bad, body, now=now)
    assert not verify_signature("", header, body, now=now)


def test_the_verification_code_in_docs_works() -> None:
    """docs/webhooks.md's Python example, run against signatures Recast makes."""
    text = (ROOT / "docs" / "webhooks.md").read_text()
    code = re.search(r"```python\n(.*?)```", text, re.S)
    assert code is not None
    namespace: dict[str, Any] = {}
    exec(compile(code.group(1), "docs/webhooks.md", "exec"), namespace)
    verify = namespace["verify_recast_signature"]
    body = b'{"id":"evt_2","type":"card.preview"}'
    header = sign(SECRET, body)
    assert verify(SECRET, header, body)
    assert not verify("wrong", header, body)
    assert not verify(SECRET, sign(SECRET, body, timestamp=int(time.time()) - 3600), body)


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> JobMedia:
    return JobMedia(tmp_path_factory.mktemp("hook-media"))


def test_a_job_sends_card_events_to_settings_urls_and_its_callback(
    tmp_path: Path, receiver: Receiver, media: JobMedia
) -> None:
    settings = hook_settings(tmp_path, receiver)
    callback = receiver.url + "?job=1"
    job = make_job(media, settings, callback_url=callback)
    state = LocalExecutor(settings, dag=publish_dag(), publisher=CardPublisher(settings)).run(
        job.spec
    )
    assert state.status is JobStatus.SUCCEEDED
    requests = receiver.wait_for(4)
    for request in requests:
        assert verify_signature(SECRET, request.headers["Recast-Signature"], request.body)
    types = sorted(r.event["type"] for r in requests)
    assert types == ["card.playable", "card.playable", "card.ready", "card.ready"]
    ready = next(r.event for r in requests if r.event["type"] == "card.ready")
    assert ready["card"]["status"] == CardStatus.READY and ready["card_id"] == job.card_id
    assert ready["job_id"] == job.spec.job_id


def _fails(ctx: StageContext) -> StageResult:
    raise RecastError(ErrorCode.SOURCE_UNAVAILABLE, "The video is unavailable.")


def test_a_failed_job_sends_job_failed_with_the_error(
    tmp_path: Path, receiver: Receiver, media: JobMedia
) -> None:
    settings = hook_settings(tmp_path, receiver)
    job = make_job(media, settings, stages=())
    dag = publish_dag((), ingest=_fails)
    state = LocalExecutor(settings, dag=dag, publisher=CardPublisher(settings)).run(job.spec)
    assert state.status is JobStatus.FAILED
    [request] = receiver.wait_for(1)
    body = request.event
    assert body["type"] == "job.failed" and body["job_id"] == job.spec.job_id
    assert body["error"]["code"] == "source.unavailable"
    assert body["error"]["message"] == "The video is unavailable."
    assert "card" not in body
    assert verify_signature(SECRET, request.headers["Recast-Signature"], request.body)
