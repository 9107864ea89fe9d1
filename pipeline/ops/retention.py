"""Retention: finished jobs and their workspaces pruned after a configured age.

With Redis at ``noeviction``, job records that are never removed would fill it; workspaces
(downloads, renditions) fill the disk sooner. ``[retention]`` says how long they stay, counted
from a finished job's last change:

- ``job_ttl_s``: the job leaves Redis (:mod:`pipeline.engine.distributed.jobprune`: the record
  and every key and entry naming it, in one transaction that re-checks the job), its
  workspace directory goes, and its outputs in ``cluster.workspace_store``;
- ``workspace_ttl_s``: before that, a finished job's workspace directory goes when nothing
  will read it again: a succeeded job's, or any finished job's when the workspace store keeps
  the outputs a retry fetches (otherwise a failed job's directory is what ``recast retry``
  resumes from, and it stays as long as the record);
- jobs of ``recast process`` (the local executor; their record is ``job.json`` in the
  workspace) go by ``workspace_ttl_s``: a finished one is run again from scratch;
- a job directory whose job Redis does not know, without a job.json (a job pruned elsewhere:
  another worker's cache, ``recast prune`` on another machine), goes once nothing in it has
  changed for ``workspace_ttl_s``; without Redis such a directory is left alone.

Queued and running jobs, and finished jobs with a stage still running, are never touched;
published cards are the product and are never pruned. A directory is first renamed aside
(atomically), then deleted, so a job submitted again at that moment starts from an empty
directory rather than a half-deleted one.

``recast prune`` runs :func:`prune`; each worker runs :func:`prune_round` every
``prune_interval_s``: the records by one worker at a time (a lease), and its own workspace
directory (each worker's cache when workers share no disk).
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import stat
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from pipeline.core.job import JobState, JobStatus, utcnow
from pipeline.core.settings import Settings
from pipeline.core.workspace import Workspace
from pipeline.engine.distributed.jobprune import JobPruner, ended_by, prunable
from pipeline.engine.distributed.jobstore import JobRecord, JobStore
from pipeline.engine.distributed.remote_workspace import RemoteWorkspace, open_workspace_store

log = logging.getLogger("recast.retention")

PRUNE_LEASE = "prune"
JOB_DIRECTORY = re.compile(r"j[0-9a-f]{20}")
"""A job's workspace directory is named by its id (``JobSpec.job_id``); nothing else in the
workspace (``_webhooks``, for one) looks like that."""
TRASH_MARK = ".pruning-"
STALE_TRASH_S = 600.0
"""A directory renamed aside this long ago was left by a prune that died (a live one deletes
it at once)."""

_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_duration(text: str) -> float:
    """Seconds of ``0``, ``3600``, ``90s``, ``15m``, ``12h``, ``30d`` or ``2w``."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*", text.lower())
    if not match:
        raise ValueError(f"{text!r} is not a duration such as 0, 3600, 90s, 15m, 12h or 30d")
    return float(match.group(1)) * _UNITS[match.group(2)]


@dataclass(frozen=True)
class Cutoffs:
    """What was last changed at or before these moments is old enough."""

    jobs: datetime
    workspaces: datetime

    @classmethod
    def of(cls, settings: Settings, older_than_s: float | None = None) -> Cutoffs:
        """From ``[retention]``, or one age for both."""
        now = utcnow()
        config = settings.retention
        job_age = config.job_ttl_s if older_than_s is None else older_than_s
        workspace_age = config.workspace_ttl_s if older_than_s is None else older_than_s
        return cls(
            jobs=now - timedelta(seconds=job_age),
            workspaces=now - timedelta(seconds=min(job_age, workspace_age)),
        )


