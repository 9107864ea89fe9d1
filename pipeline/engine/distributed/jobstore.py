"""The durable job store in Redis: jobs, stage states, locks, heartbeats and cancel flags.

Recast owns this state (Celery's result store only holds task return values). A job is one
JSON document (:class:`JobRecord`: the :class:`~pipeline.core.job.JobState` plus what the
distributed executor needs per stage) changed only inside optimistic transactions
(WATCH/MULTI), so concurrent stages of one job never lose each other's updates. Every
operation is idempotent and retried while Redis is unreachable (``cluster.redis_outage_s``):
a Redis restart pauses the workers, it does not fail their jobs.

The keys it uses (the job, its indexes, locks, heartbeats, cancel flags, the outbox, workers'
presence, the events stream and the ``stats`` counters) are laid out, with every other Redis
key, in :mod:`pipeline.engine.distributed.keys`; the counters are named in
:mod:`pipeline.engine.distributed.counters`.

Heartbeats are stamped and compared in Redis server time, so the workers' clocks need not
agree; outbox due times are the writer's clock (skew only shifts a retry's delay).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any, TypeVar, cast

import redis
from pydantic import BaseModel, Field
from redis.backoff import NoBackoff
from redis.retry import Retry

from pipeline.core.errors import ErrorCode, RecastError
from pipeline.core.job import JobSpec, JobState, JobStatus, StageState, utcnow
from pipeline.core.settings import ClusterSettings
from pipeline.engine.distributed.counters import JobCounter
from pipeline.engine.distributed.keys import RedisKeys, parse_stage_member, stage_member

log = logging.getLogger("recast.jobstore")

T = TypeVar("T")

REDIS_DOWN: tuple[type[Exception], ...] = (
    redis.ConnectionError,
    redis.TimeoutError,
    redis.exceptions.ReadOnlyError,
    redis.exceptions.TryAgainError,
)

EVENTS_MAXLEN = 10_000
CANCEL_TTL_S = 7 * 86400

_RENEW = """
local current = redis.call('GET', KEYS[1])
if current == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
elseif not current then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
else
  return 0
end
local t = redis.call('TIME')
redis.call('ZADD', KEYS[2], tonumber(t[1]) + tonumber(t[2]) / 1000000, ARGV[3])
return 1
"""

_CLAIM = """
local score = redis.call('ZSCORE', KEYS[1], ARGV[1])
if score and tonumber(score) <= tonumber(ARGV[2]) then
  redis.call('ZADD', KEYS[1], ARGV[3], ARGV[1])
  return 1
end
return 0
"""

_UNLESS_CHANGED = """
local score = redis.call('ZSCORE', KEYS[1], ARGV[1])
if score and tonumber(score) == tonumber(ARGV[2]) then
  return redis.call('ZREM', KEYS[1], ARGV[1])
end
return 0
"""

_HOLD = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return 0
end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
redis.call('ZADD', KEYS[2], 'XX', ARGV[3], ARGV[4])
return 1
"""

_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


class StoreUnavailable(RecastError):
    """Redis stayed unreachable for longer than ``cluster.redis_outage_s``."""

    def __init__(self, message: str):
        super().__init__(ErrorCode.SERVICE_UNAVAILABLE, message)


class JobEvent(StrEnum):
    """The kinds of entry in the ``events`` stream (the entry's ``type`` field)."""

    JOB_SUBMITTED = "job.submitted"
    JOB_RERUN = "job.rerun"
    JOB_SUCCEEDED = "job.succeeded"
    JOB_FAILED = "job.failed"
    JOB_CANCELLED = "job.cancelled"
    JOB_RETRIED = "job.retried"
    STAGE_STARTED = "stage.started"
    STAGE_FINISHED = "stage.finished"
    STAGE_RETRYING = "stage.retrying"
    STAGE_WAITING = "stage.waiting"
    """The stage's source host is paused: it waits, uncounted (pipeline.core.hostgate)."""
    STAGE_FAILED = "stage.failed"
    STAGE_CANCELLED = "stage.cancelled"
    STAGE_WORKER_LOST = "stage.worker_lost"

    @classmethod
    def job_ended(cls, status: JobStatus) -> JobEvent:
        """The event of a job that ended in ``status`` (succeeded, failed or cancelled)."""
        return {
            JobStatus.SUCCEEDED: cls.JOB_SUCCEEDED,
            JobStatus.FAILED: cls.JOB_FAILED,
            JobStatus.CANCELLED: cls.JOB_CANCELLED,
        }[status]


