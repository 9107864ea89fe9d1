"""The one module that drives ffmpeg and ffprobe (and the only one importing ffmpeg-python).

ffmpeg-python builds argument lists; this module runs them itself with:

- a hard timeout (callers scale it to the media's duration),
- a stall watchdog: no progress for ``stall_timeout_s`` kills the process (``stage.stalled``),
- progress read from ``-progress pipe:1`` and reported as media seconds done,
- cancellation: setting the cancel event kills the process group within a fraction of a second.

It also builds the argument lists of the media stages from small typed descriptions
(:class:`Graph`: one input, a video and an audio filter chain, each split into branches, and
outputs mapping those branches), so no other module needs ffmpeg-python.

Failures come out as :class:`~pipeline.errors.RecastError`, never as tracebacks.
"""

from __future__ import annotations

import contextlib
import contextvars
import ctypes
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import ffmpeg

from pipeline.errors import ErrorCode, RecastError

FFMPEG = os.environ.get("RECAST_FFMPEG_BINARY", "ffmpeg")
FFPROBE = os.environ.get("RECAST_FFPROBE_BINARY", "ffprobe")

ProgressCallback = Callable[[float], None]

_tool_log = logging.getLogger("recast.tool.ffmpeg")
"""ffmpeg's own stderr, line by line, at DEBUG (a job's log keeps it; see pipeline.logs)."""


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


def last_packet_time(path: Path, from_s: float, timeout_s: float = 60.0) -> float | None:
    """The latest timestamp among the packets of ``path`` from ``from_s`` on (demuxing only,
    after a seek: cheap at any length). None when no packet could be read there."""
    args = [
        FFPROBE,
        "-v",
        "error",
        "-read_intervals",
        f"{max(0.0, from_s):.3f}%",
        "-show_entries",
        "packet=pts_time,dts_time,duration_time",
        "-print_format",
        "json",
        str(path),
    ]
    try:
        completed = subprocess.run(args, capture_output=True, timeout=timeout_s, check=False)
        data = json.loads(completed.stdout or b"{}")
    except (subprocess.TimeoutExpired, json.JSONDecodeError):
        return None
    latest: float | None = None
    for packet in data.get("packets", []):
        stamp = packet.get("pts_time", packet.get("dts_time"))
        if stamp in (None, "N/A"):
            continue
        end = float(stamp) + float(packet.get("duration_time") or 0)
        latest = end if latest is None else max(latest, end)
    return latest


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


@dataclass(frozen=True)
class Filter:
    """One filter of a chain: ``Filter("scale", (1280, 720))``, ``Filter("fps", options=...)``."""

    name: str
    args: tuple[Any, ...] = ()
    options: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Output:
    """One output file and the branches it takes (indexes into the graph's branches; several
    for a muxer taking many streams, such as HLS with ``var_stream_map``)."""

    target: str
    options: Mapping[str, Any] = field(default_factory=dict)
    video: int | tuple[int, ...] | None = None
    audio: int | tuple[int, ...] | None = None
    all_streams: bool = False
    """Map every stream of the input as it is (for stream copies and checks)."""


@dataclass(frozen=True)
class Graph:
    """One input, a common video chain split into branches, the same for audio, and outputs.

    With no branches, index 0 is the common chain itself. A branch no output takes is not
    built; an input stream no output takes is not decoded.
    """

    source: str
    outputs: Sequence[Output]
    input_options: Mapping[str, Any] = field(default_factory=dict)
    video_stream: str = "v:0"
    audio_stream: str = "a:0"
    video: Sequence[Filter] = ()
    video_branches: Sequence[Sequence[Filter]] = ()
    audio: Sequence[Filter] = ()
    audio_branches: Sequence[Sequence[Filter]] = ()
    global_args: Sequence[str] = ()
    cascade: bool = False
    """Feed each video branch from the one before it (not from the common chain): a ladder of
    ever smaller scalers does each scale from the previous rung, which costs less."""


def _chain(stream: Any, filters: Sequence[Filter]) -> Any:
    for item in filters:
        stream = stream.filter(item.name, *item.args, **dict(item.options))
    return stream


def _branches(
    stream: Any,
    common: Sequence[Filter],
    branches: Sequence[Sequence[Filter]],
    split: str,
    cascade: bool = False,
) -> list[Any]:
    stream = _chain(stream, common)
    if cascade and len(branches) > 1:
        outputs = []
        for number, chain in enumerate(branches):
            stream = _chain(stream, chain)
            if number == len(branches) - 1:
                outputs.append(stream)
            else:
                parts = stream.filter_multi_output(split, 2)
                outputs.append(parts[0])
                stream = parts[1]
        return outputs
    if len(branches) <= 1:
        return [_chain(stream, branches[0] if branches else ())]
    parts = stream.filter_multi_output(split, len(branches))
    return [_chain(parts[i], chain) for i, chain in enumerate(branches)]


def _indexes(value: int | tuple[int, ...] | None) -> tuple[int, ...]:
    if value is None:
        return ()
    return (value,) if isinstance(value, int) else value


