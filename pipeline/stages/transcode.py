"""The transcode stage: the HLS ladder in one ffmpeg pass, the progressive MP4 and audio.m4a.

One ffmpeg process decodes the source once; a cascade of scalers (each rung scaled from the
one above it, ``split`` between them) feeds one x264 encoder per rung (H.264 High, 8-bit
4:2:0, average and peak rate per rung). Keyframes are forced
every ``media.keyframe_interval_s`` on the same timestamps in every rung (scene-cut keyframes
off), and each rung is written as a VOD HLS playlist of fMP4 segments of ``media.segment_s``.
Audio is measured first (ebur128: integrated loudness, range, true peak), then normalised
(loudnorm, linear when the peaks allow) in the same pass as the video to
``media.loudness_target_lufs`` / ``media.loudness_true_peak_db``, AAC-LC stereo, written as
the HLS audio rendition group.

Afterwards, without re-encoding: the master playlist, whose attributes are measured on the
files (:mod:`pipeline.media.hls`); the progressive MP4 (``media.mp4_height`` or the highest rung
below it, faststart) and ``audio.m4a``, both stream copies of the segments just written.

Outputs (stage directory ``transcode/``, published under the same keys)::

    hls/master.m3u8          hls/<rung>/index.m3u8, init.mp4, seg_00000.m4s ...
    hls/audio/...            (when the source has audio)
    mp4/<rung>.mp4           (when it has video)
    mp4/audio.m4a            (when it has audio)

A source without audio gets a video-only ladder; an audio-only source gets an audio-only
master. ffmpeg runs with a timeout scaled to the duration and a stall watchdog; a killed or
failed run leaves only the partial directory, which the next attempt starts afresh.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

from pipeline.core import readers
from pipeline.core.errors import ErrorCode, RecastError
from pipeline.core.mediainfo import MediaInfo
from pipeline.core.settings import MediaSettings
from pipeline.core.stage import AssetRole, OutputAsset, Queue, Stage, StageContext, StageResult
from pipeline.media import hls
from pipeline.media import loudness as loudness_rules
from pipeline.media.ladder import Rendition, choose_ladder, progressive_rendition, source_filters
from pipeline.media.loudness import Loudness, audio_filters
from pipeline.tools import ffmpeg_tools
from pipeline.tools.ffmpeg_tools import Filter, Graph, Output

HLS_DIR = "hls"
MP4_DIR = "mp4"
AUDIO_NAME = "audio"
AUDIO_GROUP = "audio"
SEGMENT_PATTERN = "seg_%05d.m4s"
INIT_NAME = "init.mp4"


@dataclass(frozen=True)
class Plan:
    """What the ffmpeg pass will write."""

    ladder: list[Rendition]
    audio: bool
    source_rate: Fraction | None
    """The constant rate to convert to before scaling, or None to keep the source's frames."""


def make_plan(media: MediaInfo, settings: MediaSettings) -> Plan:
    ladder: list[Rendition] = []
    rate: Fraction | None = None
    if media.video is not None:
        width, height = media.video.display_size
        source_rate = Fraction(media.video.frame_rate)
        ladder = choose_ladder(
            width,
            height,
            source_rate,
            settings.ladder,
            variable_frame_rate=media.video.variable_frame_rate,
            base_frame_rate=Fraction(media.video.base_frame_rate),
            max_frame_rate=settings.max_frame_rate,
        )
        target = Fraction(ladder[0].frame_rate)
        if media.video.variable_frame_rate or target != source_rate:
            rate = target
    return Plan(ladder=ladder, audio=media.has_audio, source_rate=rate)


# -- audio ---------------------------------------------------------------------------------


def measure_loudness(
    source: Path, media: MediaInfo, settings: MediaSettings, ctx: StageContext | None = None
) -> Loudness | None:
    """The source's loudness (BS.1770, ffmpeg's ebur128: :mod:`pipeline.media.loudness`);
    None for silence."""
    report = ffmpeg_tools.run(
        loudness_rules.measure_args(source, media, settings),
        timeout_s=settings.timeout_for(media.duration),
        stall_timeout_s=settings.stall_timeout_s,
        cancel_event=ctx.cancel_event if ctx is not None else None,
        what="measuring loudness",
        log_lines=loudness_rules.REPORT_LINES,
    )
    return loudness_rules.loudness_from_report(report.log)


