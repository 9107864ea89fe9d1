"""Storage faults are transient: a full, read-only or vanished output is ``storage.unavailable``,
retried with backoff (with a budget of its own) until the storage is back, never an internal
error; a failed job's preview is withdrawn even when the output was full as the job failed.

The output is a real tmpfs mounted by the test (we run as root), filled with a real file or
remounted read-only; the publish stages run on real media through the local executor.
"""

from __future__ import annotations

import errno
import logging
import os
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from pipeline.core.card import Card, CardStatus
from pipeline.core.dag import Dag
from pipeline.core.errors import ErrorCode, RecastError, as_recast_error, retry_decision
from pipeline.core.job import JobSpec, JobState, JobStatus
from pipeline.core.settings import Settings, load_settings
from pipeline.core.stage import Queue, Stage, StageContext, StageResult
from pipeline.engine.distributed.coordinator import Coordinator
from pipeline.engine.distributed.jobstore import JobStore
from pipeline.engine.distributed.stagerun import StageRunner, StageRunOutcome
from pipeline.engine.local import LocalExecutor
from pipeline.publish import events, webhooks
from pipeline.publish.publisher import CardPublisher
from pipeline.storage import LocalStorage, open_storage
from tests.conftest import make_settings
from tests.support.publishing import JobMedia, ingest_context, make_info, make_job, publish_dag
from tests.support.workers import (
    InlineDispatcher,
    RedisServer,
    cluster_test_settings,
    run_inline,
)

SLUG = "munich-security-conference-2026"
OUTAGE_S = 10.0


@contextmanager
def tmpfs(directory: Path, size: str) -> Iterator[Path]:
    """A tmpfs of ``size`` mounted on ``directory`` for the block; unmounted afterwards."""
    directory.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(directory)], check=True
    )
    try:
        yield directory
    finally:
        subprocess.run(["mount", "-o", "remount,rw", str(directory)], check=False)
        if subprocess.run(["umount", str(directory)], check=False).returncode != 0:
            subprocess.run(["umount", "-l", str(directory)], check=True)


def fill(directory: Path) -> Path:
    """Write a file into ``directory`` until its file system is full; returns the file."""
    filler = directory / "filler.bin"
    chunk = b"\0" * (1 << 20)
    with filler.open("wb") as handle:
        try:
            while True:
                handle.write(chunk)
                handle.flush()
        except OSError as error:
            assert error.errno == errno.ENOSPC
    with pytest.raises(OSError):  # really full: not even a small file fits
        (directory / "probe.bin").write_bytes(b"x" * 65536)
    (directory / "probe.bin").unlink(missing_ok=True)
    return filler


def remount(directory: Path, mode: str) -> None:
    subprocess.run(["mount", "-o", f"remount,{mode}", str(directory)], check=True)


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> JobMedia:
    return JobMedia(tmp_path_factory.mktemp("fault-media"), duration=2.0)


@pytest.fixture(autouse=True)
def _stop_webhooks() -> Iterator[None]:
    yield
    webhooks.stop_dispatchers()


def fault_settings(
    tmp_path: Path,
    storage: dict[str, Any] | None = None,
    cluster: dict[str, Any] | None = None,
    **publish: Any,
) -> Settings:
    """Short backoff for the test; max_attempts stays 1: storage faults have their own budget."""
    return make_settings(
        tmp_path,
        executor={"retry_base_delay_s": 0.1, "retry_max_delay_s": 0.5, "max_attempts": 1},
        publish={"gc_grace_s": 0, **publish},
        storage=storage or {},
        cluster=cluster or {},
    )


class Details:
    """Observes a job: every stage detail it reports."""

    def __init__(self) -> None:
        self.seen: list[str] = []
        self.storage_retry = threading.Event()

    def stage_changed(self, job: JobState, stage: str) -> None:
        detail = job.stages[stage].detail
        self.seen.append(detail)
        if ErrorCode.STORAGE_UNAVAILABLE in detail:
            self.storage_retry.set()


# -- the mapping -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "code",
    [errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EIO, errno.ESTALE],
    ids=errno.errorcode.get,
)
def test_storage_errnos_are_transient_storage_unavailable(code: int) -> None:
    error = as_recast_error(OSError(code, os.strerror(code), "/srv/out/x"))
    assert error.code is ErrorCode.STORAGE_UNAVAILABLE and error.transient and error.hint