def graph_args(graph: Graph) -> list[str]:
    """The ffmpeg argument list (without the binary) for ``graph``."""
    source = ffmpeg.input(graph.source, **dict(graph.input_options))
    uses_video = any(_indexes(o.video) for o in graph.outputs)
    uses_audio = any(_indexes(o.audio) for o in graph.outputs)
    video = (
        _branches(
            source[graph.video_stream], graph.video, graph.video_branches, "split", graph.cascade
        )
        if uses_video
        else []
    )
    audio = (
        _branches(source[graph.audio_stream], graph.audio, graph.audio_branches, "asplit")
        if uses_audio
        else []
    )
    outputs = []
    for output in graph.outputs:
        streams = [source] if output.all_streams else []
        streams += [video[i] for i in _indexes(output.video)]
        streams += [audio[i] for i in _indexes(output.audio)]
        outputs.append(ffmpeg.output(*streams, output.target, **dict(output.options)))
    node = ffmpeg.merge_outputs(*outputs)
    if graph.global_args:
        node = node.global_args(*graph.global_args)
    return build_args(node)


def copy_args(
    inputs: Sequence[str],
    target: str,
    options: Mapping[str, Any] | None = None,
    global_args: Sequence[str] = (),
) -> list[str]:
    """Stream-copy every stream of ``inputs`` (paths or ``concat:a|b`` lists) into ``target``."""
    streams = [ffmpeg.input(item) for item in inputs]
    node = ffmpeg.output(*streams, target, c="copy", **dict(options or {}))
    if global_args:
        node = node.global_args(*global_args)
    return build_args(node)


@dataclass
class RunReport:
    """What a finished ffmpeg run left: how far it got and the end of its log."""

    seconds: float
    """Media seconds done, as ``-progress`` last reported."""
    log: list[str]
    """The last lines ffmpeg wrote to stderr."""


_PR_SET_PDEATHSIG = 1
try:
    _PRCTL: Any = ctypes.CDLL(None, use_errno=True).prctl if sys.platform == "linux" else None
except (OSError, AttributeError):
    _PRCTL = None


def _die_with_parent() -> None:
    """Runs in the child before exec: the tool is killed when the process that started it
    dies, so a worker SIGKILLed mid-transcode leaves no ffmpeg writing into a workspace."""
    if _PRCTL is not None:
        _PRCTL(_PR_SET_PDEATHSIG, signal.SIGKILL)


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
    log_lines: int = 40,
) -> RunReport:
    """Run ffmpeg with ``args`` (no binary name), watching it. Raises RecastError on failure.

    A process killed by a signal it did not get from here (the OOM killer, an operator) fails
    with the transient ``stage.interrupted``; any other failure is ``media.invalid``.
    """
    command = [FFMPEG, "-hide_banner", "-nostdin", "-nostats", "-progress", "pipe:1", *args]
    process = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
        preexec_fn=_die_with_parent,  # one prctl call in the child, nothing that locks
    )
    progress = _Progress()
    stderr_tail: deque[str] = deque(maxlen=max(3, log_lines))
    # The readers run in copies of the caller's context: ffmpeg's lines carry the job's log
    # context (job id, stage, task id) into the job's log.
    readers = [
        threading.Thread(
            target=contextvars.copy_context().run,
            args=(_read_progress, process, progress, on_progress),
            daemon=True,
        ),
        threading.Thread(
            target=contextvars.copy_context().run,
            args=(_read_stderr, process, stderr_tail),
            daemon=True,
        ),
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
    if process.returncode in _KILLED:
        raise RecastError(
            ErrorCode.STAGE_INTERRUPTED,
            f"{what} was killed by signal {-process.returncode} before it finished.",
        )
    if process.returncode != 0:
        tail = "; ".join(line for line in list(stderr_tail)[-3:] if line)
        raise RecastError(
            ErrorCode.MEDIA_INVALID,
            f"{what} failed (exit {process.returncode}): {tail or 'no message'}",
        )
    return RunReport(seconds=progress.seconds, log=list(stderr_tail))


_KILLED = frozenset({-signal.SIGKILL, -signal.SIGTERM, -signal.SIGINT, -signal.SIGHUP})


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
        line = raw.decode("utf-8", "replace").rstrip()
        tail.append(line)
        if line:
            _tool_log.debug("%s", line)  # into the job's log (pipeline.joblog), bounded there


SPEECH_SAMPLE_RATE = 16_000


def speech_audio_args(source: Path, target: Path, stream: str = "a:0") -> list[str]:
    """Arguments that decode one audio stream of ``source`` into 16 kHz mono 16-bit WAV."""
    options = {"ac": 1, "ar": SPEECH_SAMPLE_RATE, "acodec": "pcm_s16le", "f": "wav"}
    graph = Graph(
        source=str(source),
        audio_stream=stream,
        outputs=[Output(target=str(target), audio=0, options=options)],
    )
    return graph_args(graph)


def extract_speech_audio(
    source: Path,
    target: Path,
    *,
    timeout_s: float,
    stall_timeout_s: float = 120.0,
    on_progress: ProgressCallback | None = None,
    cancel_event: threading.Event | None = None,
) -> RunReport:
    """Decode the first audio stream of ``source`` into ``target`` as speech recognition wants
    it (16 kHz mono WAV), watched like every ffmpeg run."""
    return run(
        speech_audio_args(source, target),
        timeout_s=timeout_s,
        stall_timeout_s=stall_timeout_s,
        on_progress=on_progress,
        cancel_event=cancel_event,
        what="audio extraction",
    )
