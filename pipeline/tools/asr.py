"""Speech recognition with faster-whisper; the only module that imports it, and only when a
model is loaded: without the ``asr`` extra (an API-only image) everything else still imports.

- :func:`get_model` loads a model once per process and configuration (model, device, compute
  type, threads) and keeps it: every later job in the process reuses it.
- :func:`transcribe` decodes 16 kHz mono samples with voice activity detection (silence and
  music are not decoded), word timestamps, and the language given or else detected; it
  reports progress and stops between segments when the job is cancelled.
- :func:`translate` runs Whisper's translate task (speech in any language to English text)
  with the same model and options: a second decoder pass. Whisper's word timestamps come from
  aligning the tokens it wrote with the audio, which means little for a translation, so a
  translated segment keeps Whisper's segment times and its words are spread over them by
  their length (then moved out of leading or trailing silence like recognised words), the
  segment's end marked as a preferred cue break.
- :data:`STATS` counts model loads, transcriptions and translations: a real observable for
  tests, the benchmark and metrics ("two jobs load the model once", "recognition did not run").
- :func:`check_model` loads a model directory once, as the installer's last check.
"""

from __future__ import annotations

import logging
import math
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from pipeline.core.errors import ErrorCode, RecastError
from pipeline.core.timedtext import Word, is_noise

if TYPE_CHECKING:
    from faster_whisper import WhisperModel

SAMPLE_RATE = 16_000
Task = Literal["transcribe", "translate"]
log = logging.getLogger("recast.asr")


@dataclass(frozen=True)
class ModelConfig:
    model: str
    """A model directory or a faster-whisper model name."""
    device: str = "cpu"
    compute_type: str = "int8"
    cpu_threads: int = 0
    """0: every core this process may use."""
    download_root: str | None = None


@dataclass
class AsrStats:
    """Counters of what recognition did in this process."""

    model_loads: int = 0
    check_loads: int = 0
    transcriptions: int = 0
    translations: int = 0
    audio_seconds: float = 0.0
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def snapshot(self) -> dict[str, float]:
        with self.lock:
            return {
                "model_loads": self.model_loads,
                "check_loads": self.check_loads,
                "transcriptions": self.transcriptions,
                "translations": self.translations,
                "audio_seconds": self.audio_seconds,
            }


STATS = AsrStats()
_models: dict[ModelConfig, WhisperModel] = {}
_models_lock = threading.Lock()


def _threads(config: ModelConfig) -> int:
    if config.cpu_threads > 0:
        return config.cpu_threads
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _load(config: ModelConfig) -> WhisperModel:
    try:
        from faster_whisper import WhisperModel
    except ImportError as exc:
        raise RecastError(
            ErrorCode.MODEL_UNAVAILABLE,
            "Speech recognition is not installed here: it needs the asr extra "
            "(pip install 'recast[asr]', or the image built with RECAST_DEPS=full).",
        ) from exc
    try:
        return WhisperModel(
            config.model,
            device=config.device,
            compute_type=config.compute_type,
            cpu_threads=_threads(config),
            download_root=config.download_root,
        )
    except Exception as exc:  # ctranslate2/huggingface raise many kinds; all mean the same
        raise RecastError(
            ErrorCode.MODEL_UNAVAILABLE,
            f"The speech model {config.model!r} could not be loaded "
            f"({type(exc).__name__}: {str(exc)[:200]}).",
        ) from exc


def get_model(config: ModelConfig) -> WhisperModel:
    """The process's model for ``config``, loaded on first use."""
    with _models_lock:
        model = _models.get(config)
        if model is None:
            log.info(
                "loading speech model %s (%s, %s)", config.model, config.device, config.compute_type
            )
            model = _load(config)
            _models[config] = model
            with STATS.lock:
                STATS.model_loads += 1
        return model


def unload_models() -> None:
    """Forget every loaded model (tests; a worker changing its settings)."""
    with _models_lock:
        _models.clear()


def check_model(path: str) -> None:
    """Load the model at ``path`` once (CPU, int8) and drop it; RecastError if it fails."""
    model = _load(ModelConfig(model=path, device="cpu", compute_type="int8", cpu_threads=1))
    with STATS.lock:
        STATS.check_loads += 1
    del model


def supported_languages(config: ModelConfig) -> list[str]:
    languages: list[str] = list(get_model(config).supported_languages)
    return languages


@dataclass(frozen=True)
class AsrOptions:
    language: str | None = None
    """Spoken language when known (a Whisper code such as "de"); None: detect it."""
    beam_size: int = 1
    vad: bool = True


@dataclass(frozen=True)
class RecognizedSegment:
    start: float
    end: float
    text: str
    confidence: float
    words: list[Word]
    noise: bool = False


@dataclass(frozen=True)
class Recognition:
    language: str | None
    language_probability: float | None
    duration: float
    speech_duration: float
    segments: list[RecognizedSegment]


def _words(segment: Any) -> list[Word]:
    words = []
    for item in segment.words or []:
        start, end = float(item.start), float(item.end)
        if not math.isfinite(start) or not math.isfinite(end):
            continue
        words.append(
            Word(text=str(item.word), start=start, end=end, confidence=float(item.probability))
        )
    return words


FRAME_S = 0.02


