"""Test harness for the Celery executor: a private redis-server on a free port, real
``recast worker`` processes (prefork pool) in their own process groups, settings written to a
TOML file the workers read, and polling with deadlines (never fixed sleeps as assertions)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import redis

from pipeline.core.job import JobSpec
from pipeline.core.settings import Settings
from pipeline.core.stage import Stage
from pipeline.engine.distributed.coordinator import Coordinator, TimeLimits
from pipeline.engine.distributed.jobstore import JobRecord, JobStore
from pipeline.engine.distributed.stagerun import StageRunner, StageRunOutcome

T = TypeVar("T")
ROOT = Path(__file__).resolve().parents[2]
RECAST = str(Path(sys.executable).parent / "recast")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(
    predicate: Callable[[], T | None], timeout: float, message: str, interval: float = 0.1
) -> T:
    """Poll until ``predicate`` returns something truthy; fail with ``message`` at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s: {message}")
        time.sleep(interval)


class RedisServer:
    """``redis-server --port N --save "" --appendonly yes --dir tmp`` that tests can restart."""

    def __init__(self, directory: Path, port: int | None = None):
        self.directory = directory
        self.directory.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        self.process = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "yes",
                "--appendfsync",
                "everysec",  # as config/redis.conf; SHUTDOWN writes the AOF out first
                "--maxmemory-policy",
                "noeviction",
                "--dir",
                str(self.directory),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        client = redis.Redis.from_url(self.url)

        def up() -> bool:
            with contextlib.suppress(redis.RedisError):
                return bool(client.ping())
            return False

        wait_for(up, 15, "redis-server did not start")
        return self

    def stop(self) -> None:
        if self.process is None:
            return
        with contextlib.suppress(redis.RedisError):
            redis.Redis.from_url(self.url).shutdown(nosave=True)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=10)
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self.process = None

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        items = [f"{k} = {_toml_value(v)}" for k, v in value.items() if v is not None]
        return "{" + ", ".join(items) + "}"
    raise TypeError(f"cannot write {value!r} as TOML")


def write_config(path: Path, settings: Settings) -> Path:
    """Every setting as a TOML file (what workers started with RECAST_CONFIG read)."""
    lines = []
    for section, values in settings.model_dump(mode="json").items():
        lines.append(f"[{section}]")
        for key, value in values.items():
            if value is not None:
                lines.append(f"{key} = {_toml_value(value)}")
        lines.append("")
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


class Worker:
    """A real ``recast worker`` (Celery, prefork pool) in its own process group."""

    def __init__(
        self,
        config: Path,
        queues: str,
        name: str,
        log_dir: Path,
        concurrency: int = 1,
        env: dict[str, str] | None = None,
    ):
        self.config = config
        self.queues = queues
        self.hostname = f"{name}@test"
        self.concurrency = concurrency
        self.log_path = log_dir / f"worker-{name}.log"
        self.env = env or {}
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, store: JobStore | None = None, timeout: float = 60) -> Worker:
        env = {**os.environ, "RECAST_CONFIG": str(self.config), **self.env}
        env.pop("RECAST_API__TOKENS", None)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [
                RECAST,
                "--config",
                str(self.config),
                "worker",
                "-Q",
                self.queues,
                "-c",
                str(self.concurrency),
                "-n",
                self.hostname,
            ],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        if store is not None:
            self.wait_up(store, timeout)
        return self

    def wait_up(self, store: JobStore, timeout: float = 60) -> None:
        """Until the worker has announced itself in Redis; fails if it died first."""
        wait_for(
            lambda: self.hostname in store.live_workers() or self._died(),
            timeout,
            f"worker {self.hostname} did not come up",
        )
        if self._died():
            raise AssertionError(f"worker {self.hostname} died:\n{self.log()}")

    def _died(self) -> bool:
        return self.process is not None and self.process.poll() is not None

    @property
    def pgid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def kill(self) -> None:
        """SIGKILL the whole process group (main process, pool, ffmpeg)."""
        if self.process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pgid, signal.SIGKILL)
        self.process.wait(timeout=10)
        self.process = None

    def terminate(self) -> None:
        """SIGTERM to the whole process group: Celery's warm shutdown begins (see :meth:`stop`)."""
        if self.process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pgid, signal.SIGTERM)

    def stop(self, timeout: float = 20, terminated: bool = False) -> None:
        """Warm shutdown and wait for it (``terminated``: :meth:`terminate` was sent already)."""
        if self.process is None:
            return
        if not terminated:
            self.terminate()
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pgid, signal.SIGKILL)  # leftovers of the group
        self.process = None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-6000:]


@contextlib.contextmanager
def workers(*items: Worker, store: JobStore) -> Iterator[list[Worker]]:
    started: list[Worker] = []
    try:
        for item in items:
            started.append(item.start())
        for item in started:
            item.wait_up(store)
        yield started
    finally:
        stop_all(started)


def stop_all(items: list[Worker]) -> None:
    """Stop workers side by side: a warm shutdown takes a second or two (Celery waits for its
    broker connection's pending read), so one after another adds up."""
    for item in items:
        item.terminate()
    for item in items:
        item.stop(terminated=True)


