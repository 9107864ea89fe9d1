"""Removing finished jobs from Redis: the record and every key or entry that names the job.

A job leaves, in the layout of :mod:`pipeline.engine.distributed.keys`: its record
(``job:<id>``); its member in the ``jobs`` index, its status's and its event's
(``jobs:status:<status>``, ``jobs:event:<slug>``; a set left empty disappears); per stage a
lock (``lock:<id>:<stage>``), a job log (``joblog:<id>:<stage>``) and members
``<id>/<stage>`` of ``heartbeats`` and ``outbox``; a cancel flag (``cancel:<id>``); entries of
the ``events`` stream. Locks, logs and cancel flags expire by themselves, the stream is
capped; the record and its index members do not, and with Redis at ``noeviction`` they would
fill it. There is no other key per job: the job id is the idempotency key, so there is no
separate mapping from a submission to its job.

Only a job that has finished (succeeded, failed, cancelled), has settled (no stage of it
still running) and was last changed before the cutoff is pruned. The check and the deletion
are one optimistic transaction on the record (WATCH/MULTI, as every change of the job store
is), so a retry, cancel or re-run of the same job that commits first makes the prune back off,
and one that comes after finds no job. Celery's own result keys (``celery-task-meta-*``) are
not Recast's: they name a task, not a job, and expire after ``cluster.result_expires_s``.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import redis

from pipeline.core.job import JobState, JobStatus, StageStatus
from pipeline.engine.distributed.counters import FINISHED_JOB_STATUSES
from pipeline.engine.distributed.jobstore import JobRecord, JobStore
from pipeline.engine.distributed.keys import stage_member

EVENTS_CHUNK = 1000
"""Stream entries read (and deleted) per round trip."""
RECORDS_CHUNK = 500
"""Job records read per round trip."""


def ended_by(state: JobState, cutoff: datetime) -> bool:
    """Finished, settled (no stage still running), and last changed at or before ``cutoff``."""
    return (
        state.status in FINISHED_JOB_STATUSES
        and not any(s.status is StageStatus.RUNNING for s in state.stages.values())
        and state.updated_at <= cutoff
    )


def prunable(record: JobRecord, cutoff: datetime) -> bool:
    return ended_by(record.state, cutoff)


@dataclass(frozen=True)
class PrunedJob:
    """A job removed from Redis (or that would be, in a dry run)."""

    record: JobRecord
    keys: int
    """Keys deleted: the record, locks, logs, the cancel flag."""
    entries: int
    """Members removed from sorted sets: indexes, heartbeats, outbox."""


class JobPruner:
    """Removes finished jobs from one job store."""

    def __init__(self, store: JobStore):
        self.store = store
        self.redis = store.redis
        self.keys = store.keys

    def candidates(self, cutoff: datetime) -> Iterator[JobRecord]:
        """Finished jobs that may be pruned at ``cutoff``. A job is created before it is last
        changed, so only the status indexes' members created by then (their score) are read,
        and their records a chunk at a time."""
        for status in FINISHED_JOB_STATUSES:
            ids = self.store.retrying(
                lambda s=status: self.redis.zrangebyscore(  # type: ignore[misc]
                    self.keys.jobs_by_status(s), "-inf", cutoff.timestamp()
                ),
                "list finished jobs",
            )
            found = _texts(ids)
            for start in range(0, len(found), RECORDS_CHUNK):
                chunk = self.store.get_many(found[start : start + RECORDS_CHUNK])
                yield from (record for record in chunk if prunable(record, cutoff))

    def prune(self, job_id: str, cutoff: datetime, *, dry_run: bool = False) -> PrunedJob | None:
        """Remove the job if it is prunable at ``cutoff`` (checked in the transaction that
        removes it); None when it is not, or is gone. A dry run only counts what exists."""

        def once() -> PrunedJob | None:
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
                        if not prunable(record, cutoff):
                            pipe.unwatch()
                            return None
                        if dry_run:
                            pipe.unwatch()
                            return self._count(record)
                        pipe.multi()
                        self._remove(pipe, record)
                        deleted, *removed = pipe.execute()
                        return PrunedJob(record, keys=int(deleted), entries=sum(removed))
                    except redis.WatchError:
                        continue

        return self.store.retrying(once, f"prune job {job_id}")

    def _keys_of(self, record: JobRecord) -> list[str]:
        stages = _stages(record)
        return [
            self.keys.job(record.id),
            self.keys.cancel(record.id),
            *(self.keys.lock(record.id, stage) for stage in stages),
            *(self.keys.job_log(record.id, stage) for stage in stages),
        ]

    def _members_of(self, record: JobRecord) -> list[tuple[str, list[str]]]:
        """(sorted set, members naming the job) pairs."""
        members = [stage_member(record.id, stage) for stage in _stages(record)]
        pairs = [(self.keys.jobs, [record.id])]
        pairs += [(self.keys.jobs_by_status(status), [record.id]) for status in JobStatus]
        if record.state.spec.event:
            pairs.append((self.keys.jobs_by_event(record.state.spec.event), [record.id]))
        if members:
            pairs += [(self.keys.heartbeats, members), (self.keys.outbox, members)]
        return pairs

    def _remove(self, pipe: Any, record: JobRecord) -> None:
        pipe.delete(*self._keys_of(record))
        for key, members in self._members_of(record):
            pipe.zrem(key, *members)

    def _count(self, record: JobRecord) -> PrunedJob:
        with self.redis.pipeline(transaction=False) as pipe:
            pipe.exists(*self._keys_of(record))
            pairs = self._members_of(record)
            for key, members in pairs:
                pipe.zmscore(key, members)
            existing, *scores = pipe.execute()
        entries = sum(1 for found in scores for score in found if score is not None)
        return PrunedJob(record, keys=int(existing), entries=entries)

    def drop_events(self, job_ids: Iterable[str], until: datetime, *, dry_run: bool) -> int:
        """Delete the ``events`` stream's entries about ``job_ids`` written up to ``until``
        (later ones belong to a job submitted again since); returns how many."""
        wanted = set(job_ids)
        if not wanted:
            return 0
        upper = str(int(until.timestamp() * 1000))
        lower, dropped = "-", 0
        while True:
            entries = self.store.retrying(
                lambda low=lower: self.redis.xrange(  # type: ignore[misc]
                    self.keys.events, min=low, max=upper, count=EVENTS_CHUNK
                ),
                "read events",
            )
            if not entries:
                return dropped
            doomed = [
                entry_id
                for entry_id, fields in entries
                if _text((fields or {}).get(b"job", b"")) in wanted
            ]
            if doomed and not dry_run:
                self.store.retrying(lambda d=doomed: self.redis.xdel(self.keys.events, *d))  # type: ignore[misc]
            dropped += len(doomed)
            lower = f"({_text(entries[-1][0])}"


def _stages(record: JobRecord) -> list[str]:
    return sorted({*record.state.stages, *record.runtime})


def _texts(values: Any) -> list[str]:
    return [_text(value) for value in values]


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