def test_other_os_errors_stay_internal_and_enoent_counts_only_for_a_vanished_root(
    tmp_path: Path,
) -> None:
    denied = as_recast_error(PermissionError(errno.EACCES, "Permission denied"))
    assert denied.code is ErrorCode.INTERNAL
    missing = FileNotFoundError(errno.ENOENT, "No such file or directory")
    assert as_recast_error(missing, [tmp_path]).code is ErrorCode.INTERNAL
    assert as_recast_error(missing, [tmp_path / "gone"]).code is ErrorCode.STORAGE_UNAVAILABLE


def test_a_vanished_output_root_is_unavailable_and_not_made_again(tmp_path: Path) -> None:
    root = tmp_path / "out"
    storage = LocalStorage(root)
    storage.put_bytes("card/a.json", b"{}")
    (root / "card" / "a.json").unlink()
    (root / "card").rmdir()
    root.rmdir()
    with pytest.raises(RecastError) as raised:
        storage.put_bytes("card/b.json", b"{}")
    assert raised.value.code is ErrorCode.STORAGE_UNAVAILABLE
    with pytest.raises(RecastError):
        storage.get_bytes("card/a.json")  # "absent" would be a lie: the whole output is gone
    assert not root.exists(), "a vanished root is never created again (it hides the outage)"


def test_a_lock_that_stays_taken_is_storage_unavailable(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path / "out")
    other = LocalStorage(tmp_path / "out")  # flock excludes other open file descriptions
    with (
        storage.lock("card/x"),
        pytest.raises(RecastError) as raised,
        other.lock("card/x", timeout_s=0.2),
    ):
        pass
    assert raised.value.code is ErrorCode.STORAGE_UNAVAILABLE and raised.value.transient


def test_default_settings_wait_out_a_long_outage() -> None:
    """With the shipped defaults, storage.unavailable is retried for storage.retry_span_s at
    least (far over a 10 s outage), while other transient errors keep executor.max_attempts."""
    defaults = load_settings()
    config = defaults.executor
    error = RecastError(ErrorCode.STORAGE_UNAVAILABLE, "full")
    waited, attempt = 0.0, 1
    while True:
        decision = retry_decision(
            error,
            attempt,
            max_attempts=config.max_attempts,
            base_delay_s=config.retry_base_delay_s,
            max_delay_s=config.retry_max_delay_s,
            storage_span_s=defaults.storage.retry_span_s,
        )
        if not decision.retry:
            break
        waited += decision.delay_s
        attempt += 1
    assert waited >= defaults.storage.retry_span_s >= 10 * OUTAGE_S
    timeout = RecastError(ErrorCode.NETWORK_TIMEOUT, "slow")
    assert not retry_decision(
        timeout,
        config.max_attempts,
        max_attempts=config.max_attempts,
        storage_span_s=defaults.storage.retry_span_s,
    ).retry


# -- outages while jobs publish ----------------------------------------------------------------


@pytest.mark.slow
def test_ten_jobs_publish_through_a_ten_second_full_output(media: JobMedia, tmp_path: Path) -> None:
    settings = fault_settings(tmp_path)
    out = Path(settings.storage.output)
    jobs = [
        make_job(media, settings, info=make_info(source_id=f"full{n}"), event=None)
        for n in range(10)
    ]
    states: dict[str, JobState] = {}

    def run(spec: JobSpec) -> None:
        states[spec.job_id] = LocalExecutor(settings, dag=publish_dag()).run(spec)

    with tmpfs(out, "48m"):
        filler = fill(out)
        started = time.monotonic()
        threads = [threading.Thread(target=run, args=(job.spec,)) for job in jobs]
        for thread in threads:
            thread.start()
        time.sleep(max(0.0, OUTAGE_S - (time.monotonic() - started)))
        assert not list(out.glob("*/card.json")), "nothing could be published while full"
        filler.unlink()
        for thread in threads:
            thread.join(timeout=120)
        for job in jobs:
            state = states[job.spec.job_id]
            assert state.status is JobStatus.SUCCEEDED, state.error
            assert state.stages["publish_playable"].attempts > 1, "the outage was hit"
            card = Card.model_validate_json((out / job.card_id / "card.json").read_bytes())
            assert card.status is CardStatus.READY
            assert (out / job.card_id / "hls" / "master.m3u8").is_file()


