"""The social stage: the 9:16 vertical cut of a recording or clip, when the job asks for it.

The job's option ``social`` (:data:`pipeline.core.clip.SOCIAL_OPTION`) asks for it, as
:class:`SocialOptions`: ``{"crop_x": null | int, "captions": bool}`` (``true`` or ``{}`` for
the defaults: centred, no captions). ``crop_x`` is the left edge of the 9:16 window in the
source's display pixels; ``captions`` burns the transcript's caption track into the picture.
Without the option the stage is skipped; a malformed option, or a window that leaves the
frame, fails the job with ``social.invalid``. Audio-only media is skipped (nothing to crop).

Geometry, encoding and captions are :mod:`pipeline.media.social`'s; the audio is measured and
normalised as every rendition's (:mod:`pipeline.media.loudness`). Captions are burned only
when the transcript stage made a track; without one the cut is made without captions and the
stage says so (a warning, ``data.captions = false``). Burning needs ffmpeg's ``ass`` filter
(libass): an ffmpeg without it fails with ``config.invalid``, not with a broken file.

Output (stage directory ``social/``): ``mp4/social-9x16.mp4`` (role ``social-cut``, published
under the same key, :data:`pipeline.publish.keys.SOCIAL_CUT_KEY`), on the card as
``streams.social``.
"""

from __future__ import annotations

import functools
import shutil
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from pipeline.core import readers
from pipeline.core.clip import SOCIAL_OPTION
from pipeline.core.errors import ErrorCode, RecastError
from pipeline.core.fsutil import atomic_write_bytes
from pipeline.core.job import JobSpec
from pipeline.core.mediainfo import MediaInfo
from pipeline.core.settings import MediaSettings
from pipeline.core.stage import AssetRole, OutputAsset, Queue, Stage, StageContext, StageResult
from pipeline.media import loudness, social
from pipeline.media.captions import CaptionError, parse_caption_file
from pipeline.publish.keys import SOCIAL_CUT_KEY
from pipeline.tools import ffmpeg_tools

WORK_DIR = ".work"
CAPTION_SCRIPT = "captions.ass"


class SocialOptions(BaseModel):
    """What the job's ``social`` option asks of the 9:16 cut."""

    model_config = ConfigDict(extra="forbid", strict=True)

    crop_x: int | None = Field(
        None,
        ge=0,
        description="left edge of the 9:16 window in the source's display pixels; null: centred",
    )
    captions: bool = Field(False, description="burn the transcript's captions in")


def social_options(spec: JobSpec) -> SocialOptions | None:
    """The social cut the job asks for; None when it asks for none (no option, or false).
    ``social.invalid`` for an option that is not one."""
    value = spec.options.get(SOCIAL_OPTION)
    if value is None or value is False:
        return None
    if value is True:
        return SocialOptions()
    try:
        return SocialOptions.model_validate(value)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in error['loc']) or 'social'}: {error['msg']}"
            for error in exc.errors()
        )
        raise RecastError(
            ErrorCode.SOCIAL_INVALID, f"The job's social option is not usable ({problems})."
        ) from exc


@functools.cache
def ffmpeg_has_ass() -> bool:
    """Whether this ffmpeg has the ``ass`` filter (libass); asked once per process."""
    return "ass" in ffmpeg_tools.available_components("filters")


def _caption_script(
    captions: Path, plan: social.SocialPlan, work: Path, ctx: StageContext | None
) -> Path | None:
    """The ASS script of the caption track, in ``work``; None (with a warning) when the track
    has no cue to show."""
    try:
        cues = parse_caption_file(captions).cues
    except CaptionError as exc:
        if ctx is not None:
            ctx.warn(f"The captions could not be burned in: {exc}.")
        return None
    if not ffmpeg_has_ass():
        raise RecastError(
            ErrorCode.CONFIG_INVALID,
            "This ffmpeg has no ass filter (libass), so captions cannot be burned into the "
            "social cut: install an ffmpeg built with libass (Debian's is).",
        )
    script = work / CAPTION_SCRIPT
    atomic_write_bytes(script, social.caption_script(cues, plan.width, plan.height).encode())
    return script


