"""The thumbnails stage: a poster people click, its sizes, a storyboard and a hover preview.

One ffmpeg pass over the source (decoded once, split in two) yields

- ``media.thumbnails.poster_candidates`` frames from across the whole video (the middle of
  equal slices, not the first seconds), at display size, each scored here: black, white and
  flat frames are out, a frame darker or flatter than the video's typical frame (a fade) loses,
  and among the rest the sharpest with the most detail wins (variance of the Laplacian,
  histogram entropy);
- one small frame per storyboard interval (:mod:`pipeline.media.storyboard`).

From the winner (:func:`pipeline.media.posters.write_posters`): ``thumbs/poster-<w>.jpg`` and
``.webp`` for the srcset widths (never wider than the video), ``thumbs/poster-square.jpg`` (a
1:1 crop around the most detailed part) and a BlurHash placeholder
(``StageResult.data["placeholder"]``). A second, short ffmpeg pass cuts
the muted hover preview around the poster's time: ``thumbs/preview.mp4`` and ``.webp``.

Sources longer than about eight minutes (a storyboard interval of 5 s or more) are read by
their keyframes only, which is many times faster and close enough for tiles and candidates.

An audio-only source gets ``thumbs/waveform.png`` (role ``waveform``) and a poster made from
the source's own thumbnail when it has one, else from the waveform.
"""

from __future__ import annotations

import math
import shutil
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.core import readers
from pipeline.core.mediainfo import MediaInfo
from pipeline.core.settings import MediaSettings
from pipeline.core.stage import AssetRole, OutputAsset, Queue, Stage, StageContext, StageResult
from pipeline.media import storyboard
from pipeline.media.ladder import source_filters
from pipeline.media.posters import SCORE_WIDTH, THUMBS_DIR, write_posters
from pipeline.tools import ffmpeg_tools
from pipeline.tools.ffmpeg_tools import Filter, Graph, Output
from pipeline.tools.images import flatten, grayscale

WORK_DIR = ".work"
KEYFRAMES_ONLY_INTERVAL_S = 5.0
WAVEFORM_SIZE = (1280, 720)
WAVEFORM_BACKGROUND = (16, 24, 40)
WAVEFORM_COLOR = "0x7fb2ff"


@dataclass
class Candidate:
    path: Path
    time: float
    brightness: float = 0.0
    contrast: float = 0.0
    sharpness: float = 0.0
    entropy: float = 0.0
    score: float = 0.0


# -- scoring -------------------------------------------------------------------------------


def measure(candidate: Candidate) -> None:
    pixels = grayscale(candidate.path, SCORE_WIDTH)
    candidate.brightness = float(pixels.mean())
    candidate.contrast = float(pixels.std())
    laplacian = (
        4 * pixels[1:-1, 1:-1]
        - pixels[:-2, 1:-1]
        - pixels[2:, 1:-1]
        - pixels[1:-1, :-2]
        - pixels[1:-1, 2:]
    )
    candidate.sharpness = float(laplacian.var())
    histogram = np.bincount(pixels.astype(np.uint8).ravel(), minlength=256).astype(np.float64)
    probabilities = histogram[histogram > 0] / histogram.sum()
    candidate.entropy = float(-(probabilities * np.log2(probabilities)).sum())


def usable(candidate: Candidate) -> bool:
    """Not black, not white, not a flat field of one colour."""
    return 24 <= candidate.brightness <= 235 and candidate.contrast >= 10


def score(candidates: list[Candidate]) -> Candidate:
    """Measure every candidate and return the best (the most usable frame if none is good)."""
    for candidate in candidates:
        measure(candidate)
    good = [c for c in candidates if usable(c)]
    if not good:
        return max(candidates, key=lambda c: (c.contrast, c.brightness))
    typical_brightness = float(np.percentile([c.brightness for c in good], 75))
    typical_contrast = float(np.percentile([c.contrast for c in good], 75))
    sharpest = max(c.sharpness for c in good) or 1.0
    for candidate in good:
        # A frame darker or flatter than the video's typical frame is in a fade (or a dip).
        fade = min(1.0, candidate.brightness / typical_brightness) ** 2
        fade *= min(1.0, candidate.contrast / typical_contrast) ** 2
        detail = math.sqrt(candidate.sharpness / sharpest)
        candidate.score = fade * detail * (candidate.entropy / 8.0)
    return max(good, key=lambda c: c.score)


# -- frames from the source ---------------------------------------------------------------


def _frame_size(media: MediaInfo, max_width: int) -> tuple[int, int]:
    assert media.video is not None
    width, height = media.video.display_size
    scale = min(1.0, max_width / width)
    return max(2, round(width * scale / 2) * 2), max(2, round(height * scale / 2) * 2)


