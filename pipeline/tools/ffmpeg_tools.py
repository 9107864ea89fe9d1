"""The one module that drives ffmpeg and ffprobe (and the only one importing ffmpeg-python).

ffmpeg-python builds argument lists; this module runs them itself with:

- a hard timeout (callers scale it to the media's duration),
- a stall watchdog: no progress for ``stall_timeout_s`` kills the process (``stage.stalled``),
- progress read from ``-progress pipe:1`` and reported as media seconds done,
- cancellation: setting the cancel event kills the process group within a fraction of a second.

It also builds the argument lists of the media stages from small typed descriptions
(:class:`Graph`: one input, a video and an audio filter chain, each split into branches, and
outputs mapping those branches), so no other module needs ffmpeg-python.

Every input names what it may open (:class:`InputPolicy`, given as input options, so it binds
that input only): the protocols, the demuxers, and the largest frame its decoders may
allocate. A source is read with :data:`SOURCE_INPUT`, plain containers from the local file
only, unless a caller says otherwise; Recast's own segments have narrower policies of their
own. :func:`run` puts :data:`SOURCE_INPUT` before any input an argument list left without one,
so a command built by hand cannot forget it either.

Failures come out as :class:`~pipeline.core.errors.RecastError`, never as tracebacks.
"""

from __future__ import annotations

import contextlib
import contextvars
import ctypes
import json
import logging
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import ffmpeg

from pipeline.core.errors import ErrorCode, RecastError

FFMPEG = os.environ.get("RECAST_FFMPEG_BINARY", "ffmpeg")
FFPROBE = os.environ.get("RECAST_FFPROBE_BINARY", "ffprobe")

ProgressCallback = Callable[[float], None]

_tool_log = logging.getLogger("recast.tool.ffmpeg")
"""ffmpeg's own stderr, line by line, at DEBUG (a job's log keeps it; see pipeline.core.logs)."""

# -- what an input may open ----------------------------------------------------------------

DEFAULT_MAX_PIXELS = 7680 * 4320
"""8K UHD: the default of ``media.max_pixels``, the largest frame (width x height) accepted."""

MP4_DEMUXER = "mov,mp4,m4a,3gp,3g2,mj2"
"""ffmpeg's one demuxer of the MP4/QuickTime family. It follows no external data reference
(its ``enable_drefs`` stays off, as by default)."""

SOURCE_DEMUXERS: tuple[str, ...] = (
    MP4_DEMUXER,  # MP4, MOV, M4A, 3GP: what yt-dlp merges into, and most uploads
    "matroska,webm",  # MKV, WebM
    "mpegts",  # TS, as a downloaded HLS stream is joined
    "mpeg",  # MPEG-PS: .mpg, .vob
    "flv",
    "avi",
    "asf",  # WMV, WMA
    "mp3",
    "aac",  # raw ADTS
    "wav",
    "ogg",  # Vorbis, Opus, Theora
    "flac",
)
"""Demuxers a source (a download, a producer's file) may be read with: plain containers whose
data is all inside the one file. ffmpeg matches whole names, so ``webm`` does not admit
``webm_dash_manifest``. Never a demuxer that opens the files or URLs its input names (hls,
dash, concat, webm_dash_manifest, image2 sequences, subtitle formats), nor lavfi (a filter
graph, which reads files through its movie filter). NUT, MXF, raw elementary streams and the
like stay out until a real source needs them."""


