"""Retention: `recast prune` and the workers' periodic prune remove finished jobs from Redis
(every key and entry naming them) and their workspaces, and nothing else.

Jobs run through the production job store, coordinator and stage runner (stages handed over
inline), against a private redis-server; `recast process` jobs through the local executor.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import redis

from pipeline.core.dag import Dag
from pipeline.core.errors import ErrorCode, RecastError
from pipeline.core.job import JobSpec, JobState, JobStatus, StageStatus, utcnow
from pipeline.core.settings import Settings
from pipeline.core.stage import Queue, Stage, StageContext, StageResult
from pipeline.core.workspace import Workspace
from pipeline.engine.distributed.coordinator import Coordinator
from pipeline.engine.distributed.jobprune import JobPruner, PrunedJob
from pipeline.engine.distributed.jobstore import Effects, JobRecord, JobStore
from pipeline.engine.distributed.keys import RedisKeys
from pipeline.engine.distributed.remote_workspace import RemoteWorkspace, open_workspace_store
from pipeline.engine.distributed.stagerun import StageRunner
from pipeline.engine.local import LocalExecutor
from pipeline.ops.joblog import JobLogHandler
from pipeline.ops.retention import parse_duration, prune, prune_round
from tests.conftest import make_settings
from tests.support.workers import (
    RECAST,
    ROOT,
    InlineDispatcher,
    RedisServer,
    cluster_test_settings,
    free_port,
    run_inline,
    write_config,
)


def _run(ctx: StageContext) -> StageResult:
    (ctx.out / f"{ctx.stage}.bin").write_bytes(b"x" * 4096)
    if ctx.stage == "encode" and ctx.spec.options.get("fail"):
        raise RecastError(ErrorCode.MEDIA_INVALID, "encode fails for good")
    return StageResult.done(ctx.out)


DAG = Dag.of(
    [
        Stage(name="fetch", queue=Queue.INGEST, run=_run),
        Stage(name="encode", queue=Queue.TRANSCODE, run=_run, requires=("fetch",)),
    ]
)


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    with RedisServer(tmp_path_factory.mktemp("redis")) as server:
        yield server


def _settings(tmp: Path, redis_url: str, prefix: str, **sections: dict[str, Any]) -> Settings:
    cluster = cluster_test_settings(redis_url, key_prefix=prefix, **sections.pop("cluster", {}))
    return make_settings(tmp, cluster=cluster, **sections)


@dataclass
class Cluster:
    settings: Settings
    store: JobStore
    coordinator: Coordinator
    runner: StageRunner

    @classmethod
    def of(cls, settings: Settings) -> Cluster:
        store = JobStore(settings.cluster)
        coordinator = Coordinator(settings, store, InlineDispatcher(), dag=DAG)
        storage = open_workspace_store(settings)
        remote = RemoteWorkspace(storage) if storage is not None else None
        return cls(settings, store, coordinator, StageRunner(coordinator, remote=remote))

    def run(self, spec: JobSpec, status: JobStatus) -> str:
        record, _ = run_inline(self.coordinator, self.runner, spec, timeout=20)
        assert record is not None and record.state.status is status, record
        return record.id

    def workspace(self, job_id: str) -> Path:
        return Workspace.for_job(self.settings.storage.workspace, job_id).root

    def age(self, job_id: str, days: float) -> None:
        """Move the job ``days`` into the past: as if it had been created and ended then."""
        keys, client = RedisKeys(self.store.prefix), self.store.redis
        record = JobRecord.model_validate_json(client.get(keys.job(job_id)))  # type: ignore[arg-type]
        then = utcnow() - timedelta(days=days)
        record.state.created_at = record.state.updated_at = then
        client.set(keys.job(job_id), record.model_dump_json())
        for index in (keys.jobs, keys.jobs_by_status(record.state.status)):
            client.zadd(index, {job_id: then.timestamp()}, xx=True)


@dataclass
class Jobs:
    succeeded: str
    failed: str
    cancelled: str
    queued: str
    unsettled: str
    """Failed, with a stage still running."""

    @property
    def finished(self) -> list[str]:
        return [self.succeeded, self.failed, self.cancelled]

    @property
    def kept(self) -> list[str]:
        return [self.queued, self.unsettled]


def _populate(cluster: Cluster, name: str) -> Jobs:
    """Jobs in every state, with the keys each leaves: logs, a cancel flag, a lock, a
    heartbeat; the queued and the unsettled job have workspace files too."""
    base = f"https://example.org/{name}"
    coordinator, store = cluster.coordinator, cluster.store
    succeeded = cluster.run(JobSpec(source=f"{base}/ok", event="msc-2026"), JobStatus.SUCCEEDED)
    failed = cluster.run(JobSpec(source=f"{base}/bad", options={"fail": True}), JobStatus.FAILED)
    cancelled = coordinator.submit(JobSpec(source=f"{base}/cancel", event="msc-2026"))[0].id
    coordinator.cancel(cancelled)
    queued = coordinator.submit(JobSpec(source=f"{base}/queued", event="msc-2026"))[0].id
    unsettled = coordinator.submit(JobSpec(source=f"{base}/unsettled"))[0].id

    def fail_while_running(record: JobRecord) -> Effects:
        record.stage("fetch").status = StageStatus.RUNNING
        record.state.status = JobStatus.FAILED
        return Effects()

    store.transact(unsettled, fail_while_running)
    assert store.acquire(unsettled, "fetch", "token") and store.renew(unsettled, "fetch", "token")
    handler = JobLogHandler(store.redis, store.prefix, cluster.settings.ops)
    for job_id, stage in ((succeeded, "fetch"), (failed, "encode"), (unsettled, "fetch")):
        line = {"name": "recast.stage", "msg": "hello", "levelno": 20, "levelname": "INFO"}
        handler.handle(logging.makeLogRecord({**line, "job_id": job_id, "stage": stage}))
    handler.flush()
    for job_id in (queued, unsettled):
        (cluster.workspace(job_id) / ".fetch.partial").mkdir(parents=True)
        (cluster.workspace(job_id) / ".fetch.partial" / "media.part").write_bytes(b"x" * 100)
    return Jobs(succeeded, failed, cancelled, queued, unsettled)


def _everything(client: redis.Redis) -> dict[str, Any]:
    """Every key in Redis with its content (all prefixes)."""
    found: dict[str, Any] = {}
    for raw in client.scan_iter(count=1000):
        key = _text(raw)
        kind = _text(client.type(key))
        if kind == "string":
            content: Any = client.get(key)
        elif kind == "hash":
            content = sorted(client.hgetall(key).items())
        elif kind == "zset":
            content = client.zrange(key, 0, -1, withscores=True)
        elif kind == "list":
            content = client.lrange(key, 0, -1)
        elif kind == "set":
            content = sorted(client.smembers(key))
        elif kind == "stream":
            content = client.xrange(key)
        else:
            raise AssertionError(f"{key}: unexpected type {kind}")
        found[key] = content
    return found


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _mentions(everything: dict[str, Any], job_id: str) -> list[str]:
    """Keys whose name or content names ``job_id``."""
    return [key for key, content in everything.items() if job_id in f"{key} {content!r}"]


def _tree(root: Path) -> dict[str, int]:
    return {
        str(p.relative_to(root)): p.stat().st_size for p in sorted(root.rglob("*")) if p.is_file()
    }


# -- recast prune --older-than 0 -----------------------------------------------------------------


def test_prune_older_than_zero_leaves_no_trace_of_finished_jobs(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    store_dir = tmp_path / "workspace-store"
    settings = _settings(
        tmp_path, redis_server.url, "p0", cluster={"workspace_store": str(store_dir)}
    )
    cluster = Cluster.of(settings)
    jobs = _populate(cluster, "p0")
    client = cluster.store.redis
    before = _everything(client)
    for job_id in jobs.finished:
        kinds = {RedisKeys("p0").kind_of(k) for k in _mentions(before, job_id)}
        assert {"job:<id>", "jobs", "events"} <= kinds, (job_id, kinds)
    assert {RedisKeys("p0").kind_of(k) for k in _mentions(before, jobs.cancelled)} >= {
        "cancel:<id>",
        "jobs:event:<slug>",
    }
    assert _mentions(before, f"joblog:{jobs.succeeded}:fetch")
    assert cluster.workspace(jobs.succeeded).is_dir() and (store_dir / jobs.failed).is_dir()

    config = write_config(tmp_path / "recast.toml", settings)
    done = subprocess.run(
        [RECAST, "--config", str(config), "prune", "--older-than", "0", "--json"],
        cwd=ROOT,
        env={**os.environ, "RECAST_CONFIG": str(config)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)

    after = _everything(client)
    for job_id in jobs.finished:
        assert _mentions(after, job_id) == [], job_id
        assert not cluster.workspace(job_id).exists()
        assert not (store_dir / job_id).exists()
    for job_id in jobs.kept:
        assert {k for k in _mentions(before, job_id)} == {k for k in _mentions(after, job_id)}
        assert (cluster.workspace(job_id) / ".fetch.partial" / "media.part").is_file()
    assert cluster.store.get(jobs.queued).state.status is JobStatus.QUEUED  # type: ignore[union-attr]
    assert cluster.store.lock_holder(jobs.unsettled, "fetch") == "token"
    assert report["jobs"] == 3 and report["workspaces"] == 2, report
    assert report["bytes_freed"] >= 3 * 4096 and report["remote_objects"] >= 3, report
    assert report["keys"] >= 3 + 2 + 1 and report["events"] >= 6, report
    assert not report["dry_run"] and report["redis"], report


def test_a_dry_run_counts_and_changes_nothing(tmp_path: Path, redis_server: RedisServer) -> None:
    settings = _settings(tmp_path, redis_server.url, "dry")
    cluster = Cluster.of(settings)
    jobs = _populate(cluster, "dry")
    before, files = _everything(cluster.store.redis), _tree(tmp_path / "work")

    report = prune(settings, 0, dry_run=True)

    assert _everything(cluster.store.redis) == before
    assert _tree(tmp_path / "work") == files
    assert all(cluster.workspace(j).is_dir() for j in (jobs.succeeded, jobs.failed))
    assert (report.jobs, report.workspaces) == (3, 2), report
    assert report.bytes_freed >= 3 * 4096 and report.events >= 6 and report.dry_run


# -- ages ----------------------------------------------------------------------------------------


def test_an_age_cutoff_keeps_younger_jobs_and_workspaces(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    settings = _settings(tmp_path, redis_server.url, "age")
    cluster = Cluster.of(settings)
    old = cluster.run(JobSpec(source="https://example.org/age/old"), JobStatus.SUCCEEDED)
    young = cluster.run(JobSpec(source="https://example.org/age/young"), JobStatus.SUCCEEDED)
    cluster.age(old, days=2)
    local = LocalExecutor(settings, dag=DAG)
    local_old = local.run(JobSpec(source="https://example.org/age/local-old")).id
    local_young = local.run(JobSpec(source="https://example.org/age/local-young")).id
    workspace = Workspace(cluster.workspace(local_old))
    state = workspace.load_state()
    assert state is not None and state.status is JobStatus.SUCCEEDED
    state.updated_at = utcnow() - timedelta(days=2)
    workspace.save_state(state)

    report = prune(settings, parse_duration("1d"))

    assert cluster.store.get(old) is None and not cluster.workspace(old).exists()
    assert not cluster.workspace(local_old).exists()
    assert cluster.store.get(young) is not None and cluster.workspace(young).is_dir()
    assert (cluster.workspace(local_young) / "job.json").is_file()
    assert (report.jobs, report.workspaces) == (1, 2), report


def test_workspaces_go_before_records_except_what_a_retry_needs(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    settings = _settings(
        tmp_path,
        redis_server.url,
        "wsttl",
        retention={"job_ttl_s": 30 * 86400, "workspace_ttl_s": 3600},
    )
    cluster = Cluster.of(settings)
    succeeded = cluster.run(JobSpec(source="https://example.org/wsttl/ok"), JobStatus.SUCCEEDED)
    failed = cluster.run(
        JobSpec(source="https://example.org/wsttl/bad", options={"fail": True}), JobStatus.FAILED
    )
    for job_id in (succeeded, failed):
        cluster.age(job_id, days=1)

    report = prune(settings)

    assert cluster.store.get(succeeded) is not None, "the record stays for job_ttl_s"
    assert not cluster.workspace(succeeded).exists()
    assert (cluster.workspace(failed) / "fetch").is_dir(), "a retry resumes from it"
    assert (report.jobs, report.workspaces) == (0, 1), report


def test_without_redis_only_finished_local_jobs_are_pruned(tmp_path: Path) -> None:
    settings = _settings(tmp_path, f"redis://127.0.0.1:{free_port()}/0", "none")
    local = LocalExecutor(settings, dag=DAG)
    finished = local.run(JobSpec(source="https://example.org/local/done")).id
    running_spec = JobSpec(source="https://example.org/local/running")
    running = Workspace.for_job(settings.storage.workspace, running_spec.job_id)
    running.save_state(JobState.new(running_spec).model_copy(update={"status": JobStatus.RUNNING}))
    unknown = Workspace.for_job(settings.storage.workspace, "j" + "0" * 20)
    unknown.begin_stage("fetch")

    report = prune(settings, 0)

    assert not report.redis
    assert not Workspace.for_job(settings.storage.workspace, finished).root.exists()
    assert running.job_file.is_file(), "a running job is never pruned"
    assert unknown.partial_dir("fetch").is_dir(), "without Redis, no job.json: left alone"
    assert report.workspaces == 1, report


# -- the workers' periodic prune -----------------------------------------------------------------


def test_the_periodic_prune_runs_under_a_lease(tmp_path: Path, redis_server: RedisServer) -> None:
    settings = _settings(
        tmp_path,
        redis_server.url,
        "auto",
        retention={"job_ttl_s": 0, "workspace_ttl_s": 0, "prune_interval_s": 60},
    )
    cluster = Cluster.of(settings)
    first = cluster.run(JobSpec(source="https://example.org/auto/1"), JobStatus.SUCCEEDED)

    report = prune_round(settings, cluster.store, "worker-1@host:1")

    assert report.records and report.jobs == 1 and report.workspaces == 1
    assert cluster.store.get(first) is None and not cluster.workspace(first).exists()

    second = cluster.run(JobSpec(source="https://example.org/auto/2"), JobStatus.SUCCEEDED)
    other = prune_round(settings, cluster.store, "worker-2@host:2")
    assert not other.records and other.jobs == 0, "one worker at a time prunes records"
    assert cluster.store.get(second) is not None
    assert prune_round(settings, cluster.store, "worker-1@host:1").jobs == 1


# -- safe against a concurrent retry -------------------------------------------------------------


def test_a_retried_job_is_not_pruned_and_a_write_racing_a_prune_cannot_revive_it(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    settings = _settings(tmp_path, redis_server.url, "race")
    cluster = Cluster.of(settings)
    spec = JobSpec(source="https://example.org/race/bad", options={"fail": True})
    failed = cluster.run(spec, JobStatus.FAILED)
    pruner = JobPruner(cluster.store)
    cutoff = utcnow()
    assert [r.id for r in pruner.candidates(cutoff)] == [failed]

    cluster.coordinator.retry(failed)  # queued again after the candidates were listed
    assert pruner.prune(failed, cutoff) is None
    assert cluster.store.get(failed).state.status is JobStatus.QUEUED  # type: ignore[union-attr]

    cluster.coordinator.cancel(failed)
    cutoff = utcnow()
    pruned: list[PrunedJob | None] = []

    def retry_meanwhile(record: JobRecord) -> Effects:
        if not pruned:  # the prune commits between this transaction's read and its write
            pruned.append(pruner.prune(failed, cutoff))
        record.state.status = JobStatus.QUEUED
        return Effects()

    assert cluster.store.transact(failed, retry_meanwhile) is None
    assert pruned[0] is not None
    keys = RedisKeys("race")
    everything = _everything(cluster.store.redis)
    del everything[keys.events]  # the job pruner's caller drops the job's events
    assert _mentions(everything, failed) == [], "nothing of the job was written back"
    assert keys.jobs_by_status(JobStatus.QUEUED) not in everything


def test_durations() -> None:
    assert [parse_duration(t) for t in ("0", "3600", "90s", "15m", "12h", "30d", "2w")] == [
        0,
        3600,
        90,
        900,
        43200,
        30 * 86400,
        14 * 86400,
    ]
    with pytest.raises(ValueError, match="not a duration"):
        parse_duration("soon")