class StageRuntime(BaseModel):
    """What the distributed executor keeps per stage besides its :class:`StageState`."""

    task_id: str | None = None
    worker: str | None = None
    token: str | None = None
    """The lock token of the attempt that is running (or ran last)."""
    lost: int = 0
    """Runs that died with their worker (counted by the reaper)."""
    completions: int = 0
    """Runs that finished the stage's work (the stage function returned and was committed)."""
    queued_at: datetime | None = None
    reserved_by: str | None = None
    """The worker that took the stage's message and has not started it yet."""
    fresh: bool = False
    """Run again from scratch: outputs of an earlier run are discarded first (forced jobs)."""


EXPANSION_STAGE = "expand"
"""Where a job's expansion stands in for a stage: its outbox entry (``<id>/expand``) and the
lock of a run in flight (``lock:<id>:expand``). No stage of a DAG may take this name."""


class Expansion(BaseModel):
    """A submitted URL that may stand for a playlist: a worker looks it up before any stage is
    scheduled (:mod:`pipeline.engine.distributed.expansion`). While the job awaits it, its
    outbox entry (:data:`EXPANSION_STAGE`) says when to hand it to a worker (again)."""

    playlist: bool | None = None
    """None until a worker has looked; then whether the URL was a playlist."""
    children: list[str] = Field(default_factory=list)
    """The jobs made for the playlist's entries, in the playlist's order."""
    force: bool = False
    """Submitted with ``force``: the job, or its entries' jobs, run again from scratch."""
    attempts: int = 0
    """Runs that looked the URL up (a wait for a paused host gives its attempt back)."""
    running: bool = False
    """A run has started and recorded no outcome yet (found so by the next run: it died)."""
    worker: str | None = None
    """The worker of the run that started last."""
    lost: int = 0
    """Runs that died with their worker."""
    sends: int = 0
    """Messages sent since a run last started: each one waits twice as long to be re-sent."""
    task_id: str | None = None
    """The last ``recast.expand`` message sent."""
    detail: str = ""
    """Why it waits (a paused host, a retry), for people."""
    waiting_since: datetime | None = None
    """When it first waited for a refusing host (``sources.backoff.max_wait_s`` counts from it)."""


class JobRecord(BaseModel):
    """A job as the store keeps it."""

    state: JobState
    runtime: dict[str, StageRuntime] = Field(default_factory=dict)
    media_duration: float | None = None
    expansion: Expansion | None = None
    """Set for a job submitted as a URL through the producer (workers/producer.py)."""

    @property
    def id(self) -> str:
        return self.state.id

    @property
    def awaiting_expansion(self) -> bool:
        """The job is active and waits for a worker to look its URL up."""
        return (
            self.expansion is not None
            and self.expansion.playlist is None
            and self.state.status in (JobStatus.QUEUED, JobStatus.RUNNING)
        )

    def stage_runtime(self, stage: str) -> StageRuntime:
        """What the distributed executor keeps for ``stage`` (made on first use)."""
        return self.runtime.setdefault(stage, StageRuntime())

    def stage(self, stage: str) -> StageState:
        return self.state.stages.setdefault(stage, StageState())


