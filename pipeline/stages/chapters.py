"""The chapters stage: the recording's chapters, and their WebVTT chapters track.

The source's chapters (yt-dlp's, in ingest's ``info.json``) win when they still keep YouTube's
rules once normalised (:func:`pipeline.media.chapters.normalise_chapters`: first at 0:00, at
least three, each at least 10 s, titles of at most 50 characters). Otherwise, with
``chapters.from_transcript``, chapters are found in the transcript's sentences
(:func:`pipeline.media.chapters.find_chapters`: topic segmentation by lexical cohesion, a
title per chapter from its distinctive words). Neither: the card has no chapters. Pure text
work over files already made: it costs milliseconds, never a decoder.

Outputs, in ``chapters/``:

- ``captions/chapters.vtt`` (role ``chapters``), published under the same key: a cue per
  chapter, its title the text (``<track kind="chapters">``);
- ``chapters.json``: the chapters and where they came from.

Result data: ``chapters`` (a list of ``{title, start, end}``; empty: the card has none, whatever
the source said) and ``origin`` (``"source"``, ``"transcript"`` or ``"none"``); the publish
stage puts them on the card.
"""

from __future__ import annotations

from pipeline.core import readers
from pipeline.core.fsutil import atomic_write_bytes, atomic_write_json
from pipeline.core.stage import AssetRole, OutputAsset, Queue, Stage, StageContext, StageResult
from pipeline.media.chapters import (
    ChapterSpan,
    SegmentationRules,
    chapters_vtt,
    find_chapters,
    normalise_chapters,
    transcript_sentences,
)

TRACK_FILE = "captions/chapters.vtt"
CHAPTERS_FILE = "chapters.json"


def _from_transcript(ctx: StageContext, duration: float) -> list[ChapterSpan]:
    document = readers.transcript_document(ctx)
    if document is None or not document.segments:
        return []
    settings = ctx.settings.chapters
    rules = SegmentationRules(
        min_recording_s=settings.min_recording_s,
        seconds_per_chapter=settings.seconds_per_chapter,
    )
    return find_chapters(
        transcript_sentences(document.segments), duration, document.language, rules
    )


def run(ctx: StageContext) -> StageResult:
    info = readers.source_info(ctx)
    duration = readers.media_info(ctx).duration or info.media_duration or info.duration or 0.0
    chapters = normalise_chapters(info.chapters, duration or None, language=info.language)
    origin = "source" if chapters else "none"
    if info.chapters and not chapters:
        ctx.warn(
            f"The source's {len(info.chapters)} chapters do not keep YouTube's rules (first at "
            "0:00, at least 3, each at least 10 s) even merged; not published."
        )
    if not chapters and ctx.settings.chapters.from_transcript and duration > 0:
        chapters = _from_transcript(ctx, duration)
        origin = "transcript" if chapters else "none"
    listed = [
        {"title": c.title, "start": round(c.start, 3), "end": round(c.end, 3)} for c in chapters
    ]
    atomic_write_json(ctx.out / CHAPTERS_FILE, {"origin": origin, "chapters": listed})
    assets: list[OutputAsset] = []
    if chapters:
        (ctx.out / TRACK_FILE).parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(ctx.out / TRACK_FILE, chapters_vtt(chapters).encode("utf-8"))
        assets.append(OutputAsset(file=TRACK_FILE, key=TRACK_FILE, role=AssetRole.CHAPTERS))
    detail = f"{len(chapters)} chapters from the {origin}" if chapters else "no chapters"
    return StageResult.done(
        ctx.out,
        detail=detail,
        assets=assets,
        chapters=listed,
        origin=origin,
        warnings=list(ctx.warnings),
    )


STAGE = Stage(
    name="chapters",
    queue=Queue.MEDIA,
    run=run,
    requires=(readers.INGEST, readers.PROBE, readers.TRANSCRIPT),
)
