"""The host gate: source hosts that refuse us are backed off as a whole, and each site's
downloads are limited in number.

A stage that fetches from a source (ingest) passes the gate of the source's host first
(:class:`HostPass`), and tells it how the fetch went:

- **refusals**: HTTP 401/403, a bot check, HTTP 429 (:class:`Refusal`, raised by
  ``pipeline.tools.ytdlp.classify``). Refusals of ``sources.backoff.burst`` different jobs
  within ``window_s`` pause the host for ``pause_base_s``, doubling with each pause that no
  success followed, up to ``pause_max_s``; a 429's Retry-After pauses it at once for that long.
  Different jobs, not refusals: one job whose own URL is refused again and again (a deleted
  video behind a 403) never pauses a host that serves every other job.
- **waiting**: while the host is paused, a job that reaches the gate does not fetch; the stage
  raises :class:`HostWait` (``source.host_paused``), and the executor puts it back to pending
  for the time left without spending an attempt (:func:`pipeline.engine.jobflow.on_stage_waiting`).
  A job refused while the host is not paused waits ``pause_base_s``, and that wait spends an
  attempt (a video refused to everyone fails with ``source.blocked`` once the executor's
  attempts are spent). A job that would wait past ``max_wait_s`` in all fails with
  ``source.blocked``.
- **the probe**: once a pause has ended, one job tries the host first; the others look again
  every ``probe_interval_s``. Its success (the whole fetch went through) resumes the host for
  everyone and forgets the pauses; its refusal pauses the host again, for longer.
- **download slots**: a site with ``max_concurrent_downloads`` lets that many jobs fetch from
  it at once; the others wait (``probe_interval_s``), uncounted and without a deadline. Slots
  and the probe are leases, renewed while the fetch runs, so a killed worker's expire.

The host of a URL (:func:`host_key`) is its ``sources.sites`` entry's first host when one
covers it (a site and its media CDN share one gate), else its host name without ``www.``.

One host's state is a :class:`HostState`, changed only through its pure methods; the
:class:`InMemoryHostGate` keeps them in a dict under a lock (the local executor), the Redis
gate (``pipeline.engine.distributed.hostgate``) as JSON in a key changed in WATCH/MULTI
transactions, in Redis server time, so every worker sees the same pauses and slots.
"""

from __future__ import annotations

import logging
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from types import TracebackType
from typing import TypeVar
from urllib.parse import urlsplit

from pydantic import BaseModel, Field

from pipeline.core.errors import ErrorCode, RecastError
from pipeline.core.settings import HostBackoffSettings, SourcesSettings

log = logging.getLogger("recast.hostgate")

T = TypeVar("T")

LEASE_S = 60.0
"""How long a download slot or the probe is held without being renewed (a dead holder's
expire after this)."""
RENEW_S = 15.0
"""How often a running fetch renews its slot and probe."""


def host_key(url: str, sources: SourcesSettings) -> str | None:
    """The gate a URL goes through: its site entry's first host, else its host name (lower
    case, without ``www.``); None for a URL without a host."""
    try:
        host = urlsplit(url).hostname
    except ValueError:
        return None
    if not host:
        return None
    site = sources.site_for(host)
    if site.hosts:
        return site.hosts[0]
    return host.rstrip(".").removeprefix("www.")


def clock(moment: float) -> str:
    """A moment (Unix seconds) as the time of day people read in details: ``10:32:05 UTC``."""
    return datetime.fromtimestamp(moment, UTC).strftime("%H:%M:%S UTC")


class WaitReason(StrEnum):
    PAUSED = "paused"
    """The host is paused after refusals."""
    PROBING = "probing"
    """The pause is over and another job is trying the host first."""
    REFUSED = "refused"
    """This job was refused; the host is not paused (not yet)."""
    BUSY = "busy"
    """Every download slot of the site is taken."""


@dataclass(frozen=True)
class Wait:
    """Why a job may not fetch from a host now, and when to look again."""

    host: str
    reason: WaitReason
    now: float
    until: float
    """When to look again (Unix seconds, the gate's clock)."""
    cause: str = ""
    """The last refusal: ``HTTP 403``, ``bot check``..."""
    refusals: int = 0
    """The refusals that paused the host (or, refused, those in the window so far)."""
    downloads: int = 0
    """Downloads running from the site (busy)."""

    @property
    def delay_s(self) -> float:
        return max(0.0, self.until - self.now)

    @property
    def detail(self) -> str:
        """What the waiting stage shows (``StageState.detail``)."""
        at = clock(self.until)
        if self.reason is WaitReason.PAUSED:
            return f"waiting: {self.host} paused until {at} ({self.cause} ×{self.refusals})"
        if self.reason is WaitReason.PROBING:
            return f"waiting: {self.host} is being tried by another job; next look {at}"
        if self.reason is WaitReason.REFUSED:
            return f"waiting: {self.host} refused this job ({self.cause}); next try {at}"
        return (
            f"waiting: every download slot of {self.host} is taken ({self.downloads}); "
            f"next look {at}"
        )


