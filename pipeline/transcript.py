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
:mod:`pipeline.asr` runs with voice activity detection and word times, in the language given,
else the detected one (recorded). No audio stream: ``skipped: no audio``; silence or music
only: an empty transcript (and no caption track), not a failure.

Outputs, in ``transcript/captions/`` (published under the same keys):

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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from pipeline import asr, ffmpeg_tools, languages
from pipeline.captions import CaptionError, SourceCaptions, caption_words, parse_caption_file
from pipeline.errors import ErrorCode, RecastError
from pipeline.fsutil import atomic_write_bytes, atomic_write_json
from pipeline.ingest import load_info
from pipeline.job import StageStatus
from pipeline.models import resolve_model
from pipeline.settings import TranscriptSettings
from pipeline.source import SourceInfo, SubtitleTrack
from pipeline.stage import AssetRole, OutputAsset, Queue, Stage, StageContext, StageResult
from pipeline.subtitles import CueRules, build_cues, to_srt, to_vtt
from pipeline.timedtext import (
    Cue,
    TranscriptDocument,
    TranscriptSegment,
    TranscriptWord,
    Word,
)
from pipeline.transcript_text import opening, transcript_text

CAPTIONS_DIR = "captions"
OPENING_CHARS = 300
UNDETERMINED = "und"
LanguageSource = Literal["job", "settings", "detected", "captions", "none"]


@dataclass
class Track:
    lang: str
    automatic: bool
    cues: list[Cue]
    kind: str = "captions"


@dataclass
class Outcome:
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


def _segments_from_cues(cues: list[Cue], recognised: bool = False) -> list[TranscriptSegment]:
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
                words=[_transcript_word(w, recognised) for w in words],
            )
        )
    return segments


def _transcript_word(word: Word, recognised: bool) -> TranscriptWord:
    return TranscriptWord(
        word=word.text.strip(),
        start=round(word.start, 3),
        end=round(word.end, 3),
        confidence=round(word.confidence, 4) if recognised and word.confidence else None,
    )


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


def _parse_track(ingest_dir: Path, track: SubtitleTrack) -> SourceCaptions:
    assert track.file is not None
    parsed = parse_caption_file(ingest_dir / track.file)
    if not any(not w.noise for w in caption_words(parsed)):
        raise CaptionError("no spoken words in it")
    return parsed


def from_captions(
    ctx: StageContext, ranked: list[SubtitleTrack], wanted: str | None
) -> Outcome | None:
    """An outcome from the best usable caption track, or None when there is none. When the
    spoken language is given, only tracks in it can be the transcript (others are
    translations)."""
    ingest_dir = ctx.input_dir("ingest")
    for track in ranked:
        if wanted is not None and not _same_language(track.lang, wanted):
            continue
        try:
            parsed = _parse_track(ingest_dir, track)
        except CaptionError as error:
            ctx.warn(f"Source captions {track.file} are unusable ({error}); passed over.")
            continue
        lang = languages.normalise(track.lang) or UNDETERMINED
        automatic = track.automatic or parsed.rolling
        cues = build_cues(caption_words(parsed), rules(ctx.settings.transcript))
        return Outcome(
            engine="captions",
            language=lang,
            language_source="captions",
            automatic=automatic,
            word_timing="source" if parsed.rolling and automatic else "interpolated",
            segments=_segments_from_cues(cues),
            tracks=[Track(lang=lang, automatic=automatic, cues=cues)],
            caption_track=track.file,
        )
    return None


def other_tracks(ctx: StageContext, ranked: list[SubtitleTrack], outcome: Outcome) -> list[Track]:
    """The source's human caption tracks in languages other than the transcript's, published as
    subtitles beside it (automatic ones in other languages are machine translations: left)."""
    ingest_dir = ctx.input_dir("ingest")
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
            parsed = _parse_track(ingest_dir, track)
        except CaptionError as error:
            ctx.warn(f"Source captions {track.file} are unusable ({error}); not published.")
            continue
        lang = languages.normalise(track.lang) or track.lang
        seen.add(languages.base(lang))
        cues = build_cues(caption_words(parsed), rules(ctx.settings.transcript))
        found.append(Track(lang=lang, automatic=False, cues=cues, kind="subtitles"))
    return found


# -- speech recognition --------------------------------------------------------------------------


def _media(ctx: StageContext, info: SourceInfo) -> Path:
    ingest_dir = ctx.input_dir("ingest")
    if not info.media_file or not (ingest_dir / info.media_file).is_file():
        raise RecastError(ErrorCode.MEDIA_INVALID, "The ingest stage left no media file.")
    return ingest_dir / info.media_file


def audio_facts(ctx: StageContext, media: Path) -> tuple[bool, float]:
    """Whether the media has an audio stream, and its duration: from the probe stage when it
    ran, else from ffprobe."""
    result = ctx.input_result("probe")
    if result is not None and result.status is StageStatus.DONE:
        from pipeline.probe import load_media

        described = load_media(ctx.input_dir("probe"))
        return described.has_audio, described.duration
    data = ffmpeg_tools.probe(media)
    has_audio = any(s.get("codec_type") == "audio" for s in data.get("streams", []))
    return has_audio, ffmpeg_tools.media_duration(data) or 0.0


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
) -> Outcome:
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
            words=[_transcript_word(w, recognised=True) for w in segment.words],
        )
        for index, segment in enumerate(s for s in recognition.segments if not s.noise)
    ]
    return Outcome(
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


# -- outputs -------------------------------------------------------------------------------------


def _write_tracks(ctx: StageContext, outcome: Outcome) -> list[OutputAsset]:
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
            "label": languages.label(track.lang),
            "automatic": track.automatic,
        }
        assets.append(
            OutputAsset(
                file=vtt, key=vtt, extra={"format": "vtt", "srt": srt, "kind": track.kind}, **common
            )
        )
        assets.append(OutputAsset(file=srt, key=srt, extra={"format": "srt", "vtt": vtt}, **common))
    return assets


def finish(ctx: StageContext, outcome: Outcome) -> StageResult:
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


def run(ctx: StageContext) -> StageResult:
    settings = ctx.settings.transcript
    if settings.engine == "none":
        return StageResult.skipped("transcripts are turned off (transcript.engine = none)")
    info = load_info(ctx.input_dir("ingest"))
    wanted, source = wanted_language(ctx)
    ranked = ranked_tracks(info, wanted)
    use_captions = settings.engine != "asr" and bool(ranked)
    outcome = from_captions(ctx, ranked, wanted) if use_captions else None
    if outcome is None:
        if settings.engine == "captions":
            return StageResult.skipped("the source has no usable captions")
        if use_captions:
            ctx.warn("No usable source captions in the spoken language; recognising speech.")
        media = _media(ctx, info)
        has_audio, duration = audio_facts(ctx, media)
        if not has_audio:
            return StageResult.skipped("no audio")
        outcome = from_speech(ctx, media, duration, wanted, source)
    outcome.tracks.extend(other_tracks(ctx, ranked, outcome))
    return finish(ctx, outcome)


STAGE = Stage(
    name="transcript",
    queue=Queue.ASR,
    run=run,
    requires=("ingest", "probe"),
    time_limit_factor=1.0,
)
