"""A job's log, per stage, in Redis: what the stage logged and its tools' own output, bounded.

:class:`JobLogHandler` is a logging handler the workers attach (``pipeline.core.logs.attach``):
every record that carries a job id and a stage (the stage's own lines, ffmpeg's stderr
under ``recast.tool.ffmpeg``, yt-dlp's messages under ``recast.tool.ytdlp``) is appended as a
JSON line to the stage's ``joblog`` key (:mod:`pipeline.engine.distributed.keys`), a list
trimmed to the last ``ops.job_log_lines`` lines, each cut at ``ops.job_log_line_chars``, kept
for ``ops.job_log_ttl_s``. Redis holds it because workers share no disk; the jobs board reads the
failed stage's tail from here.

Lines are queued in memory and written by a background thread in batches (a stage never
waits on Redis to log, and a Redis outage only drops lines); :meth:`JobLogHandler.flush`
writes what is queued at once (the worker calls it when a task ends).
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections import deque
from typing import Any

import redis

from pipeline.core.logs import JsonLineFormatter, context_of
from pipeline.core.settings import OpsSettings
from pipeline.engine.distributed.keys import RedisKeys

QUEUE_LIMIT = 20_000
FLUSH_EVERY_S = 0.25


def cut(entry: dict[str, Any], max_chars: int) -> str:
    """The entry as one JSON line of at most about ``max_chars`` characters: a traceback
    keeps its end (where the error is), a message its start; ``truncated`` marks the cut."""
    line = json.dumps(entry, ensure_ascii=False)
    if len(line) <= max_chars:
        return line
    entry = {**entry, "truncated": True}
    for key in ("exception", "message"):
        for _ in range(4):  # escaping makes the first estimate short now and then
            value = str(entry.get(key) or "")
            overflow = len(json.dumps(entry, ensure_ascii=False)) - max_chars
            if not value or overflow <= 0:
                break
            keep = max(0, len(value) - overflow - 8)
            entry[key] = (
                f"[...]{value[len(value) - keep :]}"
                if key == "exception"
                else (f"{value[:keep]} [...]")
            )
    return json.dumps(entry, ensure_ascii=False)


class JobLogHandler(logging.Handler):
    """Copies records with a job id and a stage into the job's per-stage log in Redis."""

    def __init__(self, client: redis.Redis, prefix: str, settings: OpsSettings):
        super().__init__(logging.DEBUG)
        self.client = client
        self.keys = RedisKeys(prefix)
        self.max_lines = settings.job_log_lines
        self.max_chars = settings.job_log_line_chars
        self.ttl_s = settings.job_log_ttl_s
        self.formatter_ = JsonLineFormatter()
        self.dropped = 0
        self._pending: deque[tuple[str, str]] = deque(maxlen=QUEUE_LIMIT)
        self._write_lock = threading.Lock()
        self._wake = threading.Event()
        self._pid = 0
        self._thread: threading.Thread | None = None

    def emit(self, record: logging.LogRecord) -> None:
        context = context_of(record)
        job_id, stage = context.get("job_id"), context.get("stage")
        if not job_id or not stage:
            return
        try:
            line = cut(self.formatter_.entry(record), self.max_chars)
        except Exception:
            self.dropped += 1
            return
        self._pending.append((self.keys.job_log(job_id, stage), line))
        self._ensure_thread()

    def _ensure_thread(self) -> None:
        if self._pid == os.getpid() and self._thread is not None and self._thread.is_alive():
            return
        self._pid = os.getpid()
        self._write_lock = threading.Lock()  # a fork may have copied it held
        self._thread = threading.Thread(target=self._loop, name="recast-joblog", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while True:
            self._wake.wait(FLUSH_EVERY_S)
            self._wake.clear()
            self.write_pending()

    def write_pending(self) -> None:
        """Write queued lines (one round trip per batch); on a Redis failure they are lost."""
        with self._write_lock:
            batch: dict[str, list[str]] = {}
            while self._pending:
                key, line = self._pending.popleft()
                batch.setdefault(key, []).append(line)
            if not batch:
                return
            try:
                with self.client.pipeline(transaction=False) as pipe:
                    for key, lines in batch.items():
                        pipe.rpush(key, *lines[-self.max_lines :])
                        pipe.ltrim(key, -self.max_lines, -1)
                        pipe.expire(key, self.ttl_s)
                    pipe.execute()
            except (redis.RedisError, OSError):
                self.dropped += sum(len(lines) for lines in batch.values())

    def flush(self) -> None:
        self.write_pending()


def read_log(
    client: redis.Redis, prefix: str, job_id: str, stage: str, limit: int = 50
) -> list[str]:
    """The last ``limit`` lines of a stage's log (JSON lines), oldest first."""
    return read_tails(client, prefix, [(job_id, stage)], limit)[(job_id, stage)]


def read_tails(
    client: redis.Redis, prefix: str, wanted: list[tuple[str, str]], limit: int
) -> dict[tuple[str, str], list[str]]:
    """Tails of several stages' logs in one round trip: (job id, stage) -> lines."""
    if not wanted:
        return {}
    keys = RedisKeys(prefix)
    with client.pipeline(transaction=False) as pipe:
        for job_id, stage in wanted:
            pipe.lrange(keys.job_log(job_id, stage), -limit, -1)
        results = pipe.execute()
    return {
        key: [i.decode("utf-8", "replace") if isinstance(i, bytes) else str(i) for i in lines]
        for key, lines in zip(wanted, results, strict=True)
    }


def render_line(line: str) -> str:
    """A JSON log line as text for people: ``time level logger: message``."""
    try:
        entry = json.loads(line)
    except ValueError:
        return line
    logger = str(entry.get("logger", ""))
    source = logger.rsplit(".", 1)[-1] if logger.startswith("recast.tool.") else logger
    time = str(entry.get("time", ""))[11:19]
    return f"{time} {entry.get('level', '')} {source}: {entry.get('message', '')}"