@dataclass(frozen=True)
class Admitted:
    """A job may fetch from the host now."""

    probe: bool = False
    """It is the first after a pause: its outcome decides for the others."""
    slot: bool = False
    """It holds one of the site's download slots."""


class HostStatus(BaseModel):
    """A host the ops views show: paused, or being tried again after a pause."""

    host: str
    state: WaitReason
    """``paused`` or ``probing``."""
    paused_until: datetime
    cause: str
    refusals: int
    pauses: int
    """Pauses since the host last answered (each one twice as long as the one before)."""


class HostState(BaseModel):
    """One host's state, the same in memory and in Redis (as JSON). The methods are the
    gate's rules; ``now`` is the gate's clock (Redis server time in a cluster)."""

    refusals: dict[str, float] = Field(default_factory=dict)
    """Job -> its last refusal within the window."""
    paused_until: float = 0.0
    """Unix seconds; 0 when the host answered since its last pause (or has never paused)."""
    paused_after: int = 0
    pauses: int = 0
    cause: str = ""
    probe: str | None = None
    probe_until: float = 0.0
    slots: dict[str, float] = Field(default_factory=dict)
    """Job -> when its download slot's lease ends."""

    def admit(
        self, host: str, holder: str, now: float, policy: HostBackoffSettings, max_slots: int
    ) -> Wait | Admitted:
        self._tidy(now, policy)
        if self.paused_until > now:
            return self._paused(host, now)
        probe = False
        if self.paused_until > 0:
            if self.probe not in (None, holder):
                return self._wait(host, WaitReason.PROBING, now, now + policy.probe_interval_s)
            self.probe, self.probe_until = holder, now + LEASE_S
            probe = True
        if max_slots > 0:
            if holder not in self.slots and len(self.slots) >= max_slots:
                if probe:
                    self.probe = None
                return self._wait(host, WaitReason.BUSY, now, now + policy.probe_interval_s)
            self.slots[holder] = now + LEASE_S
        return Admitted(probe=probe, slot=max_slots > 0)

    def refuse(
        self,
        host: str,
        holder: str,
        now: float,
        policy: HostBackoffSettings,
        cause: str,
        retry_after: float | None,
    ) -> Wait:
        self._tidy(now, policy)
        self.cause = cause
        if self.paused_until > now:  # a fetch begun before the pause: the same refusal again
            return self._paused(host, now)
        self.refusals[holder] = now
        pause_s = 0.0
        if self.probe == holder or len(self.refusals) >= policy.burst:
            pause_s = min(policy.pause_max_s, policy.pause_base_s * 2.0 ** min(self.pauses, 32))
            self.pauses += 1
        if retry_after is not None and retry_after > 0:
            pause_s = max(pause_s, min(retry_after, policy.pause_max_s))
        if pause_s <= 0:
            return self._wait(host, WaitReason.REFUSED, now, now + policy.pause_base_s)
        self.paused_until = now + pause_s
        # Counted since the host last answered: a refused probe adds to the refusals before it.
        self.paused_after = (self.paused_after if self.pauses > 1 else 0) + len(self.refusals)
        self.refusals = {}
        self.probe = None
        return self._paused(host, now)

    def succeed(self, holder: str, now: float, policy: HostBackoffSettings) -> None:
        """The holder's fetch went through: the host answers again (unless it was paused
        meanwhile, by refusals that came after this fetch began)."""
        self._tidy(now, policy)
        if self.paused_until > now:
            return
        self.refusals = {}
        self.paused_until = 0.0
        self.paused_after = 0
        self.pauses = 0
        self.cause = ""
        self.probe = None

    def leave(self, holder: str) -> None:
        """The holder's fetch ended, whatever its outcome: its slot and probe are free."""
        self.slots.pop(holder, None)
        if self.probe == holder:
            self.probe = None

    def renew(self, holder: str, now: float) -> None:
        if holder in self.slots:
            self.slots[holder] = now + LEASE_S
        if self.probe == holder:
            self.probe_until = now + LEASE_S

    def idle(self) -> bool:
        """Nothing worth keeping: the host is as good as never seen."""
        return not (self.refusals or self.slots or self.paused_until or self.probe)

    def keep_for(self, now: float, policy: HostBackoffSettings) -> float:
        """How long the state matters if nothing touches it again (its Redis key's TTL)."""
        return max(0.0, self.paused_until - now) + policy.window_s + LEASE_S

    def status(self, host: str, now: float) -> HostStatus | None:
        if not self.paused_until:
            return None
        return HostStatus(
            host=host,
            state=WaitReason.PAUSED if self.paused_until > now else WaitReason.PROBING,
            paused_until=datetime.fromtimestamp(self.paused_until, UTC),
            cause=self.cause,
            refusals=self.paused_after,
            pauses=self.pauses,
        )

    def _tidy(self, now: float, policy: HostBackoffSettings) -> None:
        """Forget what has expired: old refusals, dead holders' leases, and a pause that ended
        a whole window ago without anyone trying the host."""
        self.refusals = {h: t for h, t in self.refusals.items() if t > now - policy.window_s}
        self.slots = {h: t for h, t in self.slots.items() if t > now}
        if self.probe is not None and self.probe_until <= now:
            self.probe = None
        if 0 < self.paused_until <= now - policy.window_s and self.probe is None:
            self.paused_until = 0.0
            self.paused_after = 0
            self.pauses = 0

    def _paused(self, host: str, now: float) -> Wait:
        return Wait(
            host,
            WaitReason.PAUSED,
            now,
            self.paused_until,
            cause=self.cause,
            refusals=self.paused_after,
        )

    def _wait(self, host: str, reason: WaitReason, now: float, until: float) -> Wait:
        return Wait(
            host,
            reason,
            now,
            until,
            cause=self.cause,
            refusals=len(self.refusals),
            downloads=len(self.slots),
        )