def snap_to_sound(words: list[Word], audio: np.ndarray[Any, np.dtype[np.float32]]) -> list[Word]:
    """Words whose recognised start (or end) falls in silence moved to where sound begins (or
    ends) within the word. Whisper tends to start a word at the beginning of the padded speech
    chunk, hundreds of milliseconds before anyone speaks; captions should not."""
    frame = int(SAMPLE_RATE * FRAME_S)
    count = len(audio) // frame
    if count == 0 or not words:
        return words
    rms = np.sqrt(np.mean(np.square(audio[: count * frame].reshape(count, frame)), axis=1))
    voiced = rms >= max(1e-3, float(np.percentile(rms, 95)) * 0.03)
    snapped = []
    for word in words:
        first, last = int(word.start / FRAME_S), min(count, math.ceil(word.end / FRAME_S))
        start, end = word.start, word.end
        if first < last:
            inside = np.flatnonzero(voiced[first:last])
            if inside.size:
                if not voiced[first]:
                    start = (first + int(inside[0])) * FRAME_S
                if not voiced[last - 1]:
                    end = (first + int(inside[-1]) + 1) * FRAME_S
        snapped.append(replace(word, start=start, end=max(start, end)))
    return snapped


def spread_words(text: str, start: float, end: float) -> list[Word]:
    """Words of ``text`` with times spread over [start, end] by their length; the last one is
    marked as a preferred cue break (its segment ends there)."""
    tokens = text.split()
    total = sum(len(token) + 1 for token in tokens)
    words: list[Word] = []
    at = start
    for index, token in enumerate(tokens):
        share = (end - start) * (len(token) + 1) / total
        last = index == len(tokens) - 1
        words.append(
            Word(text=" " + token, start=at, end=end if last else at + share, break_after=last)
        )
        at += share
    return words


def _recognised_words(
    segment: Any, text: str, audio: np.ndarray[Any, np.dtype[np.float32]], task: Task
) -> list[Word]:
    if task == "translate":
        return snap_to_sound(spread_words(text, float(segment.start), float(segment.end)), audio)
    return snap_to_sound(_words(segment), audio)


def _decode(
    audio: np.ndarray[Any, np.dtype[np.float32]],
    config: ModelConfig,
    options: AsrOptions,
    task: Task,
    on_progress: Callable[[float], None] | None,
    cancel_event: threading.Event | None,
) -> Recognition:
    model = get_model(config)
    duration = len(audio) / SAMPLE_RATE
    language = options.language
    if language is not None and language not in model.supported_languages:
        raise RecastError(
            ErrorCode.CONFIG_INVALID, f"The speech model does not know the language {language!r}."
        )
    with STATS.lock:
        if task == "translate":
            STATS.translations += 1
        else:
            STATS.transcriptions += 1
        STATS.audio_seconds += duration
    segments_iter, info = model.transcribe(
        audio,
        language=language,
        task=task,
        beam_size=options.beam_size,
        word_timestamps=task == "transcribe",
        vad_filter=options.vad,
        condition_on_previous_text=False,
    )
    segments: list[RecognizedSegment] = []
    for segment in segments_iter:
        if cancel_event is not None and cancel_event.is_set():
            raise RecastError(ErrorCode.JOB_CANCELLED, "The job was cancelled.")
        text = " ".join(str(segment.text).split())
        if not text:
            continue
        noise = is_noise(text)
        words = _recognised_words(segment, text, audio, task)
        if noise or not words:
            words = [
                Word(
                    text=" " + text,
                    start=float(segment.start),
                    end=float(segment.end),
                    confidence=math.exp(float(segment.avg_logprob)),
                    noise=noise,
                )
            ]
        segments.append(
            RecognizedSegment(
                start=float(segment.start),
                end=float(segment.end),
                text=text,
                confidence=math.exp(float(segment.avg_logprob)),
                words=words,
                noise=noise,
            )
        )
        if on_progress is not None and duration > 0:
            on_progress(min(1.0, float(segment.end) / duration))
    speech = float(info.duration_after_vad if options.vad else info.duration)
    detected = language is None
    return Recognition(
        language=language or (str(info.language) if speech > 0 else None),
        language_probability=float(info.language_probability) if detected and speech > 0 else None,
        duration=duration,
        speech_duration=speech,
        segments=segments,
    )


def transcribe(
    audio: np.ndarray[Any, np.dtype[np.float32]],
    config: ModelConfig,
    options: AsrOptions,
    *,
    on_progress: Callable[[float], None] | None = None,
    cancel_event: threading.Event | None = None,
) -> Recognition:
    """Recognise speech in ``audio`` (16 kHz mono float32 samples)."""
    return _decode(audio, config, options, "transcribe", on_progress, cancel_event)


def translate(
    audio: np.ndarray[Any, np.dtype[np.float32]],
    config: ModelConfig,
    options: AsrOptions,
    *,
    on_progress: Callable[[float], None] | None = None,
    cancel_event: threading.Event | None = None,
) -> Recognition:
    """English text of the speech in ``audio`` (Whisper's translate task), timed by segment.
    ``options.language`` is the spoken language (None: detected); the result's ``language``
    is that spoken language, not English. Word confidences are left out: Whisper gives none
    for a segment's words without word timestamps."""
    return _decode(audio, config, options, "translate", on_progress, cancel_event)
