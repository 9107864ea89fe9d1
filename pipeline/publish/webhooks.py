"""Webhooks: tell a CMS when a card changes or a job fails, reliably and verifiably.

Events ``card.preview``, ``card.playable``, ``card.ready``, ``card.updated`` and
``job.failed`` go to every URL in ``publish.webhook_urls`` and to the job's callback URL (a
``card.updated`` has no job: configured URLs only). The body is JSON::

    {"id": "evt_…", "type": "card.ready", "time": "…", "job_id": "…", "card_id": "…",
     "card": {…}}                     # or "error": {"code", "message", "transient", "hint"}

signed in the ``Recast-Signature`` header (:mod:`pipeline.publish.signature`).

Delivery is at least once, through a durable outbox in the workspace
(``<workspace>/_webhooks/outbox/``, one JSON file per event and URL): an event is written there
before any attempt, so a crash or a restart resumes delivery. A timeout, a connection failure
or a non-2xx answer is retried with exponential backoff and jitter
(``publish.webhook_retry_base_s`` doubling, at most ``webhook_retry_max_delay_s``) until
``webhook_retry_span_s`` (24 h by default) has passed since the event; then the delivery is
moved to ``_webhooks/dead/``. Every attempt carries the same event id (receivers de-duplicate
on it) and a fresh signature timestamp. A delivery being sent is locked (``flock``), so two
processes sharing a workspace never send the same attempt twice.

A job's callback URL is not trusted: its host is looked up once, every answer must pass the URL
policy (``ingest.allowed_private_networks`` lists exceptions), and the request goes to one of
those checked addresses (:class:`PinnedBackend`), so a DNS answer that changes after the check
(DNS rebinding) is never connected to. The Host header, TLS SNI and certificate check keep the
URL's host name. Redirects are never followed.

A :class:`WebhookDispatcher` thread per process delivers what is due; :func:`deliver_due` does one
pass, for a scheduler to call.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import threading
import time
import uuid
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager, suppress
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

import httpcore
import httpx
from pydantic import BaseModel, Field

from pipeline.core.errors import ErrorCode, RecastError, backoff_delay
from pipeline.core.fsutil import atomic_write_bytes
from pipeline.core.job import utcnow
from pipeline.core.settings import Settings
from pipeline.core.urlpolicy import CheckedAddress, UrlPolicy
from pipeline.publish.signature import HEADER, sign

log = logging.getLogger("recast.webhooks")

USER_AGENT = "Recast-Webhooks/1.0"


class EventType(StrEnum):
    CARD_PREVIEW = "card.preview"
    CARD_PLAYABLE = "card.playable"
    CARD_READY = "card.ready"
    CARD_UPDATED = "card.updated"
    """A ready card changed without a job: its poster chosen by time."""
    JOB_FAILED = "job.failed"


class WebhookEvent(BaseModel):
    id: str = Field(default_factory=lambda: f"evt_{uuid.uuid4().hex}")
    type: EventType
    time: datetime = Field(default_factory=utcnow)
    job_id: str | None = None
    card_id: str | None = None
    card: dict[str, Any] | None = None
    error: dict[str, Any] | None = None

    def body(self) -> bytes:
        data = self.model_dump(mode="json", exclude_none=True)
        return json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode()


class Delivery(BaseModel):
    """One event for one URL, as kept in the outbox."""

    event_id: str
    event_type: EventType
    url: str
    body: str
    trusted: bool = True
    """False for a job's callback URL: checked against the URL policy before each attempt."""
    created: float
    deadline: float
    attempts: int = 0
    next_attempt: float
    last_error: str = ""


class Outbox:
    """The durable queue of deliveries under ``<workspace>/_webhooks``."""

    def __init__(self, root: Path):
        self.root = root
        self.pending = root / "outbox"
        self.dead = root / "dead"

    @classmethod
    def for_settings(cls, settings: Settings) -> Outbox:
        return cls(Path(settings.storage.workspace).resolve() / "_webhooks")

    def add(self, event: WebhookEvent, url: str, settings: Settings, *, trusted: bool) -> Path:
        now = time.time()
        delivery = Delivery(
            event_id=event.id,
            event_type=event.type,
            url=url,
            body=event.body().decode(),
            trusted=trusted,
            created=now,
            deadline=now + settings.publish.webhook_retry_span_s,
            next_attempt=now,
        )
        digest = hashlib.sha256(url.encode()).hexdigest()[:12]
        path = self.pending / f"{time.time_ns()}-{event.id}-{digest}.json"
        self._save(path, delivery)
        return path

    def _save(self, path: Path, delivery: Delivery) -> None:
        atomic_write_bytes(path, delivery.model_dump_json(indent=2).encode())

    def files(self) -> list[Path]:
        if not self.pending.is_dir():
            return []
        return sorted(p for p in self.pending.glob("*.json") if not p.name.startswith("."))

    def load(self, path: Path) -> Delivery | None:
        try:
            return Delivery.model_validate_json(path.read_bytes())
        except FileNotFoundError:
            return None
        except ValueError:
            log.error("unreadable webhook delivery %s moved to the dead letters", path.name)
            self._bury(path)
            return None

    def next_due(self) -> float | None:
        times = [d.next_attempt for p in self.files() if (d := self.load(p)) is not None]
        return min(times) if times else None

    def _bury(self, path: Path) -> None:
        self.dead.mkdir(parents=True, exist_ok=True)
        with suppress(FileNotFoundError):
            os.replace(path, self.dead / path.name)

    @contextmanager
    def claim(self, path: Path) -> Iterator[bool]:
        """Hold the delivery while it is sent (False: another process holds it or it is gone)."""
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            yield False
            return
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                yield False
                return
            yield path.exists()
        finally:
            os.close(fd)


