"""Storage back ends: S3 (against moto's S3 server over HTTP) and local, and their concurrency
primitives (update without lost writes, locks) proven under real contention."""

from __future__ import annotations

import json
import multiprocessing
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
from botocore.config import Config

from pipeline.core.errors import ErrorCode, RecastError
from pipeline.storage import LocalStorage, Storage, open_storage
from pipeline.storage.s3 import S3Storage, parse_s3_url
from tests.conftest import make_settings
from tests.support.s3server import S3Server


@pytest.fixture(scope="module")
def s3() -> Iterator[S3Server]:
    with S3Server() as server:
        yield server


_buckets = iter(range(1000))


def s3_storage(s3: S3Server, prefix: str = "cards") -> S3Storage:
    bucket = s3.bucket(f"bucket-{next(_buckets)}")
    settings = make_settings(
        Path("/nonexistent"), publish=s3.publish_settings(), storage={"output": "x"}
    )
    publish = settings.publish
    return S3Storage(
        f"s3://{bucket}/{prefix}",
        endpoint_url=publish.s3_endpoint_url,
        region=publish.s3_region,
        access_key_id=publish.s3_access_key_id,
        secret_access_key=publish.s3_secret_access_key,
    )


@pytest.fixture(params=["local", "s3"])
def storage(request: pytest.FixtureRequest, tmp_path: Path, s3: S3Server) -> Storage:
    if request.param == "local":
        return LocalStorage(tmp_path / "out")
    return s3_storage(s3)


def test_parse_s3_url() -> None:
    assert parse_s3_url("s3://media/recast/cards") == ("media", "recast/cards/")
    assert parse_s3_url("s3://media") == ("media", "")
    with pytest.raises(ValueError):
        parse_s3_url("https://media/x")


def test_open_storage_chooses_the_back_end_by_url(tmp_path: Path, s3: S3Server) -> None:
    bucket = s3.bucket("chosen")
    settings = make_settings(
        tmp_path,
        storage={"output": f"s3://{bucket}/pub", "public_base_url": "https://cdn.example/pub"},
        publish=s3.publish_settings(),
    )
    storage = open_storage(settings)
    assert isinstance(storage, S3Storage)
    storage.put_bytes("a/card.json", b"{}", "application/json")
    head = s3.client().head_object(Bucket=bucket, Key="pub/a/card.json")
    assert head["ContentType"] == "application/json"
    assert storage.url_for("a/card.json") == "https://cdn.example/pub/a/card.json"
    assert isinstance(open_storage(make_settings(tmp_path)), LocalStorage)


def test_objects_round_trip(storage: Storage, tmp_path: Path) -> None:
    source = tmp_path / "seg.bin"
    source.write_bytes(b"\x00\x01" * 5000)
    storage.put_file("card1/hls/seg0.m4s", source, "video/iso.segment")
    storage.put_bytes("card1/card.json", b'{"a": 1}', "application/json")
    storage.put_bytes("card10/card.json", b"{}", "application/json")
    assert storage.get_bytes("card1/hls/seg0.m4s") == source.read_bytes()
    assert storage.exists("card1/card.json")
    assert not storage.exists("card1/none.json")
    assert storage.get_bytes("card1/none.json") is None
    assert storage.list("card1/") == ["card1/card.json", "card1/hls/seg0.m4s"]
    storage.delete("card1/card.json")
    storage.delete("card1/card.json")  # absent: no error
    assert storage.list("card1/") == ["card1/hls/seg0.m4s"]


def test_keys_cannot_escape(storage: Storage) -> None:
    with pytest.raises(ValueError):
        storage.put_bytes("../outside.json", b"x")


def _counter_change(pause: float):  # type: ignore[no-untyped-def]
    def change(current: bytes | None) -> bytes:
        value = json.loads(current) if current else {"n": 0, "by": []}
        time.sleep(pause)  # widen the read-modify-write window
        value["n"] += 1
        return json.dumps(value).encode()

    return change