# -- the one ffmpeg pass --------------------------------------------------------------------


def _hls_options(settings: MediaSettings, out: Path, stream_map: str) -> dict[str, Any]:
    return {
        "f": "hls",
        "hls_time": settings.segment_s,
        "hls_playlist_type": "vod",
        "hls_segment_type": "fmp4",
        "hls_fmp4_init_filename": INIT_NAME,
        "hls_segment_filename": str(out / HLS_DIR / "%v" / SEGMENT_PATTERN),
        "hls_flags": "independent_segments",
        "var_stream_map": stream_map,
    }


def _video_options(ladder: list[Rendition], settings: MediaSettings) -> dict[str, Any]:
    interval = settings.keyframe_interval_s
    options: dict[str, Any] = {
        "c:v": "libx264",
        "preset": settings.preset,
        "profile:v": "high",
        "force_key_frames:v": f"expr:gte(t,n_forced*{interval:g})",
        "forced-idr": 1,
        "sc_threshold": 0,
    }
    for number, rendition in enumerate(ladder):
        options |= {
            f"b:v:{number}": f"{rendition.bitrate_kbps}k",
            f"maxrate:v:{number}": f"{rendition.peak_kbps}k",
            f"bufsize:v:{number}": f"{rendition.bufsize_kbps}k",
            f"g:v:{number}": math.ceil(rendition.fps * interval) + 1,
        }
    return options


def encode_args(
    source: Path,
    media: MediaInfo,
    plan: Plan,
    out: Path,
    settings: MediaSettings,
    loudness: Loudness | None,
) -> list[str]:
    """The argument list of the one ffmpeg pass: decode once, scale in a cascade (each rung
    from the one above it: less work than scaling every rung from the source), encode every
    rung, and write every rendition through one HLS muxer (``var_stream_map``), so that all
    renditions share one timeline (the B-frame delay shifts audio and video alike)."""
    options: dict[str, Any] = {}
    stream_map = [f"v:{n},name:{r.name}" for n, r in enumerate(plan.ladder)]
    if plan.ladder:
        options |= _video_options(plan.ladder, settings)
    if plan.audio:
        options |= {"c:a": "aac", "b:a": f"{settings.audio_bitrate_kbps}k", "ac": 2}
        stream_map.append(f"a:0,name:{AUDIO_NAME}")
    options |= _hls_options(settings, out, " ".join(stream_map))
    video = media.video
    common: list[Filter] = []
    if video is not None:
        common = source_filters(
            interlaced=video.interlaced,
            hdr_transfer=video.color_transfer if video.hdr else None,
            rate=plan.source_rate,
        )
    output = Output(
        str(out / HLS_DIR / "%v" / "index.m3u8"),
        options,
        video=tuple(range(len(plan.ladder))) or None,
        audio=0 if plan.audio else None,
    )
    graph = Graph(
        source=str(source),
        input_policy=ffmpeg_tools.source_input(settings.max_pixels),
        video_stream=str(video.index) if video is not None else "v:0",
        audio_stream=str(media.audio.index) if media.audio is not None else "a:0",
        video=common,
        video_branches=[
            [Filter("scale", (r.width, r.height)), Filter("setsar", (1,))] for r in plan.ladder
        ],
        audio=audio_filters(settings, loudness) if plan.audio else (),
        outputs=[output],
        cascade=True,
    )
    return ffmpeg_tools.graph_args(graph)


# -- after the pass: master, MP4, audio.m4a ---------------------------------------------


def _concat(files: list[Path]) -> str:
    if any("|" in str(f) for f in files):
        raise RecastError(ErrorCode.CONFIG_INVALID, "Workspace paths must not contain '|'.")
    return "concat:" + "|".join(str(f) for f in files)


