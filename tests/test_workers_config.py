"""The Celery configuration, time limits, settings checks, and the job store's transactions,
locks and outbox against a real Redis (no workers)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from pipeline.core.errors import ConfigError
from pipeline.core.job import JobSpec, JobStatus, StageStatus
from pipeline.core.settings import ApiSettings, ClusterSettings, load_settings
from pipeline.core.stage import Queue
from pipeline.engine.distributed.coordinator import JobConflict, time_limits
from pipeline.engine.distributed.jobstore import Effects, JobRecord, JobStore
from pipeline.stages import default_dag
from tests.conftest import make_settings
from tests.support.workers import RedisServer, cluster_test_settings
from workers.app import create_celery
from workers.config import broker_priority, celery_config, prefetch_for, task_name
from workers.producer import Producer

DAG = default_dag()


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with RedisServer(tmp_path_factory.mktemp("redis")) as server:
        yield server.url


def test_celery_runs_the_dag_as_json_tasks_routed_by_stage_queue(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    config = celery_config(settings, DAG)
    assert config["task_serializer"] == config["result_serializer"] == "json"
    assert config["accept_content"] == config["result_accept_content"] == ["json"]
    assert config["task_acks_late"] is True
    assert config["task_reject_on_worker_lost"] is False  # the reaper decides, and counts
    assert {q.name for q in config["task_queues"]} == {q.value for q in Queue}
    assert config["task_routes"] == {
        task_name(stage.name): {"queue": stage.queue.value} for stage in DAG
    }
    visibility = config["broker_transport_options"]["visibility_timeout"]
    assert visibility > config["task_time_limit"] > config["task_soft_time_limit"]
    app = create_celery(settings)
    for stage in DAG:
        assert app.tasks[task_name(stage.name)].acks_late
        route = app.amqp.router.route({}, task_name(stage.name))
        assert route["queue"].name == stage.queue.value


def test_rabbitmq_works_through_the_same_settings(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, cluster={"broker_url": "amqp://guest:guest@mq:5672//"})
    config = celery_config(settings, DAG)
    assert config["broker_url"].startswith("amqp://")
    assert config["broker_transport_options"] == {}
    assert all(q.queue_arguments == {"x-max-priority": 10} for q in config["task_queues"])
    assert broker_priority(9, "amqp://mq//") == 9  # RabbitMQ: higher first
    assert broker_priority(9, "redis://r/0") == 0  # Celery's Redis transport: 0 first
    app = create_celery(settings)
    assert app.conf.broker_url.startswith("amqp://")


def test_prefetch_is_one_for_long_queues(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    assert prefetch_for(["transcode"], settings) == 1
    assert prefetch_for(["ingest", "publish"], settings) == 1
    assert prefetch_for(["publish"], settings) == settings.cluster.short_prefetch_multiplier


def test_time_limits_scale_with_duration_and_stay_under_the_visibility_timeout(
    tmp_path: Path,
) -> None:
    settings = make_settings(tmp_path)
    config = settings.cluster
    stage = max(DAG, key=lambda s: s.time_limit_factor)
    short, long = time_limits(stage, 60, settings), time_limits(stage, 3600, settings)
    assert short.hard_s == config.time_limit_base_s + stage.time_limit_factor * 60
    assert long.hard_s > short.hard_s
    assert short.soft_s == pytest.approx(short.hard_s * config.soft_time_limit_ratio)
    unknown = time_limits(stage, None, settings)
    assert unknown.hard_s == min(
        config.max_time_limit_s,
        config.time_limit_base_s + stage.time_limit_factor * settings.ingest.max_duration_s,
    )
    for duration in (None, 1.0, 10**6):
        assert time_limits(stage, duration, settings).hard_s < config.visibility_timeout_s


@pytest.mark.parametrize(
    "bad",
    [
        {"visibility_timeout_s": 3600, "max_time_limit_s": 3600},
        {"heartbeat_s": 10, "reaper_stale_s": 15},
        {"reaper_stale_s": 30000, "visibility_timeout_s": 25200},
        {"concurrency": 0},
    ],
)
def test_inconsistent_cluster_settings_fail_at_start(bad: dict[str, float]) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(cluster=bad)
    assert "cluster" in caught.value.message


def test_transactions_on_one_job_lose_no_update(tmp_path: Path, redis_url: str) -> None:
    settings = make_settings(tmp_path, cluster=cluster_test_settings(redis_url))
    store = JobStore(settings.cluster)
    spec = JobSpec(source="https://example.org/concurrent.mp4")
    record, created = store.create(spec, DAG.names, lambda r: Effects())
    assert created
    again, created_again = store.create(spec, DAG.names, lambda r: Effects())
    assert not created_again and again.id == record.id

    def bump(stage: str) -> None:
        for _ in range(25):

            def change(record: JobRecord, stage: str = stage) -> Effects:
                record.stage(stage).attempts += 1
                return Effects()

            store.transact(record.id, change)

    threads = [threading.Thread(target=bump, args=(name,)) for name in DAG.names]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    final = store.get(record.id)
    assert final is not None
    assert {n: final.stage(n).attempts for n in DAG.names} == {n: 25 for n in DAG.names}


def test_stage_lock_heartbeat_and_outbox_lease(tmp_path: Path, redis_url: str) -> None:
    settings = make_settings(tmp_path, cluster=cluster_test_settings(redis_url))
    store = JobStore(settings.cluster)
    assert store.acquire("jX", "transcode", "token-1")
    assert not store.acquire("jX", "transcode", "token-2")  # a second worker is kept out
    assert store.renew("jX", "transcode", "token-1")
    assert not store.renew("jX", "transcode", "token-2")
    age = store.heartbeat_age("jX", "transcode")
    assert age is not None and 0 <= age < 1
    store.release("jX", "transcode", "token-2")  # not its lock: nothing happens
    assert store.lock_holder("jX", "transcode") == "token-1"
    store.release("jX", "transcode", "token-1")
    assert store.lock_holder("jX", "transcode") is None
    assert store.renew("jX", "transcode", "token-1")  # a lock lost to a Redis restart comes back

    def add(record: JobRecord) -> Effects:
        return Effects(dispatch={"probe": 0.0})

    spec = JobSpec(source="https://example.org/outbox.mp4")
    record, _ = store.create(spec, DAG.names, add)
    lease = store.claim(record.id, "probe")
    assert lease is not None
    assert store.claim(record.id, "probe") is None  # one sender at a time
    store.sent(record.id, "probe", lease)
    assert (record.id, "probe") not in store.due()


def test_submit_is_idempotent_and_lands_in_the_stage_queue(tmp_path: Path, redis_url: str) -> None:
    settings = make_settings(tmp_path, cluster=cluster_test_settings(redis_url, key_prefix="idem"))
    clip = tmp_path / "talk.mp4"
    clip.write_bytes(b"not read: nothing runs in this test")
    producer = Producer(settings)
    [first] = producer.submit([str(clip)], event="msc-2026", priority=9, allow_local=True)
    [second] = producer.submit([str(clip)], event="msc-2026", priority=9, allow_local=True)
    assert first.created and not second.created and first.record.id == second.record.id
    record = producer.get(first.record.id)
    assert record is not None
    root = DAG.topological_order()[0]
    task_id = record.stage_runtime(root).task_id
    assert task_id is not None
    queue = DAG[root].queue.value
    client = producer.store.redis
    messages = [
        json.loads(raw) for key in client.keys(f"{queue}*") for raw in client.lrange(key, 0, -1)
    ]
    assert any(m["headers"]["id"] == task_id for m in messages)
    message = next(m for m in messages if m["headers"]["id"] == task_id)
    assert message["headers"]["task"] == task_name(root)
    assert message["properties"]["priority"] == 0  # the most urgent level on Redis
    assert message["content-type"] == "application/json"
    limits = time_limits(DAG[root], None, settings)  # duration unknown before ingest: longest
    assert message["headers"]["timelimit"] == [limits.hard_s, limits.soft_s]
    cancelled = producer.cancel(record.id)
    assert str(cancelled.state.status) == "cancelled"
    assert cancelled.stage(root).status is StageStatus.CANCELLED
    with pytest.raises(JobConflict):
        producer.cancel(record.id)
    retried = producer.retry(record.id)
    assert str(retried.state.status) == "queued"
    assert all(s.status is StageStatus.PENDING for s in retried.state.stages.values())


def test_settings_sections_match_the_toml_defaults() -> None:
    loaded = load_settings()
    assert loaded.cluster == ClusterSettings()
    assert loaded.api == ApiSettings()


def test_job_listing_pages_and_filters(tmp_path: Path, redis_url: str) -> None:
    settings = make_settings(tmp_path, cluster=cluster_test_settings(redis_url, key_prefix="page"))
    store = JobStore(settings.cluster)
    ids = []
    for i in range(5):
        spec = JobSpec(source=f"https://example.org/page-{i}.mp4", event="ev" if i % 2 else None)
        ids.append(store.create(spec, DAG.names, lambda r: Effects())[0].id)
    newest_first = list(reversed(ids))
    first = store.list_jobs(limit=2)
    assert [r.id for r in first.jobs] == newest_first[:2] and first.next_cursor == 2
    second = store.list_jobs(limit=2, cursor=first.next_cursor or 0)
    third = store.list_jobs(limit=2, cursor=second.next_cursor or 0)
    assert [r.id for r in second.jobs + third.jobs] == newest_first[2:]
    assert store.list_jobs(limit=2, cursor=5).jobs == []
    events = store.list_jobs(event="ev")
    assert [r.id for r in events.jobs] == [ids[3], ids[1]]
    queued = store.list_jobs(status=JobStatus.QUEUED, event="ev", limit=1)
    assert [r.id for r in queued.jobs] == [ids[3]]
    future = datetime.now(UTC) + timedelta(minutes=1)
    assert store.list_jobs(since=future).jobs == []
    assert len(store.list_jobs(since=future - timedelta(minutes=5)).jobs) == 5
