"""The Redis key layout: every key Recast keeps in Redis is spelled here, and only here.

Keys, under the prefix ``cluster.key_prefix`` (``recast``)::

    job:<id>                   the job's JobRecord (JSON)                     jobstore
    jobs                       ZSET of job ids by creation time               jobstore
    jobs:status:<status>       ZSET of job ids per job status                 jobstore
    jobs:event:<slug>          ZSET of job ids per event                      jobstore
    lock:<id>:<stage>          the lock of a running stage: its token, TTL    jobstore
    heartbeats                 ZSET "<id>/<stage>" -> last heartbeat          jobstore, reaper
    cancel:<id>                set while a job is cancelled                   jobstore
    outbox                     ZSET "<id>/<stage>" -> when to hand it over    jobstore
    worker:<hostname>          a live worker's queues (expires unless renewed) jobstore
    lease:<name>               a periodic chore's lease (reaper, prune)       jobstore
    events                     stream of job and stage transitions            jobstore, opsview
    stats                      hash of the job store's counters               jobstore, opsview
    metrics:hist:<histogram>   a measurement's histogram buckets, per label   ops.metrics
    metrics:counters           hash of the workers' measured totals           ops.metrics
    ops:samples                ZSET of ops samples by Redis server time       ops.opshistory
    ops:sample-lock            one sample per interval, cluster-wide          ops.opshistory
    ops:worker:<hostname>      a worker's report (concurrency, disk)          ops.opsview
    joblog:<id>:<stage>        a stage's log: bounded list of JSON lines      ops.joblog
    host:<host>                a source host's gate: pause, refusals, slots   hostgate, opsview

The names inside the two counter hashes (``stats``, ``metrics:*``) are owned by
:mod:`pipeline.engine.distributed.counters`. Sorted-set members that name a stage of a job
(``heartbeats``, ``outbox``) are ``<id>/<stage>``: :func:`stage_member` and
:func:`parse_stage_member`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from pipeline.core.job import JobStatus

SEPARATOR = ":"


@dataclass(frozen=True)
class RedisKeys:
    """The keys of one deployment (one ``cluster.key_prefix``)."""

    prefix: str

    def _key(self, *parts: str) -> str:
        return SEPARATOR.join((self.prefix, *parts))

    # -- the job store -----------------------------------------------------------------------

    def job(self, job_id: str) -> str:
        return self._key("job", job_id)

    @property
    def jobs(self) -> str:
        return self._key("jobs")

    def jobs_by_status(self, status: JobStatus) -> str:
        return self._key("jobs", "status", str(status))

    def jobs_by_event(self, slug: str) -> str:
        return self._key("jobs", "event", slug)

    @property
    def jobs_by_event_pattern(self) -> str:
        """A SCAN pattern matching every :meth:`jobs_by_event` key."""
        return self.jobs_by_event("*")

    def event_of(self, key: str | bytes) -> str | None:
        """The event slug of a :meth:`jobs_by_event` key; None for any other key."""
        text = _text(key)
        start = self.jobs_by_event("")
        return text.removeprefix(start) if text.startswith(start) else None

    def lock(self, job_id: str, stage: str) -> str:
        return self._key("lock", job_id, stage)

    @property
    def heartbeats(self) -> str:
        return self._key("heartbeats")

    def cancel(self, job_id: str) -> str:
        return self._key("cancel", job_id)

    @property
    def outbox(self) -> str:
        return self._key("outbox")

    def worker(self, hostname: str) -> str:
        return self._key("worker", hostname)

    @property
    def worker_pattern(self) -> str:
        return self.worker("*")

    def lease(self, name: str) -> str:
        return self._key("lease", name)

    @property
    def events(self) -> str:
        return self._key("events")

    @property
    def stats(self) -> str:
        return self._key("stats")

    # -- ops ---------------------------------------------------------------------------------

    def histogram(self, name: str) -> str:
        return self._key("metrics", "hist", name)

    @property
    def measurements(self) -> str:
        return self._key("metrics", "counters")

    @property
    def ops_samples(self) -> str:
        return self._key("ops", "samples")

    @property
    def ops_sample_lock(self) -> str:
        return self._key("ops", "sample-lock")

    def worker_report(self, hostname: str) -> str:
        return self._key("ops", "worker", hostname)

    @property
    def worker_report_pattern(self) -> str:
        return self.worker_report("*")

    def job_log(self, job_id: str, stage: str) -> str:
        return self._key("joblog", job_id, stage)

    # -- source hosts ------------------------------------------------------------------------

    def source_host(self, host: str) -> str:
        return self._key("host", host)

    @property
    def source_host_pattern(self) -> str:
        """A SCAN pattern matching every :meth:`source_host` key."""
        return self.source_host("*")

    def host_of(self, key: str | bytes) -> str | None:
        """The host of a :meth:`source_host` key; None for any other key."""
        text = _text(key)
        start = self.source_host("")
        return text.removeprefix(start) if text.startswith(start) else None

    # -- the layout as a whole ---------------------------------------------------------------

    def kind_of(self, key: str | bytes) -> str | None:
        """Which key of the layout ``key`` is (``"job:<id>"``), None when it is none of them."""
        text = _text(key)
        start = self.prefix + SEPARATOR
        if not text.startswith(start):
            return None
        rest = text.removeprefix(start)
        return next((kind for kind, pattern in LAYOUT if pattern.fullmatch(rest)), None)


_PART = r"[^:]+"
_REST = r".+"
LAYOUT: tuple[tuple[str, re.Pattern[str]], ...] = tuple(
    (kind, re.compile(pattern))
    for kind, pattern in (
        ("job:<id>", rf"job:{_PART}"),
        ("jobs", r"jobs"),
        ("jobs:status:<status>", rf"jobs:status:{_PART}"),
        ("jobs:event:<slug>", rf"jobs:event:{_REST}"),
        ("lock:<id>:<stage>", rf"lock:{_PART}:{_PART}"),
        ("heartbeats", r"heartbeats"),
        ("cancel:<id>", rf"cancel:{_PART}"),
        ("outbox", r"outbox"),
        ("worker:<hostname>", rf"worker:{_REST}"),
        ("lease:<name>", rf"lease:{_PART}"),
        ("events", r"events"),
        ("stats", r"stats"),
        ("metrics:hist:<histogram>", rf"metrics:hist:{_PART}"),
        ("metrics:counters", r"metrics:counters"),
        ("ops:samples", r"ops:samples"),
        ("ops:sample-lock", r"ops:sample-lock"),
        ("ops:worker:<hostname>", rf"ops:worker:{_REST}"),
        ("joblog:<id>:<stage>", rf"joblog:{_PART}:{_PART}"),
        ("host:<host>", rf"host:{_REST}"),
    )
)
"""Every key of the layout (as the module's docstring lists it) and what it matches."""


def stage_member(job_id: str, stage: str) -> str:
    """The sorted-set member naming one stage of one job (``heartbeats``, ``outbox``)."""
    return f"{job_id}/{stage}"


def parse_stage_member(member: str | bytes) -> tuple[str, str]:
    """(job id, stage) of a :func:`stage_member`."""
    job_id, _, stage = _text(member).partition("/")
    return job_id, stage


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value
