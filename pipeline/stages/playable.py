"""The playable stage: a first stream in seconds, a stream copy of the source as HLS.

When the source is already H.264 (8-bit 4:2:0) with AAC audio, or H.264 without audio, its
packets are copied, not re-encoded, into fMP4 HLS segments (cut at the source's keyframes)
with a master playlist measured on the files like the ladder's. The card can then become
``playable`` long before the ladder is done; the transcode stage's ladder replaces it.
Any other source is skipped (``StageResult.skipped``), its card waits for the ladder.

Outputs (stage directory ``playable/``, published under the same keys, provisional)::

    hls-copy/master.m3u8     hls-copy/stream/index.m3u8, init.mp4, seg_00000.m4s ...
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pipeline.core import readers
from pipeline.core.mediainfo import MediaInfo
from pipeline.core.settings import MediaSettings
from pipeline.core.stage import AssetRole, OutputAsset, Queue, Stage, StageContext, StageResult
from pipeline.media import hls
from pipeline.tools import ffmpeg_tools
from pipeline.tools.ffmpeg_tools import Graph, Output

COPY_DIR = "hls-copy"
STREAM_DIR = "stream"
PLAYABLE_PIXEL_FORMATS = frozenset({"yuv420p", "yuvj420p"})
PLAYABLE_AUDIO = frozenset({"aac"})


def why_not_playable(media: MediaInfo) -> str | None:
    """Why a stream copy of this source would not play everywhere; None when it would."""
    video = media.video
    if video is None:
        return "no video to copy; the transcode stage makes the audio stream"
    if video.codec != "h264":
        return f"the video is {video.codec}, not H.264"
    if video.pix_fmt not in PLAYABLE_PIXEL_FORMATS:
        return f"the video is {video.pix_fmt}, not 8-bit 4:2:0"
    if video.interlaced:
        return "the video is interlaced"
    if media.audio is not None and media.audio.codec not in PLAYABLE_AUDIO:
        return f"the audio is {media.audio.codec}, not AAC"
    return None


def copy_to_hls(
    source: Path, media: MediaInfo, out: Path, settings: MediaSettings, ctx: StageContext | None
) -> list[OutputAsset]:
    """Write the stream copy and its master under ``out/hls-copy``; returns the assets."""
    assert media.video is not None
    directory = out / COPY_DIR / STREAM_DIR
    directory.mkdir(parents=True, exist_ok=True)
    options: dict[str, Any] = {
        "c": "copy",
        "f": "hls",
        "hls_time": settings.segment_s,
        "hls_playlist_type": "vod",
        "hls_segment_type": "fmp4",
        "hls_fmp4_init_filename": "init.mp4",
        "hls_segment_filename": str(directory / "seg_%05d.m4s"),
    }
    if media.audio is not None:
        options["bsf:a"] = "aac_adtstoasc"  # ADTS (MPEG-TS sources) to MP4's form; else a no-op
    graph = Graph(
        source=str(source),
        input_policy=ffmpeg_tools.source_input(settings.max_pixels),
        video_stream=str(media.video.index),
        audio_stream=str(media.audio.index) if media.audio is not None else "a:0",
        outputs=[
            Output(
                str(directory / "index.m3u8"),
                options,
                video=0,
                audio=0 if media.audio is not None else None,
            )
        ],
    )
    ffmpeg_tools.run(
        ffmpeg_tools.graph_args(graph),
        timeout_s=settings.timeout_for(media.duration) / 4,
        stall_timeout_s=settings.stall_timeout_s,
        cancel_event=ctx.cancel_event if ctx is not None else None,
        what="the stream copy",
    )
    playlist = hls.read_media_playlist(directory / "index.m3u8")
    measured = hls.measure(playlist)
    shape = hls.video_shape(playlist, settings.max_pixels)
    if media.video.rotation % 180 == 90:  # copied frames keep the source's display matrix
        shape = hls.VideoShape(shape.height, shape.width, shape.frame_rate)
    codecs = hls.codecs(playlist.init_file)
    master = out / COPY_DIR / "master.m3u8"
    variant = hls.Variant(
        uri=f"{STREAM_DIR}/index.m3u8",
        bandwidth=measured.peak,
        average_bandwidth=measured.average,
        codecs=codecs,
        resolution=(shape.width, shape.height),
        frame_rate=shape.frame_rate,
    )
    hls.write_master(master, [variant])
    assets = [
        OutputAsset(
            file=master.relative_to(out).as_posix(),
            key=master.relative_to(out).as_posix(),
            role=AssetRole.HLS_MASTER,
            duration=round(measured.duration, 3),
            width=shape.width,
            height=shape.height,
            bitrate=measured.peak,
            extra={"provisional": True},
        )
    ]
    for path in sorted(p for p in directory.iterdir() if p.is_file()):
        key = path.relative_to(out).as_posix()
        assets.append(
            OutputAsset(file=key, key=key, role=AssetRole.HLS_MEDIA, extra={"provisional": True})
        )
    return assets


def run(ctx: StageContext) -> StageResult:
    media = readers.media_info(ctx)
    reason = why_not_playable(media)
    if reason is not None:
        return StageResult.skipped(reason)
    ctx.progress(5, "copying the source into HLS")
    assets = copy_to_hls(readers.source_media(ctx), media, ctx.out, ctx.settings.media, ctx)
    return StageResult.done(ctx.out, detail="stream copy", assets=assets, provisional=True)


STAGE = Stage(
    name="playable", queue=Queue.TRANSCODE, run=run, requires=(readers.INGEST, readers.PROBE)
)
