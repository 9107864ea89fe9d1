"""The transcript stage: captions and a transcript, from the source's captions or from speech.

Engine (``transcript.engine``):

- ``auto``: the source's captions when ingest found usable ones, else speech recognition;
- ``captions``: the source's captions only (skipped when there are none);
- ``asr``: speech recognition always; ``none``: the stage is skipped.

Captions: tracks in the spoken language (the job's ``options["language"]``, else
``transcript.language``, else what the source says) come first, then human ones before
automatic ones. When the spoken language is given, only a track in it can be the transcript
(a track in another language is a translation). A caption file that cannot be parsed is
passed over with a warning, and recognition runs when none is left. Human tracks in other
languages are published beside the transcript's track as subtitles, whichever the engine.

Recognition: the first audio stream is decoded once to 16 kHz mono (``ffmpeg_tools``), then
:mod:`pipeline.tools.asr` runs with voice activity detection and word times, in the language given,
else the detected one (recorded). No audio stream: ``skipped: no audio``; silence or music
only: an empty transcript (and no caption track), not a failure.

Outputs (written by :mod:`pipeline.stages.transcript_outputs`), in ``transcript/captions/``,
published under the same keys:

- ``<lang>.vtt`` (role ``captions``, ``extra.format = "vtt"``, ``extra.srt`` = its SRT twin),
- ``<lang>.srt`` (role ``captions``, ``extra.format = "srt"``, ``extra.vtt`` = its VTT twin);
  a caption *track* is the VTT asset, the SRT asset is its download form;
- ``transcript.txt`` (``transcript-txt``) and ``transcript.json`` (``transcript-json``).

Result data: ``language``, ``language_source``, ``engine`` ("captions" | "asr"), ``model``,
``automatic``, ``opening`` (the transcript's first ~300 characters, for the card's excerpt),
``word_count``, ``tracks`` and ``warnings``.
"""

from __future__ import annotations

import wave
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.core import languages, readers
from pipeline.core.errors import ErrorCode, RecastError
from pipeline.core.source import SourceInfo, SubtitleTrack
from pipeline.core.stage import Queue, Stage, StageContext, StageResult
from pipeline.core.timedtext import TranscriptSegment
from pipeline.media.captions import CaptionError, SourceCaptions, caption_words, parse_caption_file
from pipeline.media.subtitles import build_cues
from pipeline.stages.transcript_outputs import (
    LanguageSource,
    Track,
    TranscriptOutcome,
    finish,
    rules,
    segments_from_cues,
    transcript_word,
)
from pipeline.tools import asr, ffmpeg_tools
from pipeline.tools.speech_models import resolve_model

UNDETERMINED = "und"


# -- the language asked for ---------------------------------------------------------------------


def wanted_language(ctx: StageContext) -> tuple[str | None, LanguageSource]:
    """The spoken language if the job or the settings give it."""
    given: list[tuple[object, LanguageSource]] = [
        (ctx.spec.options.get("language"), "job"),
        (ctx.settings.transcript.language, "settings"),
    ]
    for value, source in given:
        if not value:
            continue
        tag = languages.normalise(str(value))
        if tag is None:
            ctx.warn(f"The {source} language {value!r} is not a language tag; ignored.")
            continue
        return tag, source
    return None, "none"


# -- source captions -----------------------------------------------------------------------------


def _same_language(a: str, b: str | None) -> bool:
    return b is not None and languages.base(a) == languages.base(b)


def ranked_tracks(info: SourceInfo, wanted: str | None) -> list[SubtitleTrack]:
    """The downloaded caption tracks, best first: in the spoken language (as given, else as the
    source says), then human before automatic, then in the order ingest found them."""
    spoken = wanted or info.language
    tracks = [t for t in info.subtitles if t.file]

    def rank(item: tuple[int, SubtitleTrack]) -> tuple[bool, bool, int]:
        index, track = item
        return (not _same_language(track.lang, spoken), track.automatic, index)

    return [track for _, track in sorted(enumerate(tracks), key=rank)]


def _caption_cap(ctx: StageContext) -> int:
    return int(ctx.settings.ingest.max_caption_mb * 1024 * 1024)


def _parse_track(ctx: StageContext, track: SubtitleTrack) -> SourceCaptions:
    parsed = parse_caption_file(readers.caption_file(ctx, track), _caption_cap(ctx))
    if not any(not w.noise for w in caption_words(parsed)):
        raise CaptionError("no spoken words in it")
    return parsed


def from_captions(
    ctx: StageContext, ranked: list[SubtitleTrack], wanted: str | None
) -> TranscriptOutcome | None:
    """An outcome from the best usable caption track, or None when there is none. When the
    spoken language is given, only tracks in it can be the transcript (others are
    translations)."""
    for track in ranked:
        if wanted is not None and not _same_language(track.lang, wanted):
            continue
        try:
            parsed = _parse_track(ctx, track)
        except CaptionError as error:
            ctx.warn(f"Source captions {track.file} are unusable ({error}); passed over.")
            continue
        lang = languages.normalise(track.lang) or UNDETERMINED
        automatic = track.automatic or parsed.rolling
        cues = build_cues(caption_words(parsed), rules(ctx.settings.transcript))
        return TranscriptOutcome(
            engine="captions",
            language=lang,
            language_source="captions",
            automatic=automatic,
            word_timing="source" if parsed.rolling and automatic else "interpolated",
            segments=segments_from_cues(cues),
            tracks=[Track(lang=lang, automatic=automatic, cues=cues)],
            caption_track=track.file,
        )
    return None