@dataclass
class Effects:
    """What a change does besides rewriting the record, in the same transaction."""

    dispatch: dict[str, float] = field(default_factory=dict)
    """Stages to hand to the broker, each with a delay in seconds."""
    undispatch: list[str] = field(default_factory=list)
    events: list[dict[str, str]] = field(default_factory=list)
    counters: dict[str, int] = field(default_factory=dict)
    clear_heartbeat: list[str] = field(default_factory=list)

    def event(self, kind: JobEvent, job: JobRecord, stage: str = "", **extra: str) -> None:
        self.events.append(
            {
                "type": str(kind),
                "job": job.id,
                "stage": stage,
                "status": str(job.state.status),
                **extra,
            }
        )

    def count(self, name: str, by: int = 1) -> None:
        self.counters[name] = self.counters.get(name, 0) + by


Change = Callable[[JobRecord], Effects | None]
"""Changes a record in place; returns its effects, or None to write nothing."""


@dataclass(frozen=True)
class Page:
    jobs: list[JobRecord]
    next_cursor: int | None


@dataclass(frozen=True)
class JobPosition:
    """A place in a listing: a job's creation time (its score in the indexes) and its id."""

    created: float
    job_id: str


@dataclass(frozen=True)
class KeysetPage:
    jobs: list[JobRecord]
    next: JobPosition | None
    """Where the next page starts (the last job's position); None on the last page."""


def connect(url: str, connect_timeout_s: float = 3.0) -> redis.Redis:
    """A client without its own retries: the store retries whole operations instead."""
    client: redis.Redis = redis.Redis.from_url(
        url,
        socket_timeout=10,
        socket_connect_timeout=connect_timeout_s,
        health_check_interval=15,
        retry=Retry(NoBackoff(), 0),
    )
    return client