def extract_frames(
    source: Path,
    media: MediaInfo,
    settings: MediaSettings,
    work: Path,
    interval: float,
    ctx: StageContext | None,
) -> tuple[list[Candidate], list[Path]]:
    """One pass: poster candidates (PNG, display size) and storyboard frames (small JPEG)."""
    assert media.video is not None
    thumbs = settings.thumbnails
    slice_s = media.duration / thumbs.poster_candidates
    width, height = _frame_size(media, max(max(thumbs.poster_widths), thumbs.square_size))
    tile_w, tile_h = storyboard.tile_size(*media.video.display_size, thumbs.storyboard_tile_width)
    rate = Fraction(1 / interval).limit_denominator(1000)
    graph = Graph(
        source=str(source),
        input_policy=ffmpeg_tools.source_input(settings.max_pixels),
        input_options={"skip_frame": "nokey"} if interval >= KEYFRAMES_ONLY_INTERVAL_S else {},
        video_stream=str(media.video.index),
        video=source_filters(
            interlaced=media.video.interlaced,
            hdr_transfer=media.video.color_transfer if media.video.hdr else None,
            rate=None,
        ),
        video_branches=[
            [
                Filter("select", (f"gte(t,(selected_n+0.5)*{slice_s:.6f})",)),
                Filter("scale", (width, height)),
                Filter("setsar", (1,)),
            ],
            [
                Filter("fps", options={"fps": f"{rate.numerator}/{rate.denominator}"}),
                Filter("scale", (tile_w, tile_h)),
                Filter("setsar", (1,)),
            ],
        ],
        outputs=[
            Output(str(work / "candidate-%04d.png"), {"fps_mode": "vfr"}, video=0),
            Output(str(work / "tile-%05d.jpg"), {"fps_mode": "vfr", "q:v": 3}, video=1),
        ],
    )

    def progress(seconds: float) -> None:
        if ctx is not None and media.duration > 0:
            ctx.progress(5 + 60 * seconds / media.duration, "reading frames")

    ffmpeg_tools.run(
        ffmpeg_tools.graph_args(graph),
        timeout_s=settings.timeout_for(media.duration),
        stall_timeout_s=settings.stall_timeout_s,
        on_progress=progress,
        cancel_event=ctx.cancel_event if ctx is not None else None,
        what="reading frames for thumbnails",
    )
    candidates = [
        Candidate(path, time=(number + 0.5) * slice_s)
        for number, path in enumerate(sorted(work.glob("candidate-*.png")))
    ]
    return candidates, sorted(work.glob("tile-*.jpg"))


def preview_clip(
    source: Path,
    media: MediaInfo,
    settings: MediaSettings,
    out: Path,
    around: float,
    ctx: StageContext | None,
) -> tuple[float, float, tuple[int, int]]:
    """The muted hover preview (MP4 and animated WebP) around ``around`` seconds."""
    assert media.video is not None
    thumbs = settings.thumbnails
    length = min(thumbs.preview_duration_s, media.duration)
    start = max(0.0, min(around - length / 2, media.duration - length))
    width, height = _frame_size(media, thumbs.preview_width)
    rate = min(media.video.fps or 25.0, 30.0)
    graph = Graph(
        source=str(source),
        input_policy=ffmpeg_tools.source_input(settings.max_pixels),
        input_options={"ss": f"{start:.3f}", "t": f"{length:.3f}"},
        video_stream=str(media.video.index),
        video=source_filters(
            interlaced=media.video.interlaced,
            hdr_transfer=media.video.color_transfer if media.video.hdr else None,
            rate=None,
        ),
        video_branches=[
            [Filter("fps", options={"fps": f"{rate:.3f}"}), Filter("scale", (width, height))],
            [Filter("fps", options={"fps": thumbs.preview_fps}), Filter("scale", (width, height))],
        ],
        outputs=[
            Output(
                str(out / "preview.mp4"),
                {
                    "c:v": "libx264",
                    "preset": "veryfast",
                    "crf": 28,
                    "pix_fmt": "yuv420p",
                    "movflags": "+faststart",
                    "an": None,
                },
                video=0,
            ),
            Output(
                str(out / "preview.webp"),
                {"c:v": "libwebp_anim", "loop": 0, "quality": thumbs.webp_quality, "an": None},
                video=1,
            ),
        ],
    )
    ffmpeg_tools.run(
        ffmpeg_tools.graph_args(graph),
        timeout_s=settings.timeout_for(length),
        stall_timeout_s=settings.stall_timeout_s,
        cancel_event=ctx.cancel_event if ctx is not None else None,
        what="cutting the preview clip",
    )
    return start, length, (width, height)


def waveform(
    source: Path, media: MediaInfo, settings: MediaSettings, target: Path, ctx: StageContext | None
) -> None:
    """A picture of the audio's waveform on a dark background (PNG)."""
    assert media.audio is not None
    raw = target.with_name(f".raw-{target.name}")
    graph = Graph(
        source=str(source),
        input_policy=ffmpeg_tools.source_input(settings.max_pixels),
        audio_stream=str(media.audio.index),
        audio=[
            Filter("aformat", options={"channel_layouts": "mono"}),
            Filter(
                "showwavespic",
                options={"s": "x".join(map(str, WAVEFORM_SIZE)), "colors": WAVEFORM_COLOR},
            ),
        ],
        outputs=[Output(str(raw), {"frames:v": 1}, audio=0)],
    )
    ffmpeg_tools.run(
        ffmpeg_tools.graph_args(graph),
        timeout_s=settings.timeout_for(media.duration),
        stall_timeout_s=settings.stall_timeout_s,
        cancel_event=ctx.cancel_event if ctx is not None else None,
        what="drawing the waveform",
    )
    flatten(raw, target, WAVEFORM_BACKGROUND)
    raw.unlink()


