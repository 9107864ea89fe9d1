"""History for the ops views: samples of queue depth and finished-job counters over time.

Throughput over the last hour and the jobs board's chart come from samples kept in a Redis
sorted set (``ops:samples`` in :mod:`pipeline.engine.distributed.keys`, scored by Redis server
time). Whoever looks takes a
sample when one is due (the workers' reporter every ``ops.worker_report_s``, the API on
/metrics, /healthz and the board, ``recast status``); a short lock keeps it to one sample per
``ops.sample_interval_s`` for the whole cluster. Samples older than ``ops.history_s`` are
dropped.

A sample holds the cumulative counters of the job store (jobs succeeded, failed, cancelled:
:class:`~pipeline.engine.distributed.counters.JobCounter`), so the jobs finished between two
moments are the difference of the samples around them, however irregular the sampling.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime

import redis
from pydantic import BaseModel

from pipeline.core.job import JobStatus
from pipeline.engine.distributed.counters import FINISHED_JOB_STATUSES
from pipeline.engine.distributed.keys import RedisKeys


class Sample(BaseModel):
    time: float
    """Redis server time (seconds since the epoch)."""
    depth: dict[str, int]
    """Stages waiting per queue."""
    running: int
    succeeded: int
    failed: int
    cancelled: int
    blocked: int = 0
    """Stage attempts that failed with ``source.blocked`` (cumulative)."""

    def finished(self, status: JobStatus) -> int:
        """Jobs that ended in ``status`` (one of FINISHED_JOB_STATUSES), cumulative."""
        counts = {
            JobStatus.SUCCEEDED: self.succeeded,
            JobStatus.FAILED: self.failed,
            JobStatus.CANCELLED: self.cancelled,
        }
        return counts[status]


class ThroughputBucket(BaseModel):
    start: datetime
    end: datetime
    succeeded: int
    failed: int
    cancelled: int


class Throughput(BaseModel):
    """Jobs that finished within the window (the last hour), in equal buckets."""

    window_s: float
    since: datetime | None
    """Where the figures start: the window's start, or the first sample if it is later."""
    succeeded: int
    failed: int
    cancelled: int
    buckets: list[ThroughputBucket]


class History:
    def __init__(self, client: redis.Redis, prefix: str, interval_s: float, keep_s: float):
        self.client = client
        keys = RedisKeys(prefix)
        self.key = keys.ops_samples
        self.lock_key = keys.ops_sample_lock
        self.interval_s = interval_s
        self.keep_s = keep_s

    def due(self) -> bool:
        """True (and the lock taken) when no sample was taken within the interval."""
        return bool(
            self.client.set(self.lock_key, "1", nx=True, px=max(1, int(self.interval_s * 1000)))
        )

    def add(self, sample: Sample) -> None:
        with self.client.pipeline(transaction=False) as pipe:
            pipe.zadd(self.key, {sample.model_dump_json(): sample.time})
            pipe.zremrangebyscore(self.key, "-inf", sample.time - self.keep_s)
            pipe.execute()

    def since(self, start: float) -> list[Sample]:
        """Samples from ``start`` on, with the last one before it (the baseline) first."""
        before = self.client.zrevrangebyscore(self.key, f"({start}", "-inf", start=0, num=1)
        after = self.client.zrangebyscore(self.key, start, "+inf")
        return [Sample.model_validate(json.loads(raw)) for raw in [*before, *after]]


def at(points: list[Sample], moment: float) -> Sample:
    """The counters at ``moment``: the last of the (sorted) points taken by then, else the
    first one."""
    chosen = points[0]
    for point in points:
        if point.time <= moment:
            chosen = point
        else:
            break
    return chosen


def increase(
    samples: list[Sample], now: Sample, window_s: float, counter: Callable[[Sample], int]
) -> int:
    """How much a counter of the samples grew in (now - window, now]."""
    points = [*sorted([s for s in samples if s.time < now.time], key=lambda s: s.time), now]
    before = at(points, now.time - window_s)
    return max(0, counter(now) - counter(before))


def throughput(samples: list[Sample], now: Sample, window_s: float, buckets: int) -> Throughput:
    """Jobs finished in (now - window, now], from samples and the live counters ``now``."""
    points = [*sorted([s for s in samples if s.time < now.time], key=lambda s: s.time), now]
    start = now.time - window_s

    def finished(a: Sample, b: Sample) -> dict[str, int]:
        return {
            str(status): max(0, b.finished(status) - a.finished(status))
            for status in FINISHED_JOB_STATUSES
        }

    width = window_s / buckets
    result = []
    for index in range(buckets):
        low, high = start + index * width, start + (index + 1) * width
        counts = finished(at(points, low), at(points, high) if index < buckets - 1 else now)
        result.append(ThroughputBucket(start=_dt(low), end=_dt(high), **counts))
    totals = finished(at(points, start), now)
    since = max(start, points[0].time) if len(points) > 1 else None
    return Throughput(
        window_s=window_s, since=_dt(since) if since is not None else None, buckets=result, **totals
    )


def _dt(moment: float) -> datetime:
    return datetime.fromtimestamp(moment, UTC)