# -- errors ------------------------------------------------------------------------------------


class Refusal(RecastError):
    """A source refused us (HTTP 401/403, a bot check: ``source.blocked``; HTTP 429:
    ``network.rate_limited``): what the host gate counts."""

    def __init__(
        self, code: ErrorCode, message: str, *, cause: str, retry_after: float | None = None
    ):
        super().__init__(code, message, retry_after=retry_after)
        self.cause = cause


class HostWait(RecastError):
    """A stage may not fetch from its source's host now: the job waits, uncounted
    (``source.host_paused``; ``retry_after`` is the wait)."""

    def __init__(self, wait: Wait):
        super().__init__(ErrorCode.SOURCE_HOST_PAUSED, wait.detail, retry_after=wait.delay_s)
        self.wait = wait

    @property
    def blocked(self) -> bool:
        """The host refuses us (a deadline applies); not merely busy with other downloads."""
        return self.wait.reason is not WaitReason.BUSY

    @property
    def refused_alone(self) -> bool:
        """This job was refused and its host is not paused: the wait spends an attempt."""
        return self.wait.reason is WaitReason.REFUSED

    def refused_every_time(self) -> RecastError:
        """The error of a job refused on every attempt by a host that answers other jobs."""
        cause = f" ({self.wait.cause})" if self.wait.cause else ""
        return RecastError(
            ErrorCode.SOURCE_BLOCKED,
            f"{self.wait.host} refused this source on every attempt{cause}; it is not "
            "refusing other jobs, so the video itself may be private or removed.",
        )

    def gave_up(self, max_wait_s: float) -> RecastError:
        """The error of a job that waited for the host too long."""
        cause = f" ({self.wait.cause})" if self.wait.cause else ""
        return RecastError(
            ErrorCode.SOURCE_BLOCKED,
            f"{self.wait.host} kept refusing us{cause} for over {max_wait_s:.0f} s "
            "(sources.backoff.max_wait_s).",
        )


# -- gates -------------------------------------------------------------------------------------


