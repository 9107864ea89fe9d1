"""RabbitMQ as the broker through the same settings (``cluster.broker_url = amqp://...``): a
private RabbitMQ node the test starts carries the tasks; Redis, the tests' own, keeps the job
store and results."""

from __future__ import annotations

from pathlib import Path

import pytest
from kombu import Connection

from pipeline.engine.distributed.jobstore import JobStore
from pipeline.stages import default_dag
from tests.conftest import make_settings
from tests.support.httpserver import MediaServer
from tests.support.media import make_clip
from tests.support.rabbitmq import RabbitMQServer
from tests.support.workers import (
    ALL_QUEUES,
    RedisServer,
    Worker,
    cluster_test_settings,
    tiny_sections,
    wait_final,
    workers,
    write_config,
)
from workers.producer import Producer

pytestmark = pytest.mark.slow


def test_jobs_run_with_rabbitmq_as_the_broker(tmp_path: Path) -> None:
    with (
        RabbitMQServer() as rabbit,
        RedisServer(tmp_path / "redis") as redis_server,
        MediaServer(tmp_path / "www") as server,
    ):
        with Connection(rabbit.url, connect_timeout=5) as connection:
            connection.ensure_connection(max_retries=3)
        celery = cluster_test_settings(redis_server.url, broker_url=rabbit.url)
        settings = make_settings(tmp_path, cluster=celery, **tiny_sections())
        config = write_config(tmp_path / "recast.toml", settings)
        store = JobStore(settings.cluster)
        clip = make_clip(tmp_path / "clip.mp4", duration=1.0, size="160x90")
        urls = [server.put_file(f"rabbit-{i}.mp4", clip) for i in range(2)]
        worker = Worker(config, ALL_QUEUES, "rabbit", tmp_path / "logs", concurrency=2)
        with workers(worker, store=store):
            producer = Producer(settings, store=store)
            urgent = producer.submit(urls[:1], priority=9)[0].record.id
            normal = producer.submit(urls[1:], priority=1)[0].record.id
            for job_id in (urgent, normal):
                record = wait_final(store, job_id, 120)
                assert str(record.state.status) == "succeeded", record.state
                assert all(record.stage_runtime(n).completions == 1 for n in default_dag().names)
        connected = f"Connected to amqp://guest:**@127.0.0.1:{rabbit.port}//"
        assert connected in worker.log_path.read_text()