def _hammer(target, threads: int, rounds: int) -> None:  # type: ignore[no-untyped-def]
    workers = [
        threading.Thread(target=lambda: [target() for _ in range(rounds)]) for _ in range(threads)
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()


def test_update_loses_no_concurrent_write(storage: Storage) -> None:
    change = _counter_change(0.01)
    _hammer(lambda: storage.update("events/x.json", change, "application/json"), 4, 5)
    stored = storage.get_bytes("events/x.json")
    assert stored is not None and json.loads(stored)["n"] == 20
    assert storage.list("") == ["events/x.json"], "locks and temporary files stay hidden"


def test_the_same_workload_without_update_loses_writes(storage: Storage) -> None:
    """The control: a plain read-then-write under the same contention does lose updates, so the
    test above would catch an update() that did not protect its read-modify-write."""
    change = _counter_change(0.01)

    def naive() -> None:
        storage.put_bytes("events/y.json", change(storage.get_bytes("events/y.json")))

    _hammer(naive, 4, 5)
    stored = storage.get_bytes("events/y.json")
    assert stored is not None and json.loads(stored)["n"] < 20


def test_lock_excludes_other_holders(storage: Storage) -> None:
    inside = 0
    most = 0
    guard = threading.Lock()

    def work() -> None:
        nonlocal inside, most
        with storage.lock("card/abc", timeout_s=30):
            with guard:
                inside += 1
                most = max(most, inside)
            time.sleep(0.01)
            with guard:
                inside -= 1

    _hammer(work, 4, 3)
    assert most == 1


def test_lock_times_out_as_a_transient_error(storage: Storage) -> None:
    entered = threading.Event()
    leave = threading.Event()

    def hold() -> None:
        with storage.lock("busy"):
            entered.set()
            leave.wait(5)

    holder = threading.Thread(target=hold)
    holder.start()
    entered.wait(5)
    try:
        with pytest.raises(RecastError) as info, storage.lock("busy", timeout_s=0.2):
            pass
        assert info.value.transient
    finally:
        leave.set()
        holder.join()
    with storage.lock("busy", timeout_s=1):
        pass


def test_expired_s3_lock_of_a_crashed_publisher_is_taken_over(s3: S3Server) -> None:
    storage = s3_storage(s3)
    stale = json.dumps({"owner": "crashed", "expires": time.time() - 1}).encode()
    storage.client.put_object(Bucket=storage.bucket, Key=storage.prefix + ".locks/x", Body=stale)
    with storage.lock("x", timeout_s=2):
        body = storage.get_bytes(".locks/x")
        assert body is not None and json.loads(body)["owner"] != "crashed"
    assert storage.get_bytes(".locks/x") is None, "released: the lock object is gone"


def test_live_s3_lock_is_not_taken_over(s3: S3Server) -> None:
    storage = s3_storage(s3)
    live = json.dumps({"owner": "busy", "expires": time.time() + 60}).encode()
    storage.client.put_object(Bucket=storage.bucket, Key=storage.prefix + ".locks/y", Body=live)
    with pytest.raises(RecastError), storage.lock("y", timeout_s=0.3):
        pass


def _process_updates(root: str, rounds: int) -> None:
    storage = LocalStorage(root)
    change = _counter_change(0.005)
    for _ in range(rounds):
        storage.update("events/p.json", change)


def test_local_update_across_processes(tmp_path: Path) -> None:
    context = multiprocessing.get_context("fork")
    procs = [context.Process(target=_process_updates, args=(str(tmp_path), 10)) for _ in range(3)]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(30)
    stored = LocalStorage(tmp_path).get_bytes("events/p.json")
    assert stored is not None and json.loads(stored)["n"] == 30


def test_unreachable_endpoint_is_a_transient_error() -> None:
    client = boto3.client(
        "s3",
        endpoint_url="http://127.0.0.1:9",
        region_name="us-east-1",
        aws_access_key_id="x",
        aws_secret_access_key="x",
        config=Config(retries={"max_attempts": 1}, connect_timeout=1),
    )
    storage = S3Storage("s3://nowhere/p", client=client)
    with pytest.raises(RecastError) as info:
        storage.put_bytes("a/card.json", b"{}")
    assert info.value.code is ErrorCode.NETWORK_CONNECTION
    assert info.value.transient