def make_social_cut(
    source: Path,
    media: MediaInfo,
    out: Path,
    settings: MediaSettings,
    options: SocialOptions,
    captions: Path | None = None,
    ctx: StageContext | None = None,
) -> tuple[OutputAsset, dict[str, Any]]:
    """Render the social cut of ``source`` into ``out`` (tests and benchmarks call this
    directly); ``captions``: the WebVTT track to burn in, when asked."""
    plan = social.make_plan(media, settings, options.crop_x)
    work = out / WORK_DIR
    work.mkdir(parents=True, exist_ok=True)
    script = None
    if options.captions and captions is not None:
        script = _caption_script(captions, plan, work, ctx)
    cancel = ctx.cancel_event if ctx is not None else None
    measured = None
    if media.audio is not None:
        report = ffmpeg_tools.run(
            loudness.measure_args(source, media, settings),
            timeout_s=settings.timeout_for(media.duration),
            stall_timeout_s=settings.stall_timeout_s,
            cancel_event=cancel,
            what="measuring loudness",
            log_lines=loudness.REPORT_LINES,
        )
        measured = loudness.loudness_from_report(report.log)
    if ctx is not None:
        ctx.check_cancelled()
        ctx.progress(10, f"rendering {plan.width}x{plan.height}")

    def progress(seconds: float) -> None:
        if ctx is not None and media.duration > 0:
            ctx.progress(10 + 85 * seconds / media.duration, f"{seconds:.0f} s rendered")

    target = out / SOCIAL_CUT_KEY
    target.parent.mkdir(parents=True, exist_ok=True)
    ffmpeg_tools.run(
        social.render_args(
            source, media, plan, target, settings, loudness=measured, captions=script
        ),
        timeout_s=settings.timeout_for(media.duration),
        stall_timeout_s=settings.stall_timeout_s,
        on_progress=progress,
        cancel_event=cancel,
        what="the social cut",
    )
    shutil.rmtree(work)
    crop = plan.crop
    burned = script is not None
    asset = OutputAsset(
        file=SOCIAL_CUT_KEY,
        key=SOCIAL_CUT_KEY,
        role=AssetRole.SOCIAL_CUT,
        width=plan.width,
        height=plan.height,
        duration=round(media.duration, 3),
        bitrate=round(target.stat().st_size * 8 / media.duration) if media.duration > 0 else None,
        label=social.LABEL,
        extra={
            "captions": burned,
            "crop": {"x": crop.x, "y": crop.y, "width": crop.width, "height": crop.height},
        },
    )
    data = {
        "width": plan.width,
        "height": plan.height,
        "crop": asset.extra["crop"],
        "captions": burned,
    }
    return asset, data


def run(ctx: StageContext) -> StageResult:
    options = social_options(ctx.spec)
    if options is None:
        return StageResult.skipped("no social cut asked for (options.social)")
    media = readers.media_info(ctx)
    if media.video is None:
        return StageResult.skipped("no video to crop")
    captions = None
    if options.captions:
        captions = readers.transcript_captions(ctx)
        if captions is None:
            ctx.warn("No caption track to burn in: the social cut has no captions.")
    asset, data = make_social_cut(
        readers.source_media(ctx), media, ctx.out, ctx.settings.media, options, captions, ctx
    )
    detail = f"{asset.width}x{asset.height}" + (", captions burned in" if data["captions"] else "")
    return StageResult.done(
        ctx.out, detail=detail, assets=[asset], warnings=list(ctx.warnings), **data
    )


STAGE = Stage(
    name="social",
    queue=Queue.TRANSCODE,
    run=run,
    requires=(readers.INGEST, readers.PROBE, readers.TRANSCRIPT),
    time_limit_factor=6.0,
)