def decoder_pixel_cap(max_pixels: int) -> int:
    """The decoders' ``-max_pixels`` for a limit of ``max_pixels``: an eighth more, since a
    decoder counts its buffers with the width rounded up for alignment (to 64 at most) and a
    frame the probe let through must decode (an eighth covers any width from 512 up); never
    above what the option takes."""
    return min(max_pixels + max_pixels // 8, 2**31 - 1)


@dataclass(frozen=True)
class InputPolicy:
    """What one input of ffmpeg or ffprobe may open: protocols, demuxers, and the largest frame
    (width x height) its decoders may allocate."""

    name: str
    protocols: tuple[str, ...]
    demuxers: tuple[str, ...]
    max_pixels: int = DEFAULT_MAX_PIXELS

    def limited_to(self, max_pixels: int) -> InputPolicy:
        """The same policy with another frame size limit (``media.max_pixels``)."""
        return replace(self, max_pixels=max_pixels)

    def options(self) -> dict[str, str]:
        """The input options (ffmpeg-python keyword form)."""
        return {
            "protocol_whitelist": ",".join(self.protocols),
            "format_whitelist": ",".join(self.demuxers),
            "max_pixels": str(decoder_pixel_cap(self.max_pixels)),
        }

    def args(self) -> list[str]:
        """The input options as arguments, to stand before one ``-i`` (or ffprobe's input)."""
        return [part for key, value in self.options().items() for part in (f"-{key}", value)]


SOURCE_INPUT = InputPolicy("source", protocols=("file",), demuxers=SOURCE_DEMUXERS)
"""A source's media: the one local file, plain containers only. The default everywhere."""
OWN_OUTPUT_INPUT = InputPolicy("own output", protocols=("file",), demuxers=(MP4_DEMUXER,))
"""A file Recast wrote itself (an fMP4 init or media segment, measured by
:mod:`pipeline.media.hls`)."""
OWN_SEGMENTS_INPUT = InputPolicy(
    "own segments joined", protocols=("concat", "file"), demuxers=(MP4_DEMUXER,)
)
"""Recast's own fMP4 segments read as one file through ``concat:a|b|c`` (the MP4 and
audio.m4a remux): the concat protocol, never the concat demuxer."""
GENERATED_INPUT = InputPolicy("generated", protocols=("file",), demuxers=("lavfi",))
"""A test pattern Recast describes itself as a lavfi graph (``recast sample``), never a source."""
SUBTITLE_INPUT = InputPolicy("subtitles", protocols=("file",), demuxers=("srt", "webvtt", "ass"))
"""A caption file of the source that yt-dlp's converter turns into WebVTT (TTML is first made
SRT in Python): the one local file, text subtitle demuxers only, never a playlist or concat
script whatever the file says it is."""

_POLICY_FLAGS = frozenset({"-protocol_whitelist", "-format_whitelist", "-max_pixels"})
"""The input options every :class:`InputPolicy` sets."""


def source_input(max_pixels: int) -> InputPolicy:
    """:data:`SOURCE_INPUT` with the frame size limit of the settings (``media.max_pixels``)."""
    return SOURCE_INPUT.limited_to(max_pixels)


def with_input_policy(args: Sequence[str], policy: InputPolicy = SOURCE_INPUT) -> list[str]:
    """``args`` with ``policy`` before every ``-i`` whose input options lack a whole policy
    (the inserted options come last, so they win over partial ones)."""
    guarded: list[str] = []
    since_input: set[str] = set()
    for arg in args:
        if arg == "-i":
            if not _POLICY_FLAGS.issubset(since_input):
                guarded.extend(policy.args())
            since_input = set()
        else:
            since_input.add(arg)
        guarded.append(arg)
    return guarded


_NOT_ON_WHITELIST = re.compile(r"\[([\w,]+) @ 0x[0-9a-f]+\] Format not on whitelist")
_TOO_MANY_PIXELS = re.compile(r"Picture size (\d+)x(\d+) exceeds specified max pixel count")
_REFUSED_KINDS = {
    "hls": "an HLS playlist",
    "dash": "a DASH manifest",
    "webm_dash_manifest": "a WebM DASH manifest",
    "concat": "an ffconcat script",
    "image2": "an image or image sequence",
    "lavfi": "a filter graph",
    "srt": "a subtitle file",
    "webvtt": "a subtitle file",
    "ass": "a subtitle file",
}


def _refused_kind(demuxer: str) -> str:
    if demuxer in _REFUSED_KINDS:
        return _REFUSED_KINDS[demuxer]
    if demuxer.endswith("_pipe"):
        return "a still image"
    return f"in ffmpeg's {demuxer!r} format"


def input_refusal(log: str, name: str, max_pixels: int | None = None) -> RecastError | None:
    """The error for a tool's log that shows an input's policy refusing it: ``limit.pixels``
    for a frame over the limit (``max_pixels``, when known), ``media.invalid`` for a demuxer
    not on the list."""
    pixels = _TOO_MANY_PIXELS.search(log)
    if pixels is not None:
        width, height = int(pixels.group(1)), int(pixels.group(2))
        return pixel_limit_error(name, width, height, max_pixels)
    refused = _NOT_ON_WHITELIST.search(log)
    if refused is not None:
        return RecastError(
            ErrorCode.MEDIA_INVALID,
            f"{name} is {_refused_kind(refused.group(1))}, not a media container Recast accepts.",
        )
    return None


def pixel_limit_error(
    name: str, width: int, height: int, max_pixels: int | None = None
) -> RecastError:
    """``limit.pixels`` for frames of ``width`` x ``height`` (over ``max_pixels``)."""
    limit = f"{max_pixels / 1e6:.1f} megapixels, " if max_pixels is not None else ""
    return RecastError(
        ErrorCode.LIMIT_PIXELS,
        f"{name} has video frames of {width}x{height} ({width * height / 1e6:.1f} megapixels), "
        f"over the limit ({limit}media.max_pixels).",
    )


def probe(
    path: Path, timeout_s: float = 60.0, *, policy: InputPolicy = SOURCE_INPUT
) -> dict[str, Any]:
    """ffprobe's JSON for ``path`` (format and streams), read as ``policy`` allows.

    ``media.invalid`` if unreadable or refused by the policy's demuxers ("... is an HLS
    playlist, not a media container Recast accepts"); ``limit.pixels`` for frames over its
    limit (the decoders refuse to allocate them, so probing costs no more than a normal file).
    """
    if not path.is_file() or path.stat().st_size == 0:
        raise RecastError(ErrorCode.MEDIA_INVALID, f"{path.name} is empty or missing.")
    args = [
        FFPROBE,
        "-v",
        "error",
        *policy.args(),
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
    log = completed.stderr.decode("utf-8", "replace")
    refusal = input_refusal(log, path.name, policy.max_pixels)
    if refusal is not None:
        raise refusal
    if completed.returncode != 0:
        lines = log.strip().splitlines()
        reason = lines[-1].replace(str(path), path.name) if lines else "ffprobe failed"
        raise RecastError(
            ErrorCode.MEDIA_INVALID, f"{path.name} is not a readable media file ({reason})."
        )
    data: dict[str, Any] = json.loads(completed.stdout or b"{}")
    streams = [s for s in data.get("streams", []) if s.get("codec_type") in ("video", "audio")]
    if not streams:
        raise RecastError(ErrorCode.MEDIA_INVALID, f"{path.name} has no video or audio stream.")
    return data


def last_packet_time(
    path: Path, from_s: float, timeout_s: float = 60.0, *, policy: InputPolicy = SOURCE_INPUT
) -> float | None:
    """The latest timestamp among the packets of ``path`` from ``from_s`` on (demuxing only,
    after a seek: cheap at any length). None when no packet could be read there."""
    args = [
        FFPROBE,
        "-v",
        "error",
        *policy.args(),
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
    """Options of the input besides its policy (seeking, ``skip_frame``...)."""
    input_policy: InputPolicy = SOURCE_INPUT
    """What the input may open; a source's media unless the graph says otherwise."""
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
    source = ffmpeg.input(graph.source, **_input_options(graph.input_options, graph.input_policy))
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


def _input_options(options: Mapping[str, Any], policy: InputPolicy) -> dict[str, Any]:
    clash = set(options) & set(policy.options())
    if clash:
        raise ValueError(f"{sorted(clash)} belong to an InputPolicy, not to input options")
    return {**options, **policy.options()}


def copy_args(
    inputs: Sequence[str],
    target: str,
    options: Mapping[str, Any] | None = None,
    global_args: Sequence[str] = (),
    *,
    policy: InputPolicy = SOURCE_INPUT,
) -> list[str]:
    """Stream-copy every stream of ``inputs`` into ``target``, each input read as ``policy``
    allows (``concat:a|b`` lists need :data:`OWN_SEGMENTS_INPUT`)."""
    streams = [ffmpeg.input(item, **policy.options()) for item in inputs]
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

    Every ``-i`` without a policy of its own gets :data:`SOURCE_INPUT`. A process killed by a
    signal it did not get from here (the OOM killer, an operator) fails with the transient
    ``stage.interrupted``; an input the policy refused with ``media.invalid``; a frame over
    the pixel cap with ``limit.pixels``, even mid-stream (a stream whose size grows after the
    part the probe read); any other failure with ``media.invalid``.
    """
    command = [
        *(FFMPEG, "-hide_banner", "-nostdin", "-nostats", "-progress", "pipe:1"),
        *with_input_policy(args),
    ]
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
    oversized: list[str] = []
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
            args=(_read_stderr, process, stderr_tail, oversized),
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
    # A decoder refusing a frame over the pixel cap only drops it; ffmpeg may still exit 0.
    refusal = input_refusal("\n".join([*oversized, *stderr_tail]), f"The input of {what}")
    if refusal is not None:
        raise refusal
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


def _read_stderr(process: subprocess.Popen[bytes], tail: deque[str], oversized: list[str]) -> None:
    """Keeps the last lines, and the first that says a frame was over the pixel cap."""
    assert process.stderr is not None
    for raw in process.stderr:
        line = raw.decode("utf-8", "replace").rstrip()
        tail.append(line)
        if not oversized and _TOO_MANY_PIXELS.search(line):
            oversized.append(line)
        if line:
            _tool_log.debug("%s", line)  # into the job's log (pipeline.ops.joblog), bounded there


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


CUT_PREROLL_S = 3.0
"""How far before a cut the input is seeked: the demuxer lands on a keyframe at or before that
point (some land late: MPEG-TS seeks by byte position), and the output seek then drops the
decoded frames up to the cut exactly."""


@dataclass(frozen=True)
class Cut:
    """A frame-accurate cut of ``[start, end)`` of a file, re-encoded (H.264 + AAC in MP4)."""

    start: float
    end: float
    video: bool = True
    audio: bool = True
    preset: str = "ultrafast"
    crf: int = 16
    audio_bitrate_kbps: int = 192


def cut_args(source: Path, target: Path, cut: Cut, policy: InputPolicy = SOURCE_INPUT) -> list[str]:
    """Arguments that cut ``[cut.start, cut.end)`` of ``source`` into ``target``.

    The input is seeked :data:`CUT_PREROLL_S` before the cut (fast, to a keyframe), the output
    from there to the cut (decoding and dropping what comes before it), so the first frame is
    the first whose time is at or after ``start`` and the last the last before ``end``; audio
    is cut to the same span, to the sample. Every stream is encoded afresh (no keyframe
    snapping); timestamps start at 0; metadata and chapters of the source are not carried.
    """
    seek = max(0.0, cut.start - CUT_PREROLL_S)
    options: dict[str, Any] = {
        "ss": f"{cut.start - seek:.6f}",
        "t": f"{cut.end - cut.start:.6f}",
        "map_metadata": -1,
        "map_chapters": -1,
        "movflags": "+faststart",
    }
    if cut.video:
        options |= {"c:v": "libx264", "preset": cut.preset, "crf": cut.crf, "pix_fmt": "yuv420p"}
    if cut.audio:
        options |= {"c:a": "aac", "b:a": f"{cut.audio_bitrate_kbps}k"}
    graph = Graph(
        source=str(source),
        input_options={"ss": f"{seek:.6f}"},
        input_policy=policy,
        outputs=[
            Output(
                target=str(target),
                options=options,
                video=0 if cut.video else None,
                audio=0 if cut.audio else None,
            )
        ],
    )
    return graph_args(graph)


# -- what this ffmpeg can do (``recast doctor``) ---------------------------------------------

ComponentKind = Literal["encoders", "muxers", "filters"]
_VERSION_LINE = re.compile(r"\S+ version (\S+)")
_COMPONENT_LINE = re.compile(r"^\s*[A-Z.|]{1,6}\s+([\w,-]+)\s")
"""A row of ``-encoders``/``-muxers``/``-filters``: capability flags, then the name(s)."""


def _ask(args: list[str], timeout_s: float) -> str:
    try:
        completed = subprocess.run(args, capture_output=True, timeout=timeout_s, check=False)
    except subprocess.TimeoutExpired as exc:
        raise OSError(f"{' '.join(args)} did not answer within {timeout_s:g} s") from exc
    if completed.returncode != 0:
        said = completed.stderr.decode("utf-8", "replace").strip().splitlines()
        raise OSError(f"{' '.join(args)} failed: {said[-1] if said else completed.returncode}")
    return completed.stdout.decode("utf-8", "replace")


def tool_version(binary: str, timeout_s: float = 10.0) -> str:
    """The version ``binary -version`` reports (``5.1.6-0+deb12u1``) for :data:`FFMPEG` or
    :data:`FFPROBE`; :class:`OSError` when it is missing, fails or is not ffmpeg's."""
    first = _ask([binary, "-hide_banner", "-version"], timeout_s).partition("\n")[0]
    match = _VERSION_LINE.match(first)
    if match is None:
        raise OSError(f"{binary} -version does not say a version: {first[:80]!r}")
    return match.group(1)


def available_components(kind: ComponentKind, timeout_s: float = 10.0) -> frozenset[str]:
    """The encoders, muxers or filters :data:`FFMPEG` was built with (``ffmpeg -<kind>``);
    :class:`OSError` when it cannot be run."""
    names: set[str] = set()
    for line in _ask([FFMPEG, "-hide_banner", f"-{kind}"], timeout_s).splitlines():
        match = _COMPONENT_LINE.match(line)
        if match is not None and match.group(1) != "=":  # "=": the legend above the rows
            names.update(match.group(1).split(","))
    return frozenset(names)