def _thumb_asset(key: str, role: AssetRole, **fields: Any) -> OutputAsset:
    """An image or track of this stage, published under the same key it has in the stage."""
    return OutputAsset(file=key, key=key, role=role, **fields)


# -- the stage ----------------------------------------------------------------------------


def video_thumbnails(
    source: Path, media: MediaInfo, out: Path, settings: MediaSettings, ctx: StageContext | None
) -> tuple[list[OutputAsset], dict[str, Any]]:
    thumbs = settings.thumbnails
    work = out / WORK_DIR
    target = out / THUMBS_DIR
    work.mkdir(parents=True, exist_ok=True)
    target.mkdir(parents=True, exist_ok=True)
    interval = storyboard.tile_interval(media.duration, thumbs)
    candidates, tiles = extract_frames(source, media, settings, work, interval, ctx)
    if not candidates or not tiles:
        from pipeline.core.errors import ErrorCode, RecastError

        raise RecastError(ErrorCode.MEDIA_INVALID, "No frame of the video could be decoded.")
    best = score(candidates)
    if ctx is not None:
        ctx.progress(70, "writing posters")
    assets, blurhash = write_posters(best.path, target, thumbs, best.time)
    board = storyboard.build(tiles, media.duration, interval, target, thumbs)
    for sheet in board.sheets:
        key = f"{THUMBS_DIR}/{sheet.file.name}"
        assets.append(
            _thumb_asset(
                key,
                role=AssetRole.STORYBOARD,
                width=sheet.width,
                height=sheet.height,
                extra={
                    "tiles": sheet.tiles,
                    "tile_width": board.tile_width,
                    "tile_height": board.tile_height,
                },
            )
        )
    key = f"{THUMBS_DIR}/{board.vtt.name}"
    assets.append(
        _thumb_asset(
            key,
            role=AssetRole.STORYBOARD_VTT,
            duration=media.duration,
            extra={"interval": board.interval, "tiles": board.tiles},
        )
    )
    shutil.rmtree(work)
    if ctx is not None:
        ctx.check_cancelled()
        ctx.progress(85, "cutting the preview clip")
    start, length, (width, height) = preview_clip(source, media, settings, target, best.time, ctx)
    for name in ("preview.mp4", "preview.webp"):
        key = f"{THUMBS_DIR}/{name}"
        assets.append(
            _thumb_asset(
                key,
                role=AssetRole.PREVIEW_CLIP,
                width=width,
                height=height,
                duration=round(length, 3),
                extra={"start": round(start, 3), "muted": True},
            )
        )
    data = {
        "placeholder": blurhash,
        "poster_time": round(best.time, 3),
        "storyboard_interval": board.interval,
    }
    return assets, data


def audio_thumbnails(
    source: Path,
    media: MediaInfo,
    out: Path,
    settings: MediaSettings,
    ctx: StageContext | None,
    source_thumbnail: Path | None,
) -> tuple[list[OutputAsset], dict[str, Any]]:
    target = out / THUMBS_DIR
    target.mkdir(parents=True, exist_ok=True)
    picture = target / "waveform.png"
    waveform(source, media, settings, picture, ctx)
    key = f"{THUMBS_DIR}/{picture.name}"
    assets = [
        _thumb_asset(
            key,
            role=AssetRole.WAVEFORM,
            width=WAVEFORM_SIZE[0],
            height=WAVEFORM_SIZE[1],
            duration=media.duration,
        )
    ]
    poster_from = source_thumbnail if source_thumbnail is not None else picture
    posters, blurhash = write_posters(poster_from, target, settings.thumbnails, None)
    origin = "source thumbnail" if source_thumbnail is not None else "waveform"
    return assets + posters, {"placeholder": blurhash, "poster_from": origin}


def make_thumbnails(
    source: Path,
    media: MediaInfo,
    out: Path,
    settings: MediaSettings,
    ctx: StageContext | None = None,
    source_thumbnail: Path | None = None,
) -> tuple[list[OutputAsset], dict[str, Any]]:
    """Everything the stage makes, into ``out`` (benchmarks and tests call this directly)."""
    if media.video is not None:
        return video_thumbnails(source, media, out, settings, ctx)
    return audio_thumbnails(source, media, out, settings, ctx, source_thumbnail)


def run(ctx: StageContext) -> StageResult:
    assets, data = make_thumbnails(
        readers.source_media(ctx),
        readers.media_info(ctx),
        ctx.out,
        ctx.settings.media,
        ctx,
        readers.source_thumbnail(ctx),
    )
    return StageResult.done(
        ctx.out, detail=f"{len(assets)} images and clips", assets=assets, **data
    )


STAGE = Stage(
    name="thumbnails", queue=Queue.MEDIA, run=run, requires=(readers.INGEST, readers.PROBE)
)
