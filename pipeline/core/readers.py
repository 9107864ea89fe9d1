"""Typed readers of finished stage outputs, and the names of the files they read.

A stage reads another stage's outputs only through these functions, never by importing the
stage that wrote them. Each reads through :meth:`StageContext.input_dir` (or
:meth:`~StageContext.input_result`), which refuses a stage the running stage did not declare in
its ``requires``: what a stage reads and what it declares cannot drift apart.

The file names here are the one place writer and reader agree on: the ingest stage writes
``info.json`` (:class:`~pipeline.core.source.SourceInfo`), the downloaded media, the source's
thumbnail and caption files; the probe stage writes ``media.json``
(:class:`~pipeline.core.mediainfo.MediaInfo`).
"""

from __future__ import annotations

from pathlib import Path

from pipeline.core.errors import ErrorCode, RecastError
from pipeline.core.job import StageStatus
from pipeline.core.mediainfo import MediaInfo
from pipeline.core.source import SourceInfo, SubtitleTrack
from pipeline.core.stage import AssetRole, StageContext
from pipeline.core.timedtext import TranscriptDocument

INGEST = "ingest"
PROBE = "probe"
TRANSCRIPT = "transcript"

INFO_FILE = "info.json"
"""In ``ingest/``: what the source said about itself (:class:`SourceInfo`)."""
THUMBNAIL_FILE = "thumbnail.jpg"
"""In ``ingest/``: the source's own thumbnail, as a JPEG."""
CAPTIONS_DIR = "captions"
"""In ``ingest/``: the source's caption files (``<lang>[.auto].<ext>``)."""
MEDIA_INFO_FILE = "media.json"
"""In ``probe/``: what the downloaded media is (:class:`MediaInfo`)."""
CLIP_TRANSCRIPT_FILE = "clip-transcript.json"
"""In ``ingest/`` of a clip's job: the parent's transcript cut to the clip and re-timed
(:class:`TranscriptDocument`); absent when the parent has none."""


# -- files, for the stage writing them and for tools outside a job ---------------------------


def read_source_info(directory: Path) -> SourceInfo:
    """The :class:`SourceInfo` in an ingest stage directory (finished or partial)."""
    return SourceInfo.model_validate_json((directory / INFO_FILE).read_text(encoding="utf-8"))


def read_media_info(directory: Path) -> MediaInfo:
    """The :class:`MediaInfo` in a probe stage directory."""
    return MediaInfo.model_validate_json((directory / MEDIA_INFO_FILE).read_text(encoding="utf-8"))


# -- what a running stage reads of the stages it requires ------------------------------------


def source_info(ctx: StageContext) -> SourceInfo:
    """What the source said about itself (requires ``ingest``)."""
    return read_source_info(ctx.input_dir(INGEST))


def source_media(ctx: StageContext) -> Path:
    """The media file the ingest stage downloaded (requires ``ingest``)."""
    directory = ctx.input_dir(INGEST)
    info = read_source_info(directory)
    if not info.media_file or not (directory / info.media_file).is_file():
        raise RecastError(ErrorCode.MEDIA_INVALID, "The ingest stage left no media file.")
    return directory / info.media_file


def source_thumbnail(ctx: StageContext) -> Path | None:
    """The source's own thumbnail, when ingest got one (requires ``ingest``)."""
    directory = ctx.input_dir(INGEST)
    info = read_source_info(directory)
    if not info.thumbnail_file or not (directory / info.thumbnail_file).is_file():
        return None
    return directory / info.thumbnail_file


def caption_file(ctx: StageContext, track: SubtitleTrack) -> Path:
    """The downloaded file of one of the source's caption tracks (requires ``ingest``)."""
    if track.file is None:
        raise RecastError(ErrorCode.INTERNAL, f"The {track.lang} caption track has no file.")
    return ctx.input_dir(INGEST) / track.file


def clip_transcript(ctx: StageContext) -> TranscriptDocument | None:
    """A clip's words, cut from its parent's transcript by the ingest stage (requires
    ``ingest``); None when the parent has no transcript, or the job is not a clip's."""
    path = ctx.input_dir(INGEST) / CLIP_TRANSCRIPT_FILE
    if not path.is_file():
        return None
    return TranscriptDocument.model_validate_json(path.read_text(encoding="utf-8"))


def media_info(ctx: StageContext) -> MediaInfo:
    """What the downloaded media is (requires ``probe``)."""
    return read_media_info(ctx.input_dir(PROBE))


def transcript_document(ctx: StageContext) -> TranscriptDocument | None:
    """The transcript (``transcript.json``, the transcript stage's ``transcript-json`` asset;
    requires ``transcript``); None when the stage made none (skipped, nothing said)."""
    result = ctx.input_result(TRANSCRIPT)
    if result is None or result.status != StageStatus.DONE:
        return None
    asset = next((a for a in result.assets if a.role == AssetRole.TRANSCRIPT_JSON), None)
    if asset is None:
        return None
    path = ctx.input_dir(TRANSCRIPT) / asset.file
    return TranscriptDocument.model_validate_json(path.read_text(encoding="utf-8"))


def transcript_captions(ctx: StageContext) -> Path | None:
    """The WebVTT caption track of the transcript, in the transcript's language (else the
    first track), as the transcript stage published it (requires ``transcript``); None when
    the stage made no track (skipped, or nothing was said)."""
    result = ctx.input_result(TRANSCRIPT)
    if result is None or result.status != StageStatus.DONE:
        return None
    tracks = [
        asset
        for asset in result.assets
        if asset.role is AssetRole.CAPTIONS and asset.file.lower().endswith(".vtt")
    ]
    if not tracks:
        return None
    language = result.data.get("language")
    chosen = next((track for track in tracks if track.lang == language), tracks[0])
    path = ctx.input_dir(TRANSCRIPT) / chosen.file
    return path if path.is_file() else None


# -- the ingest stage's own outputs, while it runs --------------------------------------------


def recorded_source_info(ctx: StageContext) -> SourceInfo:
    """What the running ingest stage recorded so far (``info.json`` in its partial directory):
    the preview card is published from it before the media is downloaded."""
    if ctx.stage != INGEST:
        raise RecastError(
            ErrorCode.INTERNAL,
            f"The {ctx.stage} stage read the ingest stage's partial outputs; "
            "only the ingest stage itself may (a bug in Recast).",
        )
    return read_source_info(ctx.out)


def recorded_thumbnail(ctx: StageContext, info: SourceInfo) -> Path | None:
    """The thumbnail the running ingest stage saved, if any (see :func:`recorded_source_info`)."""
    if not info.thumbnail_file or not (ctx.out / info.thumbnail_file).is_file():
        return None
    return ctx.out / info.thumbnail_file