class HostGate(ABC):
    """The gates of every source host, under one backoff policy. Subclasses keep the states."""

    def __init__(self, policy: HostBackoffSettings):
        self.policy = policy

    @abstractmethod
    def _change(self, host: str, change: Callable[[HostState, float], T]) -> T:
        """Apply ``change(state, now)`` to ``host``'s state atomically; its result."""

    @abstractmethod
    def _states(self) -> tuple[float, dict[str, HostState]]:
        """The gate's clock now, and every host's state."""

    def admit(self, host: str, holder: str, max_slots: int = 0) -> Wait | Admitted:
        """May ``holder`` fetch from ``host`` now? Admitted, it holds the probe (after a pause)
        and a download slot (``max_slots`` > 0) until :meth:`leave`."""
        return self._change(
            host, lambda state, now: state.admit(host, holder, now, self.policy, max_slots)
        )

    def refuse(self, host: str, holder: str, cause: str, retry_after: float | None) -> Wait:
        """``host`` refused ``holder`` (``cause``: ``HTTP 403``...): how long it waits now."""
        return self._change(
            host,
            lambda state, now: state.refuse(host, holder, now, self.policy, cause, retry_after),
        )

    def succeed(self, host: str, holder: str) -> None:
        self._change(host, lambda state, now: state.succeed(holder, now, self.policy))

    def leave(self, host: str, holder: str) -> None:
        self._change(host, lambda state, now: state.leave(holder))

    def renew(self, host: str, holder: str) -> None:
        self._change(host, lambda state, now: state.renew(holder, now))

    def hosts(self) -> list[HostStatus]:
        """Hosts paused now, or being tried again after a pause, by name."""
        now, states = self._states()
        found = [state.status(host, now) for host, state in states.items()]
        return sorted((s for s in found if s is not None), key=lambda s: s.host)


class InMemoryHostGate(HostGate):
    """The gates of one process (the local executor): states in a dict, under a lock."""

    def __init__(
        self, policy: HostBackoffSettings | None = None, clock: Callable[[], float] = time.time
    ):
        super().__init__(policy or HostBackoffSettings())
        self._clock = clock
        self._lock = threading.Lock()
        self._hosts: dict[str, HostState] = {}

    def _change(self, host: str, change: Callable[[HostState, float], T]) -> T:
        with self._lock:
            state = self._hosts.get(host) or HostState()
            result = change(state, self._clock())
            if state.idle():
                self._hosts.pop(host, None)
            else:
                self._hosts[host] = state
            return result

    def _states(self) -> tuple[float, dict[str, HostState]]:
        with self._lock:
            return self._clock(), {h: s.model_copy(deep=True) for h, s in self._hosts.items()}


# -- a stage's passage -------------------------------------------------------------------------


class HostPass:
    """One fetch through the gate of its URL's host, as a ``with`` block around it:

    entering asks the gate (raising :class:`HostWait` when the job must wait); while the block
    runs its slot and probe are renewed; leaving tells the gate the outcome: a success, or a
    :class:`Refusal`, which becomes the :class:`HostWait` raised in its place (with the
    backoff off, the refusal itself propagates). Every other error leaves the gate as it was.
    A URL without a host (a local file) passes freely. A fetch that downloads no media (a
    playlist's flat extraction: ``download=False``) takes no download slot.
    """

    def __init__(
        self,
        gate: HostGate,
        url: str,
        sources: SourcesSettings,
        holder: str,
        *,
        download: bool = True,
    ):
        self.gate = gate
        self.holder = holder
        self.host = host_key(url, sources)
        self.max_slots = sources.site_for_url(url).max_concurrent_downloads if download else 0
        self.admitted: Admitted | None = None
        self._stop = threading.Event()
        self._renewer: threading.Thread | None = None

    def __enter__(self) -> HostPass:
        if self.host is None:
            return self
        verdict = self.gate.admit(self.host, self.holder, self.max_slots)
        if isinstance(verdict, Wait):
            raise HostWait(verdict)
        self.admitted = verdict
        if verdict.probe or verdict.slot:
            self._renewer = threading.Thread(
                target=self._renew, name=f"hostpass-{self.host}", daemon=True
            )
            self._renewer.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self.host is None:
            return
        self._stop.set()
        if self._renewer is not None:
            self._renewer.join(timeout=5)
        try:
            if exc is None:
                self.gate.succeed(self.host, self.holder)
            elif isinstance(exc, Refusal) and self.gate.policy.enabled:
                wait = self.gate.refuse(self.host, self.holder, exc.cause, exc.retry_after)
                raise HostWait(wait) from exc
        finally:
            self.gate.leave(self.host, self.holder)

    def _renew(self) -> None:
        assert self.host is not None
        while not self._stop.wait(RENEW_S):
            try:
                self.gate.renew(self.host, self.holder)
            except Exception:  # a Redis blip: the lease outlives a few missed renewals
                log.warning("could not renew the lease on %s", self.host, exc_info=True)