def other_tracks(
    ctx: StageContext, ranked: list[SubtitleTrack], outcome: TranscriptOutcome
) -> list[Track]:
    """The source's human caption tracks in languages other than the transcript's, published as
    subtitles beside it (automatic ones in other languages are machine translations: left)."""
    seen = {languages.base(t.lang) for t in outcome.tracks}
    if outcome.language:
        seen.add(languages.base(outcome.language))
    found: list[Track] = []
    for track in ranked:
        if track.automatic or track.file == outcome.caption_track:
            continue
        if languages.base(track.lang) in seen:
            continue
        try:
            parsed = _parse_track(ctx, track)
        except CaptionError as error:
            ctx.warn(f"Source captions {track.file} are unusable ({error}); not published.")
            continue
        lang = languages.normalise(track.lang) or track.lang
        seen.add(languages.base(lang))
        cues = build_cues(caption_words(parsed), rules(ctx.settings.transcript))
        found.append(Track(lang=lang, automatic=False, cues=cues, kind="subtitles"))
    return found


# -- speech recognition --------------------------------------------------------------------------


def read_speech_wav(path: Path) -> np.ndarray[Any, np.dtype[np.float32]]:
    """Samples of a 16 kHz mono 16-bit WAV as float32 in [-1, 1]."""
    with wave.open(str(path), "rb") as handle:
        if (
            handle.getnchannels() != 1
            or handle.getsampwidth() != 2
            or handle.getframerate() != asr.SAMPLE_RATE
        ):
            raise RecastError(ErrorCode.INTERNAL, "The extracted audio has an unexpected format.")
        frames = handle.readframes(handle.getnframes())
    samples: np.ndarray[Any, np.dtype[np.float32]] = (
        np.frombuffer(frames, dtype="<i2").astype(np.float32) / 32768.0
    )
    return samples


def from_speech(
    ctx: StageContext, media: Path, duration: float, wanted: str | None, source: LanguageSource
) -> TranscriptOutcome:
    settings = ctx.settings.transcript
    resolved = resolve_model(settings)
    language = languages.base(wanted) if wanted else None
    if language is not None and language not in asr.supported_languages(resolved.config):
        ctx.warn(f"The speech model does not know the language {wanted!r}; detecting it.")
        language, source = None, "none"
    wav = ctx.out / ".speech.wav"
    try:
        ctx.progress(2, "extracting audio")
        ffmpeg_tools.extract_speech_audio(
            media,
            wav,
            timeout_s=120 + duration,
            on_progress=lambda s: ctx.progress(2 + 8 * s / max(duration, 1), "extracting audio"),
            cancel_event=ctx.cancel_event,
        )
        audio = read_speech_wav(wav)
    finally:
        wav.unlink(missing_ok=True)
    ctx.check_cancelled()
    ctx.progress(10, "recognising speech")
    recognition = asr.transcribe(
        audio,
        resolved.config,
        asr.AsrOptions(language=language, beam_size=settings.beam_size, vad=settings.vad),
        on_progress=lambda f: ctx.progress(10 + 85 * f, "recognising speech"),
        cancel_event=ctx.cancel_event,
    )
    words = [word for segment in recognition.segments for word in segment.words]
    cues = build_cues(words, rules(settings))
    found = languages.normalise(recognition.language) if recognition.language else None
    if language is None and found is not None:
        source = "detected"
    lang = wanted if language is not None else found
    segments = [
        TranscriptSegment(
            id=index,
            start=round(segment.start, 3),
            end=round(segment.end, 3),
            text=segment.text,
            confidence=round(segment.confidence, 4),
            words=[transcript_word(w, recognised=True) for w in segment.words],
        )
        for index, segment in enumerate(s for s in recognition.segments if not s.noise)
    ]
    return TranscriptOutcome(
        engine="asr",
        language=lang,
        language_source=source if lang else "none",
        language_probability=recognition.language_probability,
        automatic=True,
        word_timing="recognised" if segments else "none",
        segments=segments,
        tracks=[Track(lang=lang or UNDETERMINED, automatic=True, cues=cues)] if cues else [],
        model=resolved.label,
        duration=recognition.duration,
    )


def run(ctx: StageContext) -> StageResult:
    settings = ctx.settings.transcript
    if settings.engine == "none":
        return StageResult.skipped("transcripts are turned off (transcript.engine = none)")
    info = readers.source_info(ctx)
    wanted, source = wanted_language(ctx)
    ranked = ranked_tracks(info, wanted)
    use_captions = settings.engine != "asr" and bool(ranked)
    outcome = from_captions(ctx, ranked, wanted) if use_captions else None
    if outcome is None:
        if settings.engine == "captions":
            return StageResult.skipped("the source has no usable captions")
        if use_captions:
            ctx.warn("No usable source captions in the spoken language; recognising speech.")
        described = readers.media_info(ctx)
        if not described.has_audio:
            return StageResult.skipped("no audio")
        media = readers.source_media(ctx)
        outcome = from_speech(ctx, media, described.duration, wanted, source)
    outcome.tracks.extend(other_tracks(ctx, ranked, outcome))
    return finish(ctx, outcome)


STAGE = Stage(
    name="transcript",
    queue=Queue.ASR,
    run=run,
    requires=(readers.INGEST, readers.PROBE),
    time_limit_factor=1.0,
)
