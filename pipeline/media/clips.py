"""A clip's timed text and cut points, from its parent's transcript (pure logic).

- :func:`cut_transcript`: the parent's transcript over ``[start, end)`` of its time, re-timed
  to the clip. A word belongs to the clip when its middle falls inside the span (so a word the
  cut clips keeps its caption only if most of it is heard); its times are shifted by
  ``-start`` and kept inside the clip. Segments stay as the parent had them (those left
  empty go); language, engine, model and the human/machine flags are the parent's.
- :func:`timed_words`: those words as the cue builder takes them; for a transcript made from
  captions, each segment's last word ends an authored cue (the parent's cue boundaries stay
  preferred breaks), as it did when the parent's cues were built.
- :func:`snap_cut`: a cut moved to the nearest pause between words (a gap of at least
  ``pause_s``), at most ``tolerance_s`` away, so a clip neither starts nor ends mid-word. A
  start lands ``pause_s / 2`` before the word after the pause, an end ``pause_s / 2`` after
  the word before it (never past the pause's middle); the recording's start and end count as
  pauses. With no pause that near, the cut stays where it was asked.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from pipeline.core.timedtext import TranscriptDocument, TranscriptSegment, TranscriptWord, Word

CutKind = Literal["start", "end"]


def _ms(seconds: float) -> float:
    return round(seconds, 3)


def _spread(segment: TranscriptSegment) -> list[TranscriptWord]:
    """The words of a segment that has text but no word times, spread over its time by
    length (as captions without word times are)."""
    tokens = segment.text.split()
    total = sum(len(token) + 1 for token in tokens)
    words: list[TranscriptWord] = []
    at = segment.start
    for token in tokens:
        share = (segment.end - segment.start) * (len(token) + 1) / total
        words.append(TranscriptWord(word=token, start=at, end=at + share))
        at += share
    return words


def cut_transcript(document: TranscriptDocument, start: float, end: float) -> TranscriptDocument:
    """The parent's ``document`` over ``[start, end)``, in the clip's time (see the module's
    docstring)."""
    duration = end - start

    def inside(seconds: float) -> float:
        return _ms(min(max(seconds - start, 0.0), duration))

    segments: list[TranscriptSegment] = []
    for segment in document.segments:
        words = [
            TranscriptWord(
                word=word.word,
                start=inside(word.start),
                end=inside(word.end),
                confidence=word.confidence,
            )
            for word in (segment.words or _spread(segment))
            if start <= (word.start + word.end) / 2 < end
        ]
        if not words:
            continue
        segments.append(
            TranscriptSegment(
                id=len(segments),
                start=words[0].start,
                end=max(w.end for w in words),
                text=" ".join(w.word for w in words),
                confidence=segment.confidence,
                words=words,
            )
        )
    return document.model_copy(
        update={
            "segments": segments,
            "text": " ".join(segment.text for segment in segments),
            "duration": _ms(duration),
            "caption_track": None,
        }
    )


def timed_words(document: TranscriptDocument) -> list[Word]:
    """The transcript's words for :func:`pipeline.media.subtitles.build_cues`."""
    authored = document.engine == "captions"
    found: list[Word] = []
    for segment in document.segments:
        for index, word in enumerate(segment.words):
            found.append(
                Word(
                    text=" " + word.word,
                    start=word.start,
                    end=word.end,
                    confidence=word.confidence,
                    break_after=authored and index == len(segment.words) - 1,
                )
            )
    return found


@dataclass(frozen=True)
class SnappedCut:
    requested: float
    time: float
    snapped: bool
    """Moved to a pause (False: no pause within the tolerance, the cut stays)."""


def pauses(
    spans: Sequence[tuple[float, float]], pause_s: float, duration: float
) -> list[tuple[float, float]]:
    """The pauses of speech made of word ``spans`` (start, end): gaps of at least ``pause_s``
    between words, the time before the first word and after the last."""
    if not spans:
        return []
    ordered = sorted(spans)
    found = [(0.0, ordered[0][0])]
    reach = ordered[0][1]
    for word_start, word_end in ordered[1:]:
        if word_start - reach >= pause_s:
            found.append((reach, word_start))
        reach = max(reach, word_end)
    found.append((reach, max(reach, duration)))
    return found


def snap_cut(
    time: float,
    spans: Sequence[tuple[float, float]],
    *,
    kind: CutKind,
    pause_s: float,
    tolerance_s: float,
    duration: float,
) -> SnappedCut:
    """``time`` moved to the nearest pause within ``tolerance_s`` (see the module's
    docstring)."""
    half = pause_s / 2
    best: float | None = None
    for before, after in pauses(spans, pause_s, duration):
        point = max(before, after - half) if kind == "start" else min(after, before + half)
        if abs(point - time) <= tolerance_s and (
            best is None or abs(point - time) < abs(best - time)
        ):
            best = point
    if best is None:
        return SnappedCut(requested=time, time=time, snapped=False)
    return SnappedCut(requested=time, time=_ms(best), snapped=True)


def word_spans(document: TranscriptDocument) -> list[tuple[float, float]]:
    """(start, end) of every word of the transcript (a segment without word times counts as
    one word)."""
    spans: list[tuple[float, float]] = []
    for segment in document.segments:
        if segment.words:
            spans.extend((word.start, word.end) for word in segment.words)
        elif segment.text.strip():
            spans.append((segment.start, segment.end))
    return spans
