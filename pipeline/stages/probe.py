"""The probe stage: what the downloaded media is, as a typed
:class:`~pipeline.core.mediainfo.MediaInfo`.

ffprobe's JSON becomes a description the other media stages decide by: container, duration,
bit rate, the video stream (codec, coded size, sample aspect ratio, rotation from the display
matrix, frame rate and whether it varies, pixel format and bit depth, interlacing, HDR
transfer), the audio stream (codec, channels, layout, sample rate) and subtitle streams.
Cover art (an attached picture) is not video.

The last seconds of the file are also read (a seek, then demuxing only, so the cost does not
grow with the length): a file whose packets stop well before its declared duration is
truncated. An unreadable file, one without
any video or audio stream, or a truncated one fails with ``media.invalid``.

ffprobe reads the file as :data:`pipeline.tools.ffmpeg_tools.SOURCE_INPUT` allows: the local file
only, plain media containers only, so a playlist or manifest saved under a video's name (HLS,
DASH, ffconcat) fails with ``media.invalid`` before anything it names is opened. This stage is
the gate for frame size: a video whose coded frames are larger than ``media.max_pixels``
fails with ``limit.pixels`` (the stages after it cap their decoders near the same limit).

Output, in the stage directory ``probe/``: ``media.json``.
"""

from __future__ import annotations

import re
from fractions import Fraction
from pathlib import Path
from typing import Any

from pipeline.core import readers
from pipeline.core.errors import ErrorCode, RecastError
from pipeline.core.fsutil import atomic_write_json
from pipeline.core.mediainfo import (
    AudioInfo,
    MediaInfo,
    SubtitleInfo,
    VideoInfo,
    aspect_ratio,
    positive_fraction,
)
from pipeline.core.stage import Queue, Stage, StageContext, StageResult
from pipeline.tools import ffmpeg_tools

INTERLACED_ORDERS = frozenset({"tt", "bb", "tb", "bt"})
STILL_IMAGE_FORMATS = frozenset({"image2", "webp", "tiff"})
"""Containers of still images (besides the ``*_pipe`` image demuxers): not recordings."""


def _int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _rotation(stream: dict[str, Any]) -> int:
    for side in stream.get("side_data_list") or []:
        if side.get("rotation") is not None:
            return round(float(side["rotation"])) % 360
    tag = (stream.get("tags") or {}).get("rotate")
    return round(float(tag)) % 360 if tag not in (None, "") else 0


def _bit_depth(stream: dict[str, Any]) -> int:
    raw = _int(stream.get("bits_per_raw_sample"))
    if raw:
        return raw
    match = re.search(r"p(\d{2})(le|be)$", str(stream.get("pix_fmt") or ""))
    return int(match.group(1)) if match else 8


def _video(stream: dict[str, Any]) -> VideoInfo:
    average = positive_fraction(stream.get("avg_frame_rate"))
    real = positive_fraction(stream.get("r_frame_rate"))
    rate = average or real or Fraction(25)
    variable = bool(average and real and abs(real - average) / average > Fraction(1, 100))
    return VideoInfo(
        index=int(stream["index"]),
        codec=str(stream.get("codec_name") or "unknown"),
        profile=str(stream.get("profile") or ""),
        width=int(stream.get("width") or 0),
        height=int(stream.get("height") or 0),
        coded_width=_int(stream.get("coded_width")) or 0,
        coded_height=_int(stream.get("coded_height")) or 0,
        sar=str(stream["sample_aspect_ratio"])
        if aspect_ratio(stream.get("sample_aspect_ratio"))
        else "1:1",
        rotation=_rotation(stream),
        frame_rate=f"{rate.numerator}/{rate.denominator}",
        base_frame_rate=f"{(real or rate).numerator}/{(real or rate).denominator}",
        variable_frame_rate=variable,
        pix_fmt=str(stream.get("pix_fmt") or ""),
        bit_depth=_bit_depth(stream),
        interlaced=str(stream.get("field_order") or "") in INTERLACED_ORDERS,
        color_transfer=str(stream.get("color_transfer") or ""),
        bit_rate=_int(stream.get("bit_rate")),
    )


def _audio(stream: dict[str, Any]) -> AudioInfo:
    return AudioInfo(
        index=int(stream["index"]),
        codec=str(stream.get("codec_name") or "unknown"),
        profile=str(stream.get("profile") or ""),
        channels=int(stream.get("channels") or 0),
        channel_layout=str(stream.get("channel_layout") or ""),
        sample_rate=_int(stream.get("sample_rate")) or 0,
        bit_rate=_int(stream.get("bit_rate")),
    )


