"""Nothing shared but Redis and storage: two workers with separate local work directories,
the workspace and the output in S3 (moto's server), each worker's cache lost on the way."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from pipeline.core.job import JobSpec, StageStatus
from pipeline.core.stage import Queue
from pipeline.engine.distributed.jobstore import JobRecord, JobStore
from pipeline.stages import default_dag
from tests.conftest import make_settings
from tests.support.httpserver import MediaServer
from tests.support.media import make_clip
from tests.support.s3server import S3Server
from tests.support.workers import (
    RedisServer,
    Worker,
    cluster_test_settings,
    tiny_sections,
    wait_final,
    wait_for,
    workers,
    write_config,
)
from workers.producer import Producer

pytestmark = pytest.mark.slow

DAG = default_dag()
FRONT = f"{Queue.INGEST},{Queue.PUBLISH}"
BACK = f"{Queue.TRANSCODE},{Queue.MEDIA},{Queue.ASR}"


def _keys(s3: S3Server, prefix: str) -> set[str]:
    client: Any = boto3.client(
        "s3",
        endpoint_url=s3.endpoint_url,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    pages = client.get_paginator("list_objects_v2").paginate(Bucket="recast", Prefix=prefix)
    return {item["Key"] for page in pages for item in page.get("Contents", [])}


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    tmp = tmp_path_factory.mktemp("s3cluster")
    with (
        RedisServer(tmp / "redis") as redis_server,
        S3Server() as s3,
        MediaServer(tmp / "www") as server,
    ):
        s3.bucket("recast")
        configs = {}
        for name in ("front", "back"):
            settings = make_settings(
                tmp,
                storage={"output": "s3://recast/out", "workspace": str(tmp / f"cache-{name}")},
                cluster=cluster_test_settings(redis_server.url, workspace_store="s3://recast/work"),
                publish={**s3.publish_settings(), "gc_grace_s": 0.0},
                **{k: v for k, v in tiny_sections().items() if k != "publish"},
            )
            configs[name] = (settings, write_config(tmp / f"{name}.toml", settings))
        store = JobStore(configs["front"][0].cluster)
        front = Worker(configs["front"][1], FRONT, "front", tmp / "logs", concurrency=2)
        back = Worker(configs["back"][1], BACK, "back", tmp / "logs", concurrency=2)
        with workers(front, back, store=store):
            yield {
                "tmp": tmp,
                "s3": s3,
                "server": server,
                "store": store,
                "producer": Producer(configs["front"][0], store=store),
            }


def test_workers_share_only_redis_and_s3(setup: dict[str, Any]) -> None:
    tmp: Path = setup["tmp"]
    store: JobStore = setup["store"]
    clip = make_clip(tmp / "clips" / "remote.mp4", duration=2.0, size="160x90")
    url = setup["server"].put_file("remote.mp4", clip)
    job_id = JobSpec(source=url).job_id
    # The thumbnails stage (or another back-end stage) fails once, from a file in its way.
    back_stages = [s.name for s in DAG if s.queue not in (Queue.INGEST, Queue.PUBLISH)]
    target = "thumbnails" if "thumbnails" in back_stages else back_stages[-1]
    blocker = tmp / "cache-back" / job_id / f".{target}.partial"
    blocker.parent.mkdir(parents=True)
    blocker.write_text("in the way")
    [submitted] = setup["producer"].submit([url])
    assert submitted.record.id == job_id

    def settled() -> JobRecord | None:
        record = store.get(job_id)
        assert record is not None
        running = any(s.status is StageStatus.RUNNING for s in record.state.stages.values())
        return record if str(record.state.status) == "failed" and not running else None

    failed = wait_for(settled, 90, "the job did not fail at the blocked stage")
    assert failed.stage(target).status is StageStatus.FAILED
    # Each worker keeps only a cache it can lose: both are wiped before the retry.
    shutil.rmtree(tmp / "cache-front")
    shutil.rmtree(tmp / "cache-back")
    setup["producer"].retry(job_id)
    record = wait_final(store, job_id, 120)
    assert str(record.state.status) == "succeeded", record.state

    hosts = {"front": "front@test", "back": "back@test"}
    for stage in DAG:
        expected = hosts["front"] if stage.queue in (Queue.INGEST, Queue.PUBLISH) else hosts["back"]
        assert record.stage_runtime(stage.name).worker == expected, stage.name
        assert f"work/{job_id}/{stage.name}/_stage.json" in _keys(setup["s3"], f"work/{job_id}/")
    # The back worker got the downloaded source from S3, not from the front worker's disk.
    back_ingest = tmp / "cache-back" / job_id / "ingest"
    assert any(p.name.startswith("media.") for p in back_ingest.iterdir())
    assert record.state.card_id is not None
    published = _keys(setup["s3"], f"out/{record.state.card_id}/")
    assert f"out/{record.state.card_id}/card.json" in published
    assert f"out/{record.state.card_id}/manifest.json" in published
    assert not (tmp / "out").exists()  # nothing published to a local directory