def test_read_only_output_is_transient_then_publishes_once_writable(
    media: JobMedia, tmp_path: Path
) -> None:
    settings = fault_settings(tmp_path)
    out = Path(settings.storage.output)
    job = make_job(media, settings, event=None)
    details = Details()
    result: list[JobState] = []
    with tmpfs(out, "16m"):
        remount(out, "ro")
        with pytest.raises(RecastError) as raised:
            open_storage(settings).put_bytes("probe/x.json", b"{}")
        assert raised.value.code is ErrorCode.STORAGE_UNAVAILABLE and raised.value.transient
        executor = LocalExecutor(settings, dag=publish_dag(), observer=details)
        worker = threading.Thread(target=lambda: result.append(executor.run(job.spec)))
        worker.start()
        assert details.storage_retry.wait(30), details.seen
        remount(out, "rw")
        worker.join(timeout=60)
        [state] = result
        assert state.status is JobStatus.SUCCEEDED, state.error
        card = Card.model_validate_json((out / job.card_id / "card.json").read_bytes())
        assert card.status is CardStatus.READY


@pytest.mark.slow
def test_the_celery_path_retries_a_full_output_beyond_max_attempts(
    media: JobMedia, tmp_path: Path
) -> None:
    with RedisServer(tmp_path / "redis") as redis_server:
        settings = fault_settings(tmp_path, cluster=cluster_test_settings(redis_server.url))
        out = Path(settings.storage.output)
        store = JobStore(settings.cluster)
        coordinator = Coordinator(settings, store, InlineDispatcher(), dag=publish_dag())
        runner = StageRunner(coordinator, publisher=CardPublisher(settings))
        job = make_job(media, settings, event=None)
        with tmpfs(out, "16m"):
            threading.Timer(1.0, fill(out).unlink).start()
            record, outcomes = run_inline(coordinator, runner, job.spec, timeout=60)
            assert record is not None and record.state.status is JobStatus.SUCCEEDED, record
            assert StageRunOutcome.RETRY in outcomes
            assert record.stage("publish_playable").attempts > 1, "the outage was hit"
            card = Card.model_validate_json((out / job.card_id / "card.json").read_bytes())
            assert card.status is CardStatus.READY


@pytest.mark.slow
def test_a_job_failing_while_the_output_is_full_leaves_no_card_once_it_is_back(
    media: JobMedia, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = fault_settings(
        tmp_path, {"retry_span_s": 60}, webhook_urls=["http://127.0.0.1:9/hook"]
    )
    out = Path(settings.storage.output)
    job = make_job(media, settings, stages=("ingest",))
    frees: list[threading.Timer] = []

    def fail_while_full(ctx: StageContext) -> StageResult:
        filler = fill(out)
        frees.append(threading.Timer(1.0, filler.unlink))
        frees[0].start()
        raise RecastError(ErrorCode.MEDIA_INVALID, "The file does not play.")

    def already_done(ctx: StageContext) -> StageResult:
        raise AssertionError("ingest is finished")

    dag = Dag.of(
        [
            Stage("ingest", Queue.INGEST, already_done),
            Stage("probe", Queue.MEDIA, fail_while_full, ("ingest",)),
        ]
    )
    with tmpfs(out, "16m"):
        publisher = CardPublisher(settings)
        publisher.preview(ingest_context(job.spec, settings))
        storage = LocalStorage(out)
        assert (out / job.card_id / "card.json").is_file()
        assert [e.id for e in events.read_index(storage, SLUG).cards] == [job.card_id]  # type: ignore[union-attr]
        caplog.set_level(logging.WARNING, logger="recast.storage")
        state = LocalExecutor(settings, dag=dag, publisher=publisher).run(job.spec)
        assert frees, "the failing stage ran"
        frees[0].join()
        assert state.status is JobStatus.FAILED and state.error is not None
        assert state.error.code == ErrorCode.MEDIA_INVALID
        assert any("trying again" in r.getMessage() for r in caplog.records), "hit the outage"
        assert not (out / job.card_id).exists(), "the preview and its files are withdrawn"
        assert events.read_index(storage, SLUG).cards == []  # type: ignore[union-attr]
    outbox = webhooks.Outbox.for_settings(settings)
    kinds = [delivery.event_type for delivery in map(outbox.load, outbox.files()) if delivery]
    assert webhooks.EventType.JOB_FAILED in kinds