def describe(data: dict[str, Any], name: str = "the file") -> MediaInfo:
    """ffprobe's JSON as a :class:`MediaInfo`; ``media.invalid`` when nothing is playable."""
    streams = data.get("streams") or []
    videos = [
        s
        for s in streams
        if s.get("codec_type") == "video"
        and not (s.get("disposition") or {}).get("attached_pic")
        and int(s.get("width") or 0) > 0
        and int(s.get("height") or 0) > 0
    ]
    audios = [s for s in streams if s.get("codec_type") == "audio" and s.get("channels")]
    if not videos and not audios:
        raise RecastError(ErrorCode.MEDIA_INVALID, f"{name} has no video or audio stream.")
    fmt = data.get("format") or {}
    container = str(fmt.get("format_name") or "unknown")
    if container in STILL_IMAGE_FORMATS or container.endswith("_pipe"):
        raise RecastError(ErrorCode.MEDIA_INVALID, f"{name} is a still image, not a recording.")
    duration = ffmpeg_tools.media_duration(data) or 0.0
    subtitles = [
        SubtitleInfo(
            index=int(s["index"]),
            codec=str(s.get("codec_name") or "unknown"),
            language=str((s.get("tags") or {}).get("language") or ""),
        )
        for s in streams
        if s.get("codec_type") == "subtitle"
    ]
    return MediaInfo(
        container=container,
        duration=duration,
        bit_rate=_int(fmt.get("bit_rate")),
        size=_int(fmt.get("size")) or 0,
        video=_video(videos[0]) if videos else None,
        audio=_audio(audios[0]) if audios else None,
        audio_streams=len(audios),
        subtitles=subtitles,
    )


def check_complete(
    path: Path, media: MediaInfo, policy: ffmpeg_tools.InputPolicy = ffmpeg_tools.SOURCE_INPUT
) -> None:
    """Fail with ``media.invalid`` when the packets stop well before the declared duration.

    Only the last seconds are read (a seek, then demuxing): a truncated file has no data
    there, or stops early; a complete one reaches its end. The cost does not grow with length.
    """
    if media.duration <= 0:
        return
    tail = max(10.0, 0.05 * media.duration)
    reached = ffmpeg_tools.last_packet_time(path, media.duration - tail, policy=policy)
    if reached is None or reached < media.duration - max(1.0, 0.02 * media.duration):
        where = "has no data" if reached is None else f"ends at {reached:.1f} s"
        raise RecastError(
            ErrorCode.MEDIA_INVALID,
            f"{path.name} is truncated: it {where} near the end of the "
            f"{media.duration:.1f} s it declares.",
        )


def check_frame_size(media: MediaInfo, max_pixels: int, name: str = "the file") -> None:
    """Fail with ``limit.pixels`` when the video's frames have more than ``max_pixels``."""
    video = media.video
    if video is not None and video.pixels > max_pixels:
        width = max(video.width, video.coded_width)
        height = max(video.height, video.coded_height)
        raise ffmpeg_tools.pixel_limit_error(name, width, height, max_pixels)


def probe_file(path: Path, max_pixels: int = ffmpeg_tools.DEFAULT_MAX_PIXELS) -> MediaInfo:
    """Describe ``path``, a source's media, and check its frame size and that it is complete."""
    policy = ffmpeg_tools.source_input(max_pixels)
    media = describe(ffmpeg_tools.probe(path, policy=policy), path.name)
    check_frame_size(media, max_pixels, path.name)
    if media.duration <= 0:
        reached = ffmpeg_tools.last_packet_time(path, 0.0, policy=policy)
        if not reached or reached <= 0:
            raise RecastError(ErrorCode.MEDIA_INVALID, f"{path.name} has no measurable length.")
        media.duration = reached
    check_complete(path, media, policy)
    return media


def run(ctx: StageContext) -> StageResult:
    ctx.progress(1, "probing")
    media = probe_file(readers.source_media(ctx), ctx.settings.media.max_pixels)
    atomic_write_json(ctx.out / readers.MEDIA_INFO_FILE, media.model_dump(mode="json"))
    return StageResult.done(
        ctx.out,
        detail=media.summary,
        duration=media.duration,
        has_video=media.has_video,
        has_audio=media.has_audio,
    )


STAGE = Stage(name=readers.PROBE, queue=Queue.MEDIA, run=run, requires=(readers.INGEST,))
