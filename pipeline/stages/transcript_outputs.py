"""The transcript stage's outputs: the typed outcome of either engine, and the files it writes.

:func:`finish` writes, in ``captions/`` of the stage directory, one ``<lang>.vtt`` and
``<lang>.srt`` per track, ``transcript.txt`` and ``transcript.json``; lists them as
:class:`~pipeline.core.stage.OutputAsset`s (see :mod:`pipeline.stages.transcript` for roles
and extras)
and returns the stage's result with its data (language, engine, model, opening, tracks...).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from pipeline.core import languages
from pipeline.core.fsutil import atomic_write_bytes, atomic_write_json
from pipeline.core.settings import TranscriptSettings
from pipeline.core.stage import AssetRole, OutputAsset, StageContext, StageResult
from pipeline.core.timedtext import (
    Cue,
    TranscriptDocument,
    TranscriptSegment,
    TranscriptWord,
    Word,
)
from pipeline.media.subtitles import CueRules, to_srt, to_vtt
from pipeline.media.transcript_text import opening, transcript_text

CAPTIONS_DIR = "captions"
OPENING_CHARS = 300
LanguageSource = Literal["job", "settings", "detected", "captions", "none"]


@dataclass
class Track:
    lang: str
    automatic: bool
    cues: list[Cue]
    kind: str = "captions"
    translated_from: str | None = None
    """A machine translation's source language (the speech's): labelled machine-translated."""

    @property
    def label(self) -> str:
        name = languages.label(self.lang)
        return f"{name} (machine-translated)" if self.translated_from else name


@dataclass
class TranscriptOutcome:
    """What the transcript stage found: the transcript's segments and tracks, and how."""

    engine: Literal["captions", "asr"]
    language: str | None
    language_source: LanguageSource
    automatic: bool
    word_timing: Literal["recognised", "source", "interpolated", "none"]
    segments: list[TranscriptSegment]
    tracks: list[Track] = field(default_factory=list)
    model: str | None = None
    language_probability: float | None = None
    caption_track: str | None = None
    duration: float | None = None


def rules(settings: TranscriptSettings) -> CueRules:
    return CueRules(
        max_line_chars=settings.max_line_chars,
        max_lines=settings.max_lines,
        min_s=settings.min_cue_s,
        max_s=settings.max_cue_s,
    )


def segments_from_cues(cues: list[Cue], recognised: bool = False) -> list[TranscriptSegment]:
    segments: list[TranscriptSegment] = []
    for cue in cues:
        if cue.noise:
            continue
        words = [w for w in cue.words if not w.noise]
        segments.append(
            TranscriptSegment(
                id=len(segments),
                start=cue.start,
                end=cue.end,
                text=cue.text,
                words=[transcript_word(w, recognised) for w in words],
            )
        )
    return segments


def transcript_word(word: Word, recognised: bool) -> TranscriptWord:
    return TranscriptWord(
        word=word.text.strip(),
        start=round(word.start, 3),
        end=round(word.end, 3),
        confidence=round(word.confidence, 4)
        if recognised and word.confidence is not None
        else None,
    )


def _write_tracks(ctx: StageContext, outcome: TranscriptOutcome) -> list[OutputAsset]:
    assets: list[OutputAsset] = []
    for track in outcome.tracks:
        if not track.cues:
            continue
        vtt, srt = f"{CAPTIONS_DIR}/{track.lang}.vtt", f"{CAPTIONS_DIR}/{track.lang}.srt"
        atomic_write_bytes(ctx.out / vtt, to_vtt(track.cues).encode("utf-8"))
        atomic_write_bytes(ctx.out / srt, to_srt(track.cues).encode("utf-8"))
        common: dict[str, Any] = {
            "role": AssetRole.CAPTIONS,
            "lang": track.lang,
            "label": track.label,
            "automatic": track.automatic,
        }
        extra: dict[str, Any] = {"format": "vtt", "srt": srt, "kind": track.kind}
        if track.translated_from:
            extra["translated_from"] = track.translated_from
        assets.append(OutputAsset(file=vtt, key=vtt, extra=extra, **common))
        assets.append(OutputAsset(file=srt, key=srt, extra={"format": "srt", "vtt": vtt}, **common))
    return assets


def finish(ctx: StageContext, outcome: TranscriptOutcome) -> StageResult:
    (ctx.out / CAPTIONS_DIR).mkdir(parents=True, exist_ok=True)
    assets = _write_tracks(ctx, outcome)
    text = transcript_text(outcome.segments)
    document = TranscriptDocument(
        language=outcome.language,
        language_probability=outcome.language_probability,
        language_source=outcome.language_source,
        engine=outcome.engine,
        model=outcome.model,
        automatic=outcome.automatic,
        caption_track=outcome.caption_track,
        word_timing=outcome.word_timing,
        duration=outcome.duration,
        text=" ".join(text.split()),
        segments=outcome.segments,
    )
    txt, doc = f"{CAPTIONS_DIR}/transcript.txt", f"{CAPTIONS_DIR}/transcript.json"
    atomic_write_bytes(ctx.out / txt, text.encode("utf-8"))
    atomic_write_json(ctx.out / doc, document.model_dump(mode="json"))
    word_count = len(document.text.split())
    assets.append(
        OutputAsset(
            file=txt,
            key=txt,
            role=AssetRole.TRANSCRIPT_TXT,
            lang=outcome.language,
            extra={"words": word_count},
        )
    )
    assets.append(
        OutputAsset(file=doc, key=doc, role=AssetRole.TRANSCRIPT_JSON, lang=outcome.language)
    )
    length = max(OPENING_CHARS, ctx.settings.card.excerpt_length + 100)
    detail = f"{outcome.engine}: {word_count} words" + (
        f" ({outcome.language})" if outcome.language else ""
    )
    return StageResult.done(
        ctx.out,
        detail=detail,
        assets=assets,
        language=outcome.language,
        language_source=outcome.language_source,
        language_probability=outcome.language_probability,
        engine=outcome.engine,
        model=outcome.model,
        automatic=outcome.automatic,
        opening=opening(document.text, length),
        word_count=word_count,
        tracks=[
            {"lang": a.lang, "label": a.label, "automatic": a.automatic, "vtt": a.key, **a.extra}
            for a in assets
            if a.role is AssetRole.CAPTIONS and a.extra.get("format") == "vtt"
        ],
        warnings=list(ctx.warnings),
    )
