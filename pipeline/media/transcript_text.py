"""The transcript as text people read: paragraphs for ``transcript.txt``, and its opening.

A paragraph ends at a long pause, or at a sentence end once it is long enough, or in any case
when it grows very long (automatic captions have no punctuation). Sound descriptions
("[Music]") are captions, not transcript text, and never reach here.
"""

from __future__ import annotations

from collections.abc import Sequence

from pipeline.core.timedtext import TranscriptSegment
from pipeline.media.subtitles import SENTENCE_END

PARAGRAPH_PAUSE_S = 2.0
PARAGRAPH_TARGET_CHARS = 500
PARAGRAPH_MAX_CHARS = 1000


def paragraphs(segments: Sequence[TranscriptSegment]) -> list[str]:
    found: list[str] = []
    current: list[str] = []
    size = 0
    previous_end: float | None = None
    for segment in segments:
        text = " ".join(segment.text.split())
        if not text:
            continue
        pause = previous_end is not None and segment.start - previous_end >= PARAGRAPH_PAUSE_S
        if current and pause:
            found.append(" ".join(current))
            current, size = [], 0
        current.append(text)
        size += len(text) + 1
        ends_sentence = bool(SENTENCE_END.search(text))
        if size >= PARAGRAPH_MAX_CHARS or (size >= PARAGRAPH_TARGET_CHARS and ends_sentence):
            found.append(" ".join(current))
            current, size = [], 0
        previous_end = segment.end
    if current:
        found.append(" ".join(current))
    return found


def transcript_text(segments: Sequence[TranscriptSegment]) -> str:
    """``transcript.txt``: paragraphs separated by a blank line; empty when nothing was said."""
    found = paragraphs(segments)
    return "\n\n".join(found) + "\n" if found else ""


def opening(text: str, length: int) -> str:
    """The first ``length`` characters or so of ``text``, cut at a word boundary."""
    flat = " ".join(text.split())
    if len(flat) <= length:
        return flat
    cut = flat[: length + 1]
    space = cut.rfind(" ")
    return cut[:space] if space > length // 2 else flat[:length]