class PinnedBackend(httpcore.SyncBackend):
    """Opens connections to one origin at addresses checked beforehand, never by its name."""

    def __init__(self, host: str, port: int, addresses: Sequence[CheckedAddress]):
        self.host = host.lower()
        self.port = port
        self.addresses = tuple(addresses)

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.NetworkStream:
        if host.lower() != self.host or port != self.port:
            raise httpcore.ConnectError(f"{host}:{port} is not the checked {self.host}:{self.port}")
        failure: Exception = httpcore.ConnectError(f"{host} has no checked address")
        for address in self.addresses:
            try:  # an IP literal: the socket layer does not look anything up
                return super().connect_tcp(address.ip, port, timeout, local_address, socket_options)
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                failure = exc
        raise failure


class PinnedTransport(httpx.HTTPTransport):
    """httpx's transport with a connection pool that connects through a :class:`PinnedBackend`
    (HTTPTransport takes no network backend, so its pool is replaced; TLS is unchanged: SNI
    and certificate checks use the URL's host name)."""

    def __init__(self, backend: PinnedBackend):
        ssl_context = httpx.create_ssl_context()
        super().__init__(verify=ssl_context)
        self._pool = httpcore.ConnectionPool(ssl_context=ssl_context, network_backend=backend)


def pinned_client(url: str, policy: UrlPolicy, timeout_s: float) -> httpx.Client:
    """A client for requests to ``url``'s origin only: its host is looked up once here, every
    answer must pass ``policy`` (else ``source.forbidden``; ``source.unavailable`` when it does
    not resolve), and connections go to those answers. No proxy, no redirects."""
    _name, port = policy.target(url)
    host = httpx.URL(url).raw_host.decode("ascii")  # the name httpcore will ask to connect to
    backend = PinnedBackend(host, port, policy.resolve(host, port))
    return httpx.Client(
        transport=PinnedTransport(backend),
        timeout=timeout_s,
        follow_redirects=False,
        trust_env=False,  # an environment proxy would connect by name, past the pinning
    )


class Sender:
    """Sends due deliveries from an outbox, one attempt each, and records the outcome."""

    def __init__(self, settings: Settings, outbox: Outbox | None = None):
        self.settings = settings
        self.outbox = outbox or Outbox.for_settings(settings)

    def deliver_due(self, now: float | None = None) -> int:
        """One pass: attempt every delivery that is due. Returns how many were attempted."""
        attempted = 0
        for path in self.outbox.files():
            delivery = self.outbox.load(path)
            if delivery is None or delivery.next_attempt > (now or time.time()):
                continue
            with self.outbox.claim(path) as mine:
                if not mine:
                    continue
                current = self.outbox.load(path)  # another process may have sent it meanwhile
                if current is None or current.attempts != delivery.attempts:
                    continue
                self._attempt(path, current)
                attempted += 1
        return attempted

    def _attempt(self, path: Path, delivery: Delivery) -> None:
        publish = self.settings.publish
        delivery.attempts += 1
        error = self._post(delivery)
        if error is None:
            path.unlink(missing_ok=True)
            log.info(
                "webhook %s %s delivered to %s (attempt %d)",
                delivery.event_type,
                delivery.event_id,
                delivery.url,
                delivery.attempts,
            )
            return
        delivery.last_error = error
        now = time.time()
        if error.startswith("refused:") or now >= delivery.deadline:
            log.error(
                "webhook %s %s to %s given up after %d attempts: %s",
                delivery.event_type,
                delivery.event_id,
                delivery.url,
                delivery.attempts,
                error,
            )
            self.outbox._save(path, delivery)
            self.outbox._bury(path)
            return
        delay = backoff_delay(
            delivery.attempts, publish.webhook_retry_base_s, publish.webhook_retry_max_delay_s
        )
        delivery.next_attempt = min(now + delay, delivery.deadline)
        log.warning(
            "webhook %s %s to %s failed (%s); attempt %d in %.1f s",
            delivery.event_type,
            delivery.event_id,
            delivery.url,
            error,
            delivery.attempts + 1,
            delivery.next_attempt - now,
        )
        self.outbox._save(path, delivery)

    def _post(self, delivery: Delivery) -> str | None:
        """None on a 2xx answer, else what went wrong ("refused: …" when never to retry)."""
        publish = self.settings.publish
        try:
            client = self._client(delivery)
        except httpx.InvalidURL as exc:
            return f"refused: {delivery.url!r} is not a valid URL ({exc})."
        except RecastError as error:
            if error.code is ErrorCode.SOURCE_FORBIDDEN:
                return f"refused: {error.message}"
            return error.message  # the host did not resolve: retried like a connection failure
        body = delivery.body.encode()
        headers = {
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
            "Recast-Event": str(delivery.event_type),
            "Recast-Event-Id": delivery.event_id,
            "Recast-Delivery-Attempt": str(delivery.attempts),
        }
        if publish.webhook_secret:
            headers[HEADER] = sign(publish.webhook_secret, body)
        try:
            with client:
                response = client.post(delivery.url, content=body, headers=headers)
        except httpx.TimeoutException:
            return "timeout"
        except httpx.HTTPError as exc:
            return f"{type(exc).__name__}: {exc}"
        if 200 <= response.status_code < 300:
            return None
        return f"HTTP {response.status_code}"

    def _client(self, delivery: Delivery) -> httpx.Client:
        """A plain client for a configured URL; a pinned one, checked by the URL policy, for a
        job's callback URL."""
        timeout_s = self.settings.publish.webhook_timeout_s
        if delivery.trusted:
            return httpx.Client(timeout=timeout_s, follow_redirects=False)
        policy = UrlPolicy.from_networks(self.settings.ingest.allowed_private_networks)
        return pinned_client(delivery.url, policy, timeout_s)