class JobStore:
    """The Redis job store. Safe to share between threads of one process."""

    def __init__(self, settings: ClusterSettings, client: redis.Redis | None = None):
        self.settings = settings
        self.redis = client or connect(settings.redis_url)
        self.prefix = settings.key_prefix
        self.keys = RedisKeys(settings.key_prefix)
        self._renew = self.redis.register_script(_RENEW)
        self._release = self.redis.register_script(_RELEASE)
        self._hold = self.redis.register_script(_HOLD)
        self._claim = self.redis.register_script(_CLAIM)
        self._unless_changed = self.redis.register_script(_UNLESS_CHANGED)

    @classmethod
    def without_retries(cls, settings: ClusterSettings) -> JobStore:
        """A store whose operations fail at once (``StoreUnavailable``, ``service.unavailable``)
        while Redis is unreachable, for callers that must answer quickly (the producer API)
        instead of waiting an outage out."""
        quick = settings.model_copy(update={"redis_outage_s": 0.0})
        return cls(quick, connect(settings.redis_url, connect_timeout_s=1.0))

    # -- retries -----------------------------------------------------------------------------

    def retrying(self, operation: Callable[[], T], what: str = "job store") -> T:
        """Run ``operation`` (idempotent), retrying while Redis is unreachable."""
        deadline = time.monotonic() + self.settings.redis_outage_s
        delay = 0.05
        while True:
            try:
                return operation()
            except REDIS_DOWN as exc:
                if time.monotonic() >= deadline:
                    raise StoreUnavailable(f"Redis is unreachable ({what}): {exc}") from exc
                log.warning("Redis unreachable (%s), retrying: %s", what, exc)
                time.sleep(delay)
                delay = min(delay * 2, 1.0)

    def ping(self) -> bool:
        try:
            return bool(self.redis.ping())
        except (redis.RedisError, OSError):
            return False

    def server_time(self) -> float:
        seconds, micros = _list(self.retrying(self.redis.time, "time"))
        return float(seconds) + float(micros) / 1_000_000

    # -- jobs --------------------------------------------------------------------------------

    def create(self, spec: JobSpec, stages: list[str], change: Change) -> tuple[JobRecord, bool]:
        """The job for ``spec``: created (then ``change`` runs on it) unless it exists."""
        record = JobRecord(state=JobState.new(spec))
        for name in stages:
            record.stage(name)
            record.stage_runtime(name)

        def create_once() -> tuple[JobRecord, bool]:
            key = self.keys.job(record.id)
            with self.redis.pipeline() as pipe:
                while True:
                    try:
                        pipe.watch(key)  # type: ignore[no-untyped-call]
                        raw = pipe.get(key)
                        if raw is not None:
                            pipe.unwatch()
                            return JobRecord.model_validate_json(raw), False
                        fresh = record.model_copy(deep=True)
                        effects = change(fresh) or Effects()
                        effects.count(JobCounter.SUBMITTED)
                        effects.event(JobEvent.JOB_SUBMITTED, fresh)
                        pipe.multi()
                        pipe.set(key, fresh.model_dump_json())
                        self._index(pipe, fresh, None)
                        self._apply(pipe, fresh, effects)
                        pipe.execute()
                        return fresh, True
                    except redis.WatchError:
                        continue

        return self.retrying(create_once, "create job")

    def get(self, job_id: str) -> JobRecord | None:
        raw = self.retrying(lambda: self.redis.get(self.keys.job(job_id)), "get job")
        return None if raw is None else JobRecord.model_validate_json(cast(bytes, raw))

    def get_many(self, job_ids: list[str]) -> list[JobRecord]:
        if not job_ids:
            return []
        raws = self.retrying(
            lambda: self.redis.mget([self.keys.job(i) for i in job_ids]), "get jobs"
        )
        return [JobRecord.model_validate_json(raw) for raw in raws if raw is not None]

    def transact(self, job_id: str, change: Change, *, retry: bool = True) -> JobRecord | None:
        """Apply ``change`` atomically (it may run more than once); None if no such job.

        With ``retry`` false, one attempt: a Redis outage raises at once (best-effort writes).
        """

        def once() -> JobRecord | None:
            key = self.keys.job(job_id)
            with self.redis.pipeline() as pipe:
                while True:
                    try:
                        pipe.watch(key)  # type: ignore[no-untyped-call]
                        raw = pipe.get(key)
                        if raw is None:
                            pipe.unwatch()
                            return None
                        record = JobRecord.model_validate_json(raw)
                        before = record.state.status
                        effects = change(record)
                        if effects is None:
                            pipe.unwatch()
                            return record
                        record.state.updated_at = utcnow()
                        pipe.multi()
                        pipe.set(key, record.model_dump_json())
                        self._index(pipe, record, before)
                        self._apply(pipe, record, effects)
                        pipe.execute()
                        return record
                    except redis.WatchError:
                        continue

        return self.retrying(once, f"update job {job_id}") if retry else once()

    def _index(self, pipe: Any, record: JobRecord, before: JobStatus | None) -> None:
        status = record.state.status
        created = record.state.created_at.timestamp()
        if before is None:
            pipe.zadd(self.keys.jobs, {record.id: created})
            if record.state.spec.event:
                pipe.zadd(self.keys.jobs_by_event(record.state.spec.event), {record.id: created})
        if before != status:
            if before is not None:
                pipe.zrem(self.keys.jobs_by_status(before), record.id)
            pipe.zadd(self.keys.jobs_by_status(status), {record.id: created})

    def _apply(self, pipe: Any, record: JobRecord, effects: Effects) -> None:
        if effects.dispatch:
            now = time.time()
            pipe.zadd(
                self.keys.outbox,
                {
                    stage_member(record.id, stage): now + delay
                    for stage, delay in effects.dispatch.items()
                },
            )
        for stage in effects.undispatch:
            pipe.zrem(self.keys.outbox, stage_member(record.id, stage))
        for stage in effects.clear_heartbeat:
            pipe.zrem(self.keys.heartbeats, stage_member(record.id, stage))
        for event in effects.events:
            event = {**event, "time": utcnow().isoformat()}
            pipe.xadd(self.keys.events, event, maxlen=EVENTS_MAXLEN, approximate=True)
        for name, by in effects.counters.items():
            pipe.hincrby(self.keys.stats, name, by)

    def list_jobs(
        self,
        *,
        status: JobStatus | None = None,
        event: str | None = None,
        since: datetime | None = None,
        cursor: int = 0,
        limit: int = 50,
    ) -> Page:
        """Jobs newest first, filtered; ``cursor`` is where the previous page stopped."""
        if status is not None:
            base = self.keys.jobs_by_status(status)
        elif event is not None:
            base = self.keys.jobs_by_event(event)
        else:
            base = self.keys.jobs
        low: float | str = since.timestamp() if since is not None else "-inf"
        found: list[JobRecord] = []
        offset = cursor
        chunk = max(limit, 50)
        while len(found) < limit:
            ids: list[Any] = self.retrying(
                lambda o=offset: _list(  # type: ignore[misc]
                    self.redis.zrevrangebyscore(base, "+inf", low, start=o, num=chunk)
                ),
                "list jobs",
            )
            if not ids:
                return Page(found, None)
            for index, raw_id in enumerate(ids):
                record = self.get(_text(raw_id))
                if record is None:
                    continue
                if event is not None and record.state.spec.event != event:
                    continue
                found.append(record)
                if len(found) == limit:
                    return Page(found, offset + index + 1)
            offset += len(ids)
        return Page(found, offset)

    def page_jobs(
        self,
        *,
        status: JobStatus | None = None,
        event: str | None = None,
        since: datetime | None = None,
        after: JobPosition | None = None,
        limit: int = 50,
    ) -> KeysetPage:
        """Jobs newest first, filtered, from just after ``after``: a keyset page, so jobs
        created meanwhile (newer than any position) neither repeat nor hide a job."""
        if status is not None:
            base = self.keys.jobs_by_status(status)
        elif event is not None:
            base = self.keys.jobs_by_event(event)
        else:
            base = self.keys.jobs
        low: float | str = since.timestamp() if since is not None else "-inf"
        high: float | str = after.created if after is not None else "+inf"
        found: list[tuple[JobRecord, JobPosition]] = []
        offset, chunk = 0, max(limit + 1, 50)
        while len(found) <= limit:
            entries: list[Any] = self.retrying(
                lambda o=offset: _list(  # type: ignore[misc]
                    self.redis.zrevrangebyscore(
                        base, high, low, start=o, num=chunk, withscores=True
                    )
                ),
                "list jobs",
            )
            if not entries:
                break
            offset += len(entries)
            positions = [JobPosition(float(score), _text(member)) for member, score in entries]
            if after is not None:  # equal scores come in descending id order
                positions = [
                    p for p in positions if p.created < after.created or p.job_id < after.job_id
                ]
            if not positions:
                continue
            keys = [self.keys.job(p.job_id) for p in positions]
            raws = self.retrying(lambda k=keys: self.redis.mget(k), "list jobs")  # type: ignore[misc]
            for position, raw in zip(positions, _list(raws), strict=True):
                if raw is None:
                    continue
                record = JobRecord.model_validate_json(raw)
                if event is None or record.state.spec.event == event:
                    found.append((record, position))
        more = len(found) > limit
        return KeysetPage([r for r, _ in found[:limit]], found[limit - 1][1] if more else None)

    def iter_status(self, status: JobStatus) -> Iterator[JobRecord]:
        ids = self.retrying(
            lambda: self.redis.zrange(self.keys.jobs_by_status(status), 0, -1),
            "list jobs",
        )
        yield from self.get_many([_text(i) for i in ids])

    def forget(self, job_id: str) -> None:
        """Remove a job entirely (tests and clean-ups)."""
        record = self.get(job_id)
        if record is None:
            return
        with self.redis.pipeline() as pipe:
            pipe.delete(self.keys.job(job_id))
            pipe.zrem(self.keys.jobs, job_id)
            pipe.zrem(self.keys.jobs_by_status(record.state.status), job_id)
            if record.state.spec.event:
                pipe.zrem(self.keys.jobs_by_event(record.state.spec.event), job_id)
            pipe.execute()

    # -- locks and heartbeats ----------------------------------------------------------------

    @property
    def lock_ttl_ms(self) -> int:
        return int(self.settings.reaper_stale_s * 1000)

    def acquire(self, job_id: str, stage: str, token: str) -> bool:
        """Take the stage's lock; False when another run holds it."""
        key = self.keys.lock(job_id, stage)
        return bool(
            self.retrying(lambda: self.redis.set(key, token, nx=True, px=self.lock_ttl_ms), "lock")
        )

    def renew(self, job_id: str, stage: str, token: str) -> bool:
        """Renew the lock and the heartbeat (one round trip); False if the lock was lost."""
        keys = [self.keys.lock(job_id, stage), self.keys.heartbeats]
        member = stage_member(job_id, stage)
        return bool(self._renew(keys=keys, args=[token, self.lock_ttl_ms, member]))

    def hold(self, job_id: str, stage: str, token: str, due_in_s: float) -> bool:
        """Renew the lock and push the stage's outbox entry ``due_in_s`` ahead, if it has one
        (one round trip): a lease that, unless renewed, hands the work out again once it
        comes due. False if the lock was lost."""
        keys = [self.keys.lock(job_id, stage), self.keys.outbox]
        due = round(time.time() + due_in_s, 6)
        member = stage_member(job_id, stage)
        return bool(self._hold(keys=keys, args=[token, self.lock_ttl_ms, due, member]))

    def release(self, job_id: str, stage: str, token: str) -> None:
        self.retrying(
            lambda: self._release(keys=[self.keys.lock(job_id, stage)], args=[token]), "unlock"
        )

    def lock_holder(self, job_id: str, stage: str) -> str | None:
        raw = self.retrying(lambda: self.redis.get(self.keys.lock(job_id, stage)), "lock")
        return None if raw is None else cast(bytes, raw).decode()

    def stale_heartbeats(self, older_than_s: float) -> list[tuple[str, str, float]]:
        """Running stages whose last heartbeat is older than ``older_than_s`` (server time)."""
        now = self.server_time()
        entries = self.retrying(
            lambda: self.redis.zrangebyscore(
                self.keys.heartbeats, "-inf", now - older_than_s, withscores=True
            ),
            "heartbeats",
        )
        found = []
        for member, score in _list(entries):
            job_id, stage = parse_stage_member(member)
            found.append((job_id, stage, now - float(score)))
        return found

    def forget_heartbeat(self, job_id: str, stage: str) -> None:
        """Drop a stage's heartbeat (its job is gone)."""
        member = stage_member(job_id, stage)
        self.retrying(lambda: self.redis.zrem(self.keys.heartbeats, member), "heartbeat")

    def heartbeat_age(self, job_id: str, stage: str) -> float | None:
        score = self.retrying(
            lambda: self.redis.zscore(self.keys.heartbeats, stage_member(job_id, stage)),
            "heartbeat",
        )
        return None if score is None else self.server_time() - float(score)

    # -- cancel flags ------------------------------------------------------------------------

    def set_cancelled(self, job_id: str, cancelled: bool = True) -> None:
        key = self.keys.cancel(job_id)
        if cancelled:
            self.retrying(lambda: self.redis.set(key, "1", ex=CANCEL_TTL_S), "cancel")
        else:
            self.retrying(lambda: self.redis.delete(key), "cancel")

    def is_cancelled(self, job_id: str) -> bool:
        """One quick look, no retries (polled by running stages)."""
        return bool(self.redis.exists(self.keys.cancel(job_id)))

    # -- outbox ------------------------------------------------------------------------------

    def due(self, limit: int = 200) -> list[tuple[str, str]]:
        """Outbox entries whose time has come: (job id, stage)."""
        members = self.retrying(
            lambda: self.redis.zrangebyscore(
                self.keys.outbox, "-inf", time.time(), start=0, num=limit
            ),
            "outbox",
        )
        return [parse_stage_member(member) for member in _list(members)]

    def outbox_size(self) -> int:
        return int(self.retrying(lambda: self.redis.zcard(self.keys.outbox), "outbox"))

    def claim(self, job_id: str, stage: str, lease_s: float = 30.0) -> float | None:
        """Take a due outbox entry for sending: it is pushed ``lease_s`` into the future, so
        nobody else sends it meanwhile and it comes due again if the sender dies. Returns the
        lease (pass it to :meth:`sent`), or None if someone else has it or it is not due."""
        now = time.time()
        lease = round(now + lease_s, 6)
        member = stage_member(job_id, stage)
        claimed = self.retrying(
            lambda: self._claim(keys=[self.keys.outbox], args=[member, now, lease]), "outbox"
        )
        return lease if claimed else None

    def sent(self, job_id: str, stage: str, lease: float) -> None:
        """Remove a claimed entry, unless it was re-scheduled meanwhile."""
        member = stage_member(job_id, stage)
        self.retrying(
            lambda: self._unless_changed(keys=[self.keys.outbox], args=[member, lease]),
            "outbox",
        )

    def schedule_if_absent(self, job_id: str, stage: str) -> None:
        """Put the stage in the outbox, due now, unless it has an entry already (whose time
        is left as it is)."""
        member = stage_member(job_id, stage)
        self.retrying(
            lambda: self.redis.zadd(self.keys.outbox, {member: time.time()}, nx=True), "outbox"
        )

    def done_dispatching(self, job_id: str, stage: str) -> None:
        member = stage_member(job_id, stage)
        self.retrying(lambda: self.redis.zrem(self.keys.outbox, member), "outbox")

    # -- workers -----------------------------------------------------------------------------

    def worker_alive(self, hostname: str, queues: list[str], ttl_s: float) -> None:
        value = json.dumps({"hostname": hostname, "queues": queues, "time": time.time()})
        self.redis.set(self.keys.worker(hostname), value, px=int(ttl_s * 1000))

    def worker_gone(self, hostname: str) -> None:
        self.redis.delete(self.keys.worker(hostname))

    def live_workers(self) -> dict[str, list[str]]:
        """Live workers by hostname, each with the queues it consumes."""
        keys = list(self.redis.scan_iter(match=self.keys.worker_pattern, count=500))
        if not keys:
            return {}
        workers: dict[str, list[str]] = {}
        for raw in self.redis.mget(keys):
            if raw is None:
                continue
            data = json.loads(raw)
            workers[str(data["hostname"])] = [str(q) for q in data["queues"]]
        return workers

    # -- reaper's lease ----------------------------------------------------------------------

    def lease(self, name: str, holder: str, ttl_s: float) -> bool:
        """A short lease so that one process at a time does a periodic chore."""
        key = self.keys.lease(name)
        ttl_ms = max(1, int(ttl_s * 1000))
        if self.redis.set(key, holder, nx=True, px=ttl_ms):
            return True
        current = self.redis.get(key)
        if current is not None and cast(bytes, current).decode() == holder:
            self.redis.pexpire(key, ttl_ms)
            return True
        return False

    # -- counters ----------------------------------------------------------------------------

    def redis_uptime_s(self) -> float:
        info = self.redis.info("server")
        return float(info.get("uptime_in_seconds", 0))

    def stats(self) -> dict[str, int]:
        raw = self.retrying(lambda: self.redis.hgetall(self.keys.stats), "stats")
        return {k.decode(): int(v) for k, v in cast(dict[bytes, bytes], raw).items()}


def _list(value: Any) -> list[Any]:
    return list(value)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
