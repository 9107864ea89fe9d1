"""The one module that drives ffmpeg and ffprobe (and the only one importing ffmpeg-python).

ffmpeg-python builds argument lists; this module runs them itself with:

- a hard timeout (callers scale it to the media's duration),
- a stall watchdog: no progress for ``stall_timeout_s`` kills the process (``stage.stalled``),
- progress read from ``-progress pipe:1`` and reported as media seconds done,
- cancellation: setting the cancel event kills the process group within a fraction of a second.

Failures come out as :class:`~pipeline.errors.RecastError`, never as tracebacks.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import ffmpeg

from pipeline.errors import ErrorCode, RecastError

FFMPEG = os.environ.get("RECAST_FFMPEG_BINARY", "ffmpeg")
FFPROBE = os.environ.get("RECAST_FFPROBE_BINARY", "ffprobe")

ProgressCallback = Callable[[float], None]


def probe(path: Path, timeout_s: float = 60.0) -> dict[str, Any]:
    """ffprobe's JSON for ``path`` (format and streams); ``media.invalid`` if unreadable."""
    if not path.is_file() or path.stat().st_size == 0:
        raise RecastError(ErrorCode.MEDIA_INVALID, f"{path.name} is empty or missing.")
    args = [
        FFPROBE,
        "-v",
        "error",
        "-print_format",
        "json",
        "-show_format",
        "-show_streams",
        "-show_chapters",
        str(path),
    ]
    try:
        completed = subprocess.run(args, capture_output=True, timeout=timeout_s, check=False)
    except subprocess.TimeoutExpired as exc:
        raise RecastError(
            ErrorCode.MEDIA_INVALID, f"ffprobe took too long on {path.name}."
        ) from exc
    if completed.returncode != 0:
        lines = completed.stderr.decode("utf-8", "replace").strip().splitlines()
        reason = lines[-1] if lines else "ffprobe failed"
        raise RecastError(
            ErrorCode.MEDIA_INVALID, f"{path.name} is not a readable media file ({reason})."
        )
    data: dict[str, Any] = json.loads(completed.stdout or b"{}")
    streams = [s for s in data.get("streams", []) if s.get("codec_type") in ("video", "audio")]
    if not streams:
        raise RecastError(ErrorCode.MEDIA_INVALID, f"{path.name} has no video or audio stream.")
    return data


def media_duration(data: dict[str, Any]) -> float | None:
    """The duration in seconds from ffprobe's JSON (format first, then the longest stream)."""
    value = data.get("format", {}).get("duration")
    if value not in (None, "N/A"):
        return float(value)
    durations = [float(s["duration"]) for s in data.get("streams", []) if s.get("duration")]
    return max(durations) if durations else None


def build_args(stream: Any, overwrite: bool = True) -> list[str]:
    """The argument list (without the binary) for an ffmpeg-python stream graph."""
    args: list[str] = ffmpeg.get_args(stream, overwrite_output=overwrite)
    return args


class _Progress:
    def __init__(self) -> None:
        self.last_change = time.monotonic()
        self.seconds = 0.0


def run(
    args: Sequence[str],
    *,
    timeout_s: float,
    stall_timeout_s: float = 120.0,
    on_progress: ProgressCallback | None = None,
    cancel_event: threading.Event | None = None,
    what: str = "ffmpeg",
) -> None:
    """Run ffmpeg with ``args`` (no binary name), watching it. Raises RecastError on failure."""
    command = [FFMPEG, "-hide_banner", "-nostdin", "-nostats", "-progress", "pipe:1", *args]
    process = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
    progress = _Progress()
    stderr_tail: deque[str] = deque(maxlen=40)
    readers = [
        threading.Thread(target=_read_progress, args=(process, progress, on_progress), daemon=True),
        threading.Thread(target=_read_stderr, args=(process, stderr_tail), daemon=True),
    ]
    for reader in readers:
        reader.start()
    started = time.monotonic()
    failure: RecastError | None = None
    while process.poll() is None:
        time.sleep(0.1)
        now = time.monotonic()
        if cancel_event is not None and cancel_event.is_set():
            failure = RecastError(ErrorCode.JOB_CANCELLED, "The job was cancelled.")
        elif now - started > timeout_s:
            failure = RecastError(
                ErrorCode.STAGE_TIMEOUT, f"{what} did not finish within {timeout_s:.0f} s."
            )
        elif now - progress.last_change > stall_timeout_s:
            failure = RecastError(
                ErrorCode.STAGE_STALLED,
                f"{what} made no progress for {stall_timeout_s:.0f} s and was stopped.",
            )
        if failure is not None:
            kill_group(process)
            break
    process.wait()
    for reader in readers:
        reader.join(timeout=5)
    if failure is not None:
        raise failure
    if process.returncode != 0:
        tail = "; ".join(line for line in list(stderr_tail)[-3:] if line)
        raise RecastError(
            ErrorCode.MEDIA_INVALID,
            f"{what} failed (exit {process.returncode}): {tail or 'no message'}",
        )


def kill_group(process: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)


def _read_progress(
    process: subprocess.Popen[bytes], progress: _Progress, on_progress: ProgressCallback | None
) -> None:
    assert process.stdout is not None
    for raw in process.stdout:
        key, _, value = raw.decode("ascii", "replace").strip().partition("=")
        if key == "out_time_us" and value.isdigit():
            seconds = int(value) / 1_000_000
            if seconds > progress.seconds:
                progress.seconds = seconds
                progress.last_change = time.monotonic()
                if on_progress is not None:
                    on_progress(seconds)


def _read_stderr(process: subprocess.Popen[bytes], tail: deque[str]) -> None:
    assert process.stderr is not None
    for raw in process.stderr:
        tail.append(raw.decode("utf-8", "replace").rstrip())