@dataclass
class PruneReport:
    cutoff_jobs: datetime
    cutoff_workspaces: datetime
    dry_run: bool = False
    redis: bool = True
    """The job store answered (without it only ``recast process`` workspaces are judged)."""
    records: bool = True
    """This run judged job records (a worker's round without the lease leaves them to the
    worker holding it)."""
    jobs: int = 0
    keys: int = 0
    """Redis keys deleted: records, locks, job logs, cancel flags."""
    entries: int = 0
    """Members of Redis sorted sets removed: indexes, heartbeats, outbox."""
    events: int = 0
    """Entries of the events stream removed."""
    workspaces: int = 0
    remote_objects: int = 0
    bytes_freed: int = 0
    """Bytes of the workspace directories removed (local disk)."""

    @property
    def pruned_anything(self) -> bool:
        return bool(self.jobs or self.workspaces or self.remote_objects or self.keys)

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["cutoff_jobs"] = self.cutoff_jobs.isoformat()
        data["cutoff_workspaces"] = self.cutoff_workspaces.isoformat()
        return data


class Retention:
    """Prunes one deployment's job store (when given) and this machine's workspace."""

    def __init__(
        self, settings: Settings, store: JobStore | None, remote: RemoteWorkspace | None = None
    ):
        self.settings = settings
        self.store = store
        self.remote = remote
        self.root = Path(settings.storage.workspace).resolve()

    def prune(
        self, cutoffs: Cutoffs, *, dry_run: bool = False, records: bool = True
    ) -> PruneReport:
        """Prune old finished jobs (``records``: from Redis too), then the workspace."""
        report = PruneReport(
            cutoffs.jobs,
            cutoffs.workspaces,
            dry_run=dry_run,
            redis=self.store is not None,
            records=records and self.store is not None,
        )
        handled: set[str] = set()
        if self.store is not None and records:
            handled = self._prune_records(self.store, cutoffs, report)
        self._sweep(cutoffs, report, handled)
        return report

    # -- records -----------------------------------------------------------------------------

    def _prune_records(self, store: JobStore, cutoffs: Cutoffs, report: PruneReport) -> set[str]:
        started = utcnow()
        pruner = JobPruner(store)
        pruned: set[str] = set()
        for candidate in pruner.candidates(cutoffs.jobs):
            gone = pruner.prune(candidate.id, cutoffs.jobs, dry_run=report.dry_run)
            if gone is None:
                continue  # changed meanwhile (retried, re-run) or pruned by someone else
            pruned.add(gone.record.id)
            report.jobs += 1
            report.keys += gone.keys
            report.entries += gone.entries
            self._remove(self.root / gone.record.id, report)
            if self.remote is not None:
                report.remote_objects += self.remote.discard_job(
                    gone.record.id, dry_run=report.dry_run
                )
        report.events += pruner.drop_events(pruned, started, dry_run=report.dry_run)
        return pruned

    # -- workspace directories ---------------------------------------------------------------

    def _sweep(self, cutoffs: Cutoffs, report: PruneReport, handled: set[str]) -> None:
        if not self.root.is_dir():
            return
        directories: list[Path] = []
        for entry in sorted(self.root.iterdir()):
            if entry.name.startswith(".") and TRASH_MARK in entry.name:
                if _renamed_before(entry, time.time() - STALE_TRASH_S):
                    self._remove_trash(entry, report)  # left by a prune that died half-way
            elif (
                entry.is_dir() and JOB_DIRECTORY.fullmatch(entry.name) and entry.name not in handled
            ):
                directories.append(entry)
        records = self._records([d.name for d in directories])
        for directory in directories:
            if self._expired(directory, records.get(directory.name), cutoffs):
                self._remove(directory, report, still=self._still_expired(directory, cutoffs))

    def _still_expired(self, directory: Path, cutoffs: Cutoffs) -> Callable[[Path], bool]:
        """Asked once ``directory`` is renamed aside (to ``moved``): is it expired still?"""

        def still(moved: Path) -> bool:
            return self._expired(
                moved, self._records([directory.name]).get(directory.name), cutoffs
            )

        return still

    def _records(self, job_ids: list[str]) -> dict[str, JobRecord]:
        if self.store is None or not job_ids:
            return {}
        return {record.id: record for record in self.store.get_many(job_ids)}

    def _expired(self, directory: Path, record: JobRecord | None, cutoffs: Cutoffs) -> bool:
        """Whether nothing will read this job directory again."""
        if record is not None:
            kept_for_retry = record.state.status is not JobStatus.SUCCEEDED and self.remote is None
            return prunable(record, cutoffs.workspaces) and not kept_for_retry
        local = _local_state(directory)
        if local is not None:
            return ended_by(local, cutoffs.workspaces)
        if self.store is None:
            return False
        return _last_change(directory) <= cutoffs.workspaces.timestamp()

    def _remove(
        self,
        directory: Path,
        report: PruneReport,
        still: Callable[[Path], bool] | None = None,
    ) -> None:
        """Remove a job's directory (renamed aside first); with ``still``, put it back if the
        job changed while it was being renamed."""
        if not directory.is_dir():
            return
        if report.dry_run:
            report.workspaces += 1
            report.bytes_freed += _size(directory)
            return
        trash = directory.with_name(f".{directory.name}{TRASH_MARK}{uuid.uuid4().hex[:8]}")
        try:
            directory.rename(trash)
        except FileNotFoundError:
            return  # another process pruned it
        if still is not None and not still(trash):
            try:
                trash.rename(directory)
                return
            except OSError:
                log.warning("job %s changed while its workspace was pruned", directory.name)
        report.workspaces += 1
        self._remove_trash(trash, report)

    def _remove_trash(self, trash: Path, report: PruneReport) -> None:
        report.bytes_freed += _size(trash)
        if report.dry_run:
            return
        shutil.rmtree(trash, ignore_errors=True)
        if trash.exists():
            log.warning("could not remove all of %s", trash)


