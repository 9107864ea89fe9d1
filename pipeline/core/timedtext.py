"""Timed text shared by source captions, speech recognition and the writers.

- :class:`Word`: one word with its times, as recognition or a caption file gives it;
- :class:`Cue`: one caption on screen (start, end, at most ``max_lines`` lines);
- :class:`TranscriptDocument`: the typed form of ``captions/transcript.json``.

A word's ``text`` keeps the spacing convention of faster-whisper: a leading space where a
space separates it from the word before (none inside CJK text), so joining words is
``"".join(w.text for w in words).strip()``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, Field

_NOISE = re.compile(r"^\s*(\[[^\]]*\]|\([^)]*\)|[♪♫ ]+)\s*$")


def is_noise(text: str) -> bool:
    """Whether ``text`` is only a sound description: "[Music]", "(applause)", "♪"."""
    return bool(text.strip()) and bool(_NOISE.match(text))


@dataclass(frozen=True)
class Word:
    text: str
    start: float
    end: float
    confidence: float | None = None
    break_after: bool = False
    """The source ended an authored cue after this word: a preferred place for a cue break."""
    line_after: bool = False
    """The source ended a line after this word: a preferred place for a line break."""
    noise: bool = False
    """A sound description ("[Music]"): caption text of its own, not a transcript word."""


@dataclass(frozen=True)
class Cue:
    start: float
    end: float
    lines: tuple[str, ...]
    words: tuple[Word, ...] = ()
    noise: bool = False

    @property
    def text(self) -> str:
        return " ".join(self.lines)

    @property
    def duration(self) -> float:
        return self.end - self.start


def join_words(words: list[Word] | tuple[Word, ...]) -> str:
    return "".join(word.text for word in words).strip()


class TranscriptWord(BaseModel):
    word: str
    start: float
    end: float
    confidence: float | None = None
    """Recognition's probability for the word; null when the source's captions gave it."""


class TranscriptSegment(BaseModel):
    id: int
    start: float
    end: float
    text: str
    confidence: float | None = None
    words: list[TranscriptWord] = Field(default_factory=list)


class TranscriptDocument(BaseModel):
    """``captions/transcript.json``."""

    version: Literal[1] = 1
    language: str | None
    """BCP 47 tag of the spoken language; null when nothing was said."""
    language_probability: float | None = None
    """Recognition's confidence in a detected language; null when it was given or captioned."""
    language_source: Literal["job", "settings", "detected", "captions", "none"]
    engine: Literal["captions", "asr"]
    model: str | None = None
    """The recognition model; null for source captions."""
    automatic: bool
    """Machine-made: recognition, or the source's automatic captions."""
    caption_track: str | None = None
    """The source caption file used (engine "captions")."""
    word_timing: Literal["recognised", "source", "interpolated", "none"]
    duration: float | None = None
    text: str
    segments: list[TranscriptSegment] = Field(default_factory=list)
