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

English for every talk (``transcript.translate_to_english``; never with engine ``captions``,
which runs no speech model): when the transcript's language (recognised, or the source
captions') is not English and no English track is published (a human English track of the
source wins: nothing is translated), Whisper's translate task runs over the same audio with the
same model and options, and its English becomes a ``subtitles`` track ``en``, automatic,
labelled "English (machine-translated)", ``extra.translated_from`` = the spoken language. Its
cues are built from segment times (see :func:`asr.translate`). The transcript and its own
track stay in the spoken language. A second decoder pass: it roughly doubles the stage's
recognition time on such talks. When the transcript came from captions and the speech model
cannot be loaded, the stage warns and publishes the captions untranslated.

A clip's job (``options["clip"]``) recognises nothing: the ingest stage cut its parent's
transcript to the clip and re-timed it (``clip-transcript.json``); the cues are built again
from those words with this job's rules (for a transcript made from captions the parent's cue
ends stay preferred breaks), and language, engine, model and the human/machine flags are the
parent's. A parent without a transcript gives a clip without one (``skipped``).

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
from pipeline.core.clip import clip_spec
from pipeline.core.errors import ErrorCode, RecastError
from pipeline.core.source import SourceInfo, SubtitleTrack
from pipeline.core.stage import Queue, Stage, StageContext, StageResult
from pipeline.core.timedtext import TranscriptSegment
from pipeline.media.captions import CaptionError, SourceCaptions, caption_words, parse_caption_file
from pipeline.media.clips import timed_words
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


def speech_audio(
    ctx: StageContext, media: Path, duration: float
) -> np.ndarray[Any, np.dtype[np.float32]]:
    """The first audio stream of ``media`` as 16 kHz mono samples."""
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
    return audio


def _is_english(tag: str | None) -> bool:
    return tag is not None and languages.base(tag) == "en"


def from_speech(
    ctx: StageContext,
    audio: np.ndarray[Any, np.dtype[np.float32]],
    wanted: str | None,
    source: LanguageSource,
) -> TranscriptOutcome:
    settings = ctx.settings.transcript
    resolved = resolve_model(settings)
    language = languages.base(wanted) if wanted else None
    if language is not None and language not in asr.supported_languages(resolved.config):
        ctx.warn(f"The speech model does not know the language {wanted!r}; detecting it.")
        language, source = None, "none"
    # leave room on the progress bar for a translation when one may follow
    share = 55 if settings.translate_to_english and not _is_english(wanted) else 85
    ctx.progress(10, "recognising speech")
    recognition = asr.transcribe(
        audio,
        resolved.config,
        asr.AsrOptions(language=language, beam_size=settings.beam_size, vad=settings.vad),
        on_progress=lambda f: ctx.progress(10 + share * f, "recognising speech"),
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


# -- English for every talk ---------------------------------------------------------------------


def english_translation(
    ctx: StageContext,
    outcome: TranscriptOutcome,
    audio: np.ndarray[Any, np.dtype[np.float32]] | None,
) -> Track | None:
    """A machine-translated English track of the speech, when the transcript is in another
    language and no English track is published (see the module's docstring)."""
    settings = ctx.settings.transcript
    spoken = outcome.language
    if not settings.translate_to_english or settings.engine == "captions":
        return None  # engine captions: no speech model runs at all
    if not outcome.segments:
        return None
    if spoken is None or spoken == UNDETERMINED or _is_english(spoken):
        return None
    if any(_is_english(track.lang) for track in outcome.tracks):
        return None
    if audio is None and not readers.media_info(ctx).has_audio:
        return None
    try:
        resolved = resolve_model(settings)
        known = asr.supported_languages(resolved.config)
    except RecastError as error:
        # captions need no model: one that cannot load costs the translation, not the captions
        if error.code is not ErrorCode.MODEL_UNAVAILABLE:
            raise
        ctx.warn(f"No English translation: {error.message}")
        return None
    language: str | None = languages.base(spoken)
    if language not in known:
        language = None  # the model detects what it can
    if audio is None:
        audio = speech_audio(ctx, readers.source_media(ctx), readers.media_info(ctx).duration)
    ctx.progress(65, "translating to English")
    translation = asr.translate(
        audio,
        resolved.config,
        asr.AsrOptions(language=language, beam_size=settings.beam_size, vad=settings.vad),
        on_progress=lambda f: ctx.progress(65 + 30 * f, "translating to English"),
        cancel_event=ctx.cancel_event,
    )
    words = [word for segment in translation.segments for word in segment.words]
    cues = build_cues(words, rules(settings))
    if not cues:
        return None
    return Track(lang="en", automatic=True, cues=cues, kind="subtitles", translated_from=spoken)


# -- a clip: its parent's words -----------------------------------------------------------------


def from_parent_words(ctx: StageContext) -> StageResult:
    """A clip's captions and transcript from its parent's words (see the module's docstring)."""
    document = readers.clip_transcript(ctx)
    if document is None:
        return StageResult.skipped("the parent card has no transcript")
    cues = build_cues(timed_words(document), rules(ctx.settings.transcript))
    lang = document.language or UNDETERMINED
    tracks = [Track(lang=lang, automatic=document.automatic, cues=cues)] if cues else []
    outcome = TranscriptOutcome(
        engine=document.engine,
        language=document.language,
        language_source=document.language_source,
        automatic=document.automatic,
        word_timing=document.word_timing if cues else "none",
        segments=segments_from_cues(cues, recognised=document.engine == "asr"),
        tracks=tracks,
        model=document.model,
        language_probability=document.language_probability,
        duration=document.duration,
    )
    return finish(ctx, outcome)


def run(ctx: StageContext) -> StageResult:
    settings = ctx.settings.transcript
    if settings.engine == "none":
        return StageResult.skipped("transcripts are turned off (transcript.engine = none)")
    if clip_spec(ctx.spec) is not None:
        return from_parent_words(ctx)
    info = readers.source_info(ctx)
    wanted, source = wanted_language(ctx)
    ranked = ranked_tracks(info, wanted)
    audio: np.ndarray[Any, np.dtype[np.float32]] | None = None
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
        audio = speech_audio(ctx, readers.source_media(ctx), described.duration)
        outcome = from_speech(ctx, audio, wanted, source)
    outcome.tracks.extend(other_tracks(ctx, ranked, outcome))
    translated = english_translation(ctx, outcome, audio)
    if translated is not None:
        outcome.tracks.append(translated)
    return finish(ctx, outcome)


STAGE = Stage(
    name="transcript",
    queue=Queue.ASR,
    run=run,
    requires=(readers.INGEST, readers.PROBE),
    time_limit_factor=2.0,  # recognition, and a translation pass as long on non-English talks
)