def remux(
    playlists: list[hls.MediaPlaylist], target: Path, settings: MediaSettings, duration: float
) -> None:
    """Stream-copy the segments of ``playlists`` (video, audio) into one faststart MP4,
    keeping their common timeline (``-copyts``: audio and video stay in sync)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    args = ffmpeg_tools.copy_args(
        [_concat(p.files()) for p in playlists],
        str(target),
        {"movflags": "+faststart"},
        global_args=["-copyts"],
        policy=ffmpeg_tools.OWN_SEGMENTS_INPUT,
    )
    ffmpeg_tools.run(
        args,
        timeout_s=settings.timeout_for(duration) / 4,
        stall_timeout_s=settings.stall_timeout_s,
        what=f"writing {target.name}",
    )


def _file_facts(path: Path, duration: float) -> tuple[float, int]:
    """Duration (that of the segments it was copied from) and mean bit rate of a remux."""
    return round(duration, 3), round(path.stat().st_size * 8 / duration) if duration > 0 else 0


def finish(
    out: Path, media: MediaInfo, plan: Plan, settings: MediaSettings
) -> tuple[list[OutputAsset], dict[str, Any]]:
    """Measure what the pass wrote, write the master, the MP4 and audio.m4a; list the assets."""
    hls_dir = out / HLS_DIR
    for name in [r.name for r in plan.ladder] + ([AUDIO_NAME] if plan.audio else []):
        hls.rename_init(hls_dir / name / "index.m3u8", INIT_NAME)
    audio: hls.MediaPlaylist | None = None
    audio_measure: hls.Measurement | None = None
    audio_codecs: list[str] = []
    if plan.audio:
        audio = hls.read_media_playlist(hls_dir / AUDIO_NAME / "index.m3u8")
        audio_measure = hls.measure(audio)
        audio_codecs = hls.codecs(audio.init_file)
    variants: list[hls.Variant] = []
    playlists: dict[str, hls.MediaPlaylist] = {}
    details: dict[str, OutputAsset] = {}
    for rendition in plan.ladder:
        playlist = hls.read_media_playlist(hls_dir / rendition.name / "index.m3u8")
        playlists[rendition.name] = playlist
        measured = hls.measure(playlist)
        shape = hls.video_shape(playlist, settings.max_pixels)
        codecs = hls.codecs(playlist.init_file) + audio_codecs
        peak = measured.peak + (audio_measure.peak if audio_measure else 0)
        average = measured.average + (audio_measure.average if audio_measure else 0)
        variants.append(
            hls.Variant(
                uri=f"{rendition.name}/index.m3u8",
                bandwidth=peak,
                average_bandwidth=average,
                codecs=codecs,
                resolution=(shape.width, shape.height),
                frame_rate=shape.frame_rate,
                audio_group=AUDIO_GROUP if audio is not None else None,
            )
        )
        details[f"{rendition.name}/index.m3u8"] = OutputAsset(
            file="",
            key="",
            role=AssetRole.HLS_MEDIA,
            width=shape.width,
            height=shape.height,
            duration=round(measured.duration, 3),
            bitrate=peak,
            label=rendition.name,
            extra={"average_bitrate": average, "codecs": ",".join(codecs)},
        )
    audio_rendition: hls.AudioRendition | None = None
    if audio is not None and audio_measure is not None:
        if plan.ladder:
            audio_rendition = hls.AudioRendition(
                group=AUDIO_GROUP, name="Audio", uri=f"{AUDIO_NAME}/index.m3u8", channels=2
            )
        else:
            variants.append(
                hls.Variant(
                    uri=f"{AUDIO_NAME}/index.m3u8",
                    bandwidth=audio_measure.peak,
                    average_bandwidth=audio_measure.average,
                    codecs=audio_codecs,
                )
            )
        details[f"{AUDIO_NAME}/index.m3u8"] = OutputAsset(
            file="",
            key="",
            role=AssetRole.HLS_MEDIA,
            duration=round(audio_measure.duration, 3),
            bitrate=audio_measure.peak,
            label=AUDIO_NAME,
            extra={"average_bitrate": audio_measure.average, "codecs": ",".join(audio_codecs)},
        )
    hls.write_master(hls_dir / "master.m3u8", variants, audio_rendition)

    assets: list[OutputAsset] = []
    data: dict[str, Any] = {"renditions": [r.name for r in plan.ladder], "audio": plan.audio}
    mp4_rendition = progressive_rendition(plan.ladder, settings.mp4_height) if plan.ladder else None
    if mp4_rendition is not None:
        sources = [playlists[mp4_rendition.name]] + ([audio] if audio is not None else [])
        target = out / MP4_DIR / f"{mp4_rendition.name}.mp4"
        remux(sources, target, settings, media.duration)
        duration, bitrate = _file_facts(target, max(p.duration for p in sources))
        assets.append(
            OutputAsset(
                file=target.relative_to(out).as_posix(),
                key=target.relative_to(out).as_posix(),
                role=AssetRole.MP4,
                width=mp4_rendition.width,
                height=mp4_rendition.height,
                duration=duration,
                bitrate=bitrate,
                label=mp4_rendition.name,
            )
        )
    if audio is not None:
        target = out / MP4_DIR / "audio.m4a"
        remux([audio], target, settings, media.duration)
        duration, bitrate = _file_facts(target, audio.duration)
        assets.append(
            OutputAsset(
                file=target.relative_to(out).as_posix(),
                key=target.relative_to(out).as_posix(),
                role=AssetRole.AUDIO,
                duration=duration,
                bitrate=bitrate,
                label="AAC stereo",
            )
        )
    assets += _hls_assets(out, details, media.duration)
    return assets, data


def _hls_assets(out: Path, details: dict[str, OutputAsset], duration: float) -> list[OutputAsset]:
    hls_dir = out / HLS_DIR
    assets: list[OutputAsset] = []
    for path in sorted(p for p in hls_dir.rglob("*") if p.is_file()):
        relative = path.relative_to(hls_dir).as_posix()
        key = path.relative_to(out).as_posix()
        if relative == "master.m3u8":
            assets.append(
                OutputAsset(file=key, key=key, role=AssetRole.HLS_MASTER, duration=duration)
            )
        elif relative in details:
            assets.append(details[relative].model_copy(update={"file": key, "key": key}))
        else:
            assets.append(OutputAsset(file=key, key=key, role=AssetRole.HLS_MEDIA))
    return assets


def transcode(
    source: Path, media: MediaInfo, out: Path, settings: MediaSettings, ctx: StageContext | None
) -> tuple[list[OutputAsset], dict[str, Any]]:
    """Everything the stage does, with or without a stage context (benchmarks call this)."""
    plan = make_plan(media, settings)
    loudness = measure_loudness(source, media, settings, ctx) if plan.audio else None
    for rendition in plan.ladder:
        (out / HLS_DIR / rendition.name).mkdir(parents=True, exist_ok=True)
    if plan.audio:
        (out / HLS_DIR / AUDIO_NAME).mkdir(parents=True, exist_ok=True)

    def progress(seconds: float) -> None:
        if ctx is not None and media.duration > 0:
            ctx.progress(5 + 85 * seconds / media.duration, f"{seconds:.0f} s encoded")

    ffmpeg_tools.run(
        encode_args(source, media, plan, out, settings, loudness),
        timeout_s=settings.timeout_for(media.duration),
        stall_timeout_s=settings.stall_timeout_s,
        on_progress=progress,
        cancel_event=ctx.cancel_event if ctx is not None else None,
        what="the HLS ladder encode",
    )
    if ctx is not None:
        ctx.check_cancelled()
        ctx.progress(92, "measuring and packaging")
    assets, data = finish(out, media, plan, settings)
    if loudness is not None:
        data["loudness_source_lufs"] = loudness.input_i
    return assets, data


def run(ctx: StageContext) -> StageResult:
    media = readers.media_info(ctx)
    assets, data = transcode(readers.source_media(ctx), media, ctx.out, ctx.settings.media, ctx)
    names = ", ".join(data["renditions"]) or "audio only"
    return StageResult.done(ctx.out, detail=names, assets=assets, **data)


STAGE = Stage(
    name="transcode",
    queue=Queue.TRANSCODE,
    run=run,
    requires=(readers.INGEST, readers.PROBE),
    time_limit_factor=10.0,
)