class WebhookDispatcher:
    """A thread delivering an outbox: what is due now, then whatever falls due later."""

    POLL_S = 5.0

    def __init__(self, settings: Settings):
        self.sender = Sender(settings)
        self.outbox = self.sender.outbox
        self.wake = threading.Event()
        self.stopping = threading.Event()
        self.idle = threading.Event()
        self.thread = threading.Thread(target=self._loop, name="webhooks", daemon=True)

    def start(self) -> WebhookDispatcher:
        self.thread.start()
        return self

    def kick(self) -> None:
        self.idle.clear()
        self.wake.set()

    def stop(self) -> None:
        self.stopping.set()
        self.wake.set()
        self.thread.join(timeout=30)

    def drain(self, timeout_s: float) -> bool:
        """Wait until nothing is due now (sent, or scheduled for later); False on timeout."""
        self.kick()
        return self.idle.wait(timeout_s)

    def _loop(self) -> None:
        while not self.stopping.is_set():
            self.wake.clear()
            try:
                while self.sender.deliver_due():
                    pass
            except Exception:  # the dispatcher must outlive one bad pass
                log.exception("webhook delivery pass failed")
            next_due = self.outbox.next_due()
            if not self.wake.is_set() and (next_due is None or next_due > time.time()):
                self.idle.set()
            wait = (
                self.POLL_S
                if next_due is None
                else max(0.0, min(self.POLL_S, next_due - time.time()))
            )
            self.wake.wait(wait)


_dispatchers: dict[Path, WebhookDispatcher] = {}
_dispatchers_lock = threading.Lock()


def dispatcher(settings: Settings) -> WebhookDispatcher:
    """This process's dispatcher for the settings' outbox, started on first use (it resumes
    whatever an earlier process left in the outbox)."""
    root = Outbox.for_settings(settings).root
    with _dispatchers_lock:
        running = _dispatchers.get(root)
        if running is None or not running.thread.is_alive():
            running = WebhookDispatcher(settings).start()
            _dispatchers[root] = running
        else:
            running.sender.settings = settings
        return running


def stop_dispatchers() -> None:
    with _dispatchers_lock:
        for running in _dispatchers.values():
            running.stop()
        _dispatchers.clear()


def targets(settings: Settings, callback_url: str | None) -> list[tuple[str, bool]]:
    """(URL, trusted) pairs: the configured URLs, and the job's callback URL (not trusted)."""
    found = [(url, True) for url in settings.publish.webhook_urls]
    if callback_url and callback_url not in settings.publish.webhook_urls:
        found.append((callback_url, False))
    return found


def notify(settings: Settings, event: WebhookEvent, callback_url: str | None = None) -> int:
    """Queue ``event`` for every target and wake the dispatcher. Returns the number queued."""
    outbox = Outbox.for_settings(settings)
    queued = 0
    for url, trusted in targets(settings, callback_url):
        outbox.add(event, url, settings, trusted=trusted)
        queued += 1
    if queued:
        if not settings.publish.webhook_secret:
            log.warning("publish.webhook_secret is empty: webhooks go out unsigned")
        dispatcher(settings).kick()
    return queued


def deliver_due(settings: Settings) -> int:
    """One delivery pass over the outbox (for a periodic task); returns attempts made."""
    return Sender(settings).deliver_due()