def _local_state(directory: Path) -> JobState | None:
    """The state of a ``recast process`` job (its job.json); None when there is none, or it
    cannot be read (such a directory is left alone)."""
    try:
        return Workspace(directory).load_state()
    except (OSError, ValueError):
        return None


def _walk(directory: Path) -> list[os.stat_result]:
    found = []
    for top, dirs, files in os.walk(directory):
        for name in [*dirs, *files]:
            try:
                found.append(os.lstat(os.path.join(top, name)))
            except OSError:
                continue
    return found


def _size(directory: Path) -> int:
    return sum(s.st_size for s in _walk(directory) if not stat.S_ISDIR(s.st_mode))


def _renamed_before(path: Path, moment: float) -> bool:
    try:
        return path.stat().st_ctime <= moment  # a rename sets the ctime
    except OSError:
        return False


def _last_change(directory: Path) -> float:
    try:
        own = directory.stat().st_mtime
    except OSError:
        return float("inf")
    return max([own, *(s.st_mtime for s in _walk(directory))])


def describe(report: PruneReport) -> str:
    """One line for people: what went (or would go, in a dry run)."""
    verb = "would prune" if report.dry_run else "pruned"
    return (
        f"{verb} {report.jobs} jobs ({report.keys} keys, {report.entries} index entries, "
        f"{report.events} events), {report.workspaces} workspaces "
        f"({report.bytes_freed} bytes), {report.remote_objects} stored outputs"
    )


def _remote(settings: Settings) -> RemoteWorkspace | None:
    storage = open_workspace_store(settings)
    return RemoteWorkspace(storage) if storage is not None else None


def prune(
    settings: Settings, older_than_s: float | None = None, *, dry_run: bool = False
) -> PruneReport:
    """``recast prune``: everything old enough, the job store's records included when Redis
    answers (otherwise only ``recast process`` workspaces are judged)."""
    store = JobStore(settings.cluster)
    reachable = store.ping()
    retention = Retention(settings, store if reachable else None, _remote(settings))
    return retention.prune(Cutoffs.of(settings, older_than_s), dry_run=dry_run)


def prune_round(settings: Settings, store: JobStore, holder: str) -> PruneReport:
    """A worker's periodic prune: records and the workspace store by whoever holds the lease
    (one worker per ``prune_interval_s``), this machine's workspace directory by everyone."""
    interval = settings.retention.prune_interval_s
    leased = store.lease(PRUNE_LEASE, holder, interval)
    retention = Retention(settings, store, _remote(settings))
    report = retention.prune(Cutoffs.of(settings), records=leased)
    if report.pruned_anything:
        log.info("retention: %s", describe(report))
    return report
