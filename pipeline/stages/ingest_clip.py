"""The ingest stage of a clip's job: the clip's media cut from its parent, nothing downloaded.

A clip job (``options["clip"]``, :class:`pipeline.core.clip.ClipSpec`) runs the same DAG as
any job; only its ingest differs. It:

1. reads the parent card (it must still be published and ready) and its ``source.json``;
2. publishes the clip's preview card (the parent's source, the clip's title, description,
   duration and parent link);
3. finds the parent's media without downloading: the parent job's ingest media when that
   workspace is still on this machine (the original, best quality), else the parent's
   highest published MP4 rendition from the output storage (read in place on a local
   output, fetched otherwise);
4. cuts ``[start, end)`` out of it, frame-accurately and re-encoded
   (:func:`pipeline.tools.ffmpeg_tools.cut_args`: H.264 + AAC, timestamps from 0), into
   ``media.mp4``, which probe, playable, transcode and thumbnails take as any source;
5. cuts the parent's published transcript to the span, re-timed
   (:func:`pipeline.media.clips.cut_transcript`), into ``clip-transcript.json``, which the
   transcript stage turns into the clip's captions instead of recognising speech again.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from pipeline.core.clip import ClipSpec
from pipeline.core.errors import ErrorCode, RecastError
from pipeline.core.fsutil import atomic_write_json
from pipeline.core.readers import CLIP_TRANSCRIPT_FILE, INGEST, read_source_info
from pipeline.core.settings import Settings
from pipeline.core.source import SourceInfo
from pipeline.core.stage import StageContext
from pipeline.core.workspace import RESULT_FILE
from pipeline.media.clips import cut_transcript
from pipeline.publish.clips import (
    check_range,
    parent_mp4_key,
    parent_source,
    parent_transcript,
    ready_parent,
)
from pipeline.storage import Storage, open_storage
from pipeline.tools import ffmpeg_tools

MEDIA_FILE = "media.mp4"
FETCHED_PARENT = ".parent.mp4"
"""The parent's MP4 fetched from a remote output, removed once cut."""


def workspace_media(settings: Settings, card_id: str) -> Path | None:
    """The media the latest finished ingest of the card ``card_id`` left in this machine's
    workspace (a job's finished ingest records its card id), if any is left."""
    root = Path(settings.storage.workspace).resolve()
    found: list[tuple[float, Path]] = []
    for result in root.glob(f"*/{INGEST}/{RESULT_FILE}"):
        try:
            data = json.loads(result.read_text(encoding="utf-8")).get("data") or {}
            if data.get("card_id") != card_id:
                continue
            info = read_source_info(result.parent)
            stamp = result.stat().st_mtime
        except (OSError, ValueError):
            continue
        if info.media_file and (result.parent / info.media_file).is_file():
            found.append((stamp, result.parent / info.media_file))
    return max(found)[1] if found else None


def _parent_media(
    ctx: StageContext, storage: Storage, parent_id: str, mp4_key: str | None
) -> tuple[Path, ffmpeg_tools.InputPolicy, str]:
    """The parent's media to cut from, the policy to read it with, and where it came from."""
    max_pixels = ctx.settings.media.max_pixels
    original = workspace_media(ctx.settings, parent_id)
    if original is not None:
        return original, ffmpeg_tools.source_input(max_pixels), "the parent's ingest media"
    if mp4_key is None:
        raise RecastError(
            ErrorCode.CLIP_PARENT_NOT_READY,
            f"The card {parent_id} has no MP4 rendition to cut the clip from.",
        )
    policy = ffmpeg_tools.OWN_OUTPUT_INPUT.limited_to(max_pixels)
    in_place = storage.local_path(mp4_key)
    if in_place is not None:
        return in_place, policy, f"the published {mp4_key}"
    data = storage.get_bytes(mp4_key)
    if data is None:
        raise RecastError(
            ErrorCode.CLIP_PARENT_NOT_READY, f"The card {parent_id} lost its {mp4_key}."
        )
    fetched = ctx.out / FETCHED_PARENT
    fetched.write_bytes(data)
    return fetched, policy, f"the published {mp4_key}, fetched"


def _streams(probe: dict[str, object]) -> set[str]:
    streams = probe.get("streams")
    if not isinstance(streams, list):
        return set()
    return {str(s.get("codec_type")) for s in streams if isinstance(s, dict)}


def ingest_clip(
    ctx: StageContext, clip: ClipSpec, record: Callable[[SourceInfo], None]
) -> tuple[SourceInfo, str]:
    """Cut the clip's media and words from its parent (see the module's docstring);
    ``record`` writes the metadata and publishes the preview card (called before the cut and
    again after it). Returns the metadata and where the media was cut from."""
    settings = ctx.settings
    storage = open_storage(settings)
    ctx.progress(1, f"reading the parent card {clip.parent}")
    parent = ready_parent(storage, clip.parent)
    check_range(clip.start, clip.end, parent, settings)
    source = parent_source(storage, parent)
    meta = source.model_copy(
        update={
            "title": clip.title,
            "description": clip.description,
            "duration": clip.duration,
            "chapters": [],
            "subtitles": [],
            "thumbnail_url": None,
            "thumbnail_file": None,
            "media_file": None,
            "media_duration": None,
            "clip": clip.origin(parent.title),
        }
    )
    record(meta)
    media, policy, origin = _parent_media(ctx, storage, parent.id, parent_mp4_key(storage, parent))
    target = ctx.out / MEDIA_FILE
    try:
        streams = _streams(ffmpeg_tools.probe(media, policy=policy))
        cut = ffmpeg_tools.Cut(
            start=clip.start,
            end=clip.end,
            video="video" in streams,
            audio="audio" in streams,
            preset=settings.clips.cut_preset,
            crf=settings.clips.cut_crf,
        )
        ctx.progress(5, f"cutting {clip.duration:g} s from {origin}")
        ffmpeg_tools.run(
            ffmpeg_tools.cut_args(media, target, cut, policy),
            timeout_s=settings.media.timeout_for(clip.duration + ffmpeg_tools.CUT_PREROLL_S),
            stall_timeout_s=settings.media.stall_timeout_s,
            on_progress=lambda done: ctx.progress(5 + 90 * done / clip.duration, "cutting"),
            cancel_event=ctx.cancel_event,
            what="the clip's cut",
        )
    finally:
        (ctx.out / FETCHED_PARENT).unlink(missing_ok=True)
    probe = ffmpeg_tools.probe(
        target, policy=ffmpeg_tools.OWN_OUTPUT_INPUT.limited_to(settings.media.max_pixels)
    )
    meta.media_file = MEDIA_FILE
    meta.media_duration = ffmpeg_tools.media_duration(probe)
    document = parent_transcript(storage, parent)
    if document is not None:
        words = cut_transcript(document, clip.start, clip.end)
        atomic_write_json(ctx.out / CLIP_TRANSCRIPT_FILE, words.model_dump(mode="json"))
    record(meta)
    ctx.log.info("clip %s cut from %s", clip.card_id, origin)
    return meta, origin