FINAL = ("succeeded", "failed", "cancelled")


class InlineDispatcher:
    """The Celery transport as a list: :func:`run_inline` runs each stage it is handed in this
    process (the store, the coordinator and the stage runner are the production ones)."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, str]] = []
        self.expansions: list[str] = []
        """Job ids of the expansions handed out (``recast.expand``), in order."""

    def send(self, record: JobRecord, stage: Stage, limits: TimeLimits) -> str:
        self.sent.append((record.id, stage.name))
        return f"task-{len(self.sent)}"

    def send_expansion(self, record: JobRecord) -> str:
        self.expansions.append(record.id)
        return f"expand-{len(self.expansions)}"

    def revoke(self, task_ids: list[str]) -> None:
        pass


def run_inline(
    coordinator: Coordinator, runner: StageRunner, spec: JobSpec, timeout: float
) -> tuple[JobRecord | None, list[StageRunOutcome]]:
    """Submit ``spec`` and run every stage the coordinator hands out, until the job ends or
    ``timeout`` passes; the job's record then, and what each stage run came to."""
    dispatcher = coordinator.dispatcher
    assert isinstance(dispatcher, InlineDispatcher)
    coordinator.submit(spec)
    outcomes: list[StageRunOutcome] = []
    deadline = time.monotonic() + timeout
    record = coordinator.store.get(spec.job_id)
    while record is not None and record.state.status not in FINAL and time.monotonic() < deadline:
        coordinator.dispatch_due()
        while dispatcher.sent:
            job_id, stage = dispatcher.sent.pop(0)
            outcomes.append(runner.execute(job_id, stage, task_id="t", worker="test"))
        time.sleep(0.05)
        record = coordinator.store.get(spec.job_id)
    return record, outcomes


def wait_final(store: JobStore, job_id: str, timeout: float) -> JobRecord:
    def final() -> JobRecord | None:
        record = store.get(job_id)
        return record if record is not None and str(record.state.status) in FINAL else None

    return wait_for(final, timeout, f"job {job_id} did not finish: {_describe(store, job_id)}")


def _describe(store: JobStore, job_id: str) -> str:
    record = store.get(job_id)
    if record is None:
        return "no such job"
    return json.dumps(
        {
            "status": str(record.state.status),
            "stages": {n: f"{s.status} {s.detail}" for n, s in record.state.stages.items()},
        }
    )


def processes_matching(text: str) -> list[str]:
    """Command lines of running processes that contain ``text`` (the process table)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            raw = (entry / "cmdline").read_bytes()
            status = (entry / "stat").read_text()
        except OSError:
            continue
        if ") Z " in status:
            continue  # a zombie is already dead
        command = raw.replace(b"\0", b" ").decode(errors="replace")
        if text in command:
            found.append(command)
    return found


SHIMS = ROOT / "tests" / "support" / "bin"
ALL_QUEUES = "ingest,transcode,media,asr,publish"


def cluster_test_settings(redis_url: str, **overrides: Any) -> dict[str, Any]:
    """Crash recovery in seconds instead of minutes, for tests."""
    return {
        "redis_url": redis_url,
        "broker_url": redis_url,
        "result_backend": redis_url,
        "heartbeat_s": 0.5,
        "reaper_stale_s": 3.0,
        "reaper_interval_s": 0.5,
        "cancel_poll_s": 0.2,
        "time_limit_base_s": 120.0,
        "max_time_limit_s": 600.0,
        "visibility_timeout_s": 900.0,
        "progress_interval_s": 0.2,
        "redis_outage_s": 60.0,
        "max_worker_lost_attempts": 2,
        **overrides,
    }


def tiny_sections() -> dict[str, dict[str, Any]]:
    """Settings that keep every stage of the DAG cheap on tiny clips."""
    sections: dict[str, dict[str, Any]] = {"transcript": {"engine": "captions"}}
    if "gc_grace_s" in Settings.model_fields["publish"].annotation.model_fields:  # type: ignore[union-attr]
        sections["publish"] = {"gc_grace_s": 0.0}
    if "media" in Settings.model_fields:
        sections["media"] = {
            "ladder": [{"height": 90, "bitrate_kbps": 120, "peak_kbps": 180}],
            "preset": "ultrafast",
            "mp4_height": 90,
            "audio_bitrate_kbps": 48,
            "thumbnails": {
                "poster_widths": [160],
                "poster_candidates": 3,
                "square_size": 64,
                "storyboard_tile_width": 32,
                "storyboard_target_tiles": 4,
                "preview_duration_s": 1.0,
                "preview_width": 64,
                "preview_fps": 4,
            },
        }
    return sections


def shim_env(slow_file: Path) -> dict[str, str]:
    return {
        "RECAST_FFMPEG_BINARY": str(SHIMS / "ffmpeg-shim"),
        "RECAST_FFPROBE_BINARY": str(SHIMS / "ffprobe-shim"),
        "RECAST_TEST_SLOW_FILE": str(slow_file),
    }
