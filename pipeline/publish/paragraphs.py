"""Transcript paragraphs for the watch page: timed text grouped into readable paragraphs.

Reads the transcript JSON (``segments`` with ``start``/``end``/``text``, or ``paragraphs``)
when there is one, else the cues of a WebVTT caption file. A paragraph ends at a pause, or
at the end of a sentence once it is long enough.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

_TIME = r"(?:(\d+):)?(\d{1,2}):(\d{2})[.,](\d{3})"
_CUE_TIMING = re.compile(rf"^\s*{_TIME}\s+-->\s+{_TIME}")
_TAG = re.compile(r"<[^>]*>")
PAUSE_S = 2.0
TARGET_CHARS = 320
MAX_CHARS = 900


@dataclass(frozen=True)
class TimedText:
    start: float
    end: float
    text: str


@dataclass(frozen=True)
class Paragraph:
    start: float
    text: str

    @property
    def label(self) -> str:
        total = int(self.start)
        hours, rest = divmod(total, 3600)
        minutes, seconds = divmod(rest, 60)
        return f"{hours}:{minutes:02d}:{seconds:02d}" if hours else f"{minutes}:{seconds:02d}"


def _seconds(groups: tuple[str | None, ...]) -> float:
    hours, minutes, seconds, millis = groups
    return (
        int(hours or 0) * 3600
        + int(minutes or 0) * 60
        + int(seconds or 0)
        + int(millis or 0) / 1000
    )


def vtt_cues(text: str) -> list[TimedText]:
    """The cues of a WebVTT (or SRT) file: times and plain text (tags and entities removed)."""
    import html

    cues: list[TimedText] = []
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    index = 0
    while index < len(lines):
        match = _CUE_TIMING.match(lines[index])
        index += 1
        if not match:
            continue
        groups = match.groups()
        body: list[str] = []
        while index < len(lines) and lines[index].strip():
            body.append(html.unescape(_TAG.sub("", lines[index])).strip())
            index += 1
        content = " ".join(part for part in body if part)
        if content:
            cues.append(TimedText(_seconds(groups[:4]), _seconds(groups[4:]), content))
    return _drop_rolling_repeats(cues)


def _drop_rolling_repeats(cues: list[TimedText]) -> list[TimedText]:
    """Automatic captions repeat the previous line in the next cue; keep each text once."""
    kept: list[TimedText] = []
    for cue in cues:
        if kept and cue.text.startswith(kept[-1].text) and cue.text != kept[-1].text:
            cue = TimedText(cue.start, cue.end, cue.text[len(kept[-1].text) :].strip())
        if cue.text and not (kept and cue.text == kept[-1].text):
            kept.append(cue)
    return kept


def json_segments(data: Any) -> list[TimedText] | None:
    """Timed segments of a transcript JSON document, if it has a shape we know."""
    items = None
    if isinstance(data, dict):
        items = data.get("paragraphs") or data.get("segments")
    elif isinstance(data, list):
        items = data
    if not isinstance(items, list):
        return None
    segments = []
    for item in items:
        if not isinstance(item, dict) or "start" not in item or "text" not in item:
            return None
        start = float(item["start"])
        segments.append(
            TimedText(start, float(item.get("end") or start), str(item["text"]).strip())
        )
    return [s for s in segments if s.text]


def group(segments: list[TimedText]) -> list[Paragraph]:
    paragraphs: list[Paragraph] = []
    start = 0.0
    parts: list[str] = []
    last_end = 0.0
    for segment in segments:
        length = sum(len(p) + 1 for p in parts)
        sentence_done = bool(parts) and parts[-1].rstrip().endswith((".", "?", "!", "…", "。"))
        if parts and (
            segment.start - last_end >= PAUSE_S
            or (length >= TARGET_CHARS and sentence_done)
            or length >= MAX_CHARS
        ):
            paragraphs.append(Paragraph(start, " ".join(parts)))
            parts = []
        if not parts:
            start = segment.start
        parts.append(segment.text)
        last_end = segment.end
    if parts:
        paragraphs.append(Paragraph(start, " ".join(parts)))
    return paragraphs


def transcript_paragraphs(json_file: Path | None, vtt_file: Path | None) -> list[Paragraph]:
    """Paragraphs from the transcript JSON when readable, else from a caption file."""
    if json_file is not None and json_file.is_file():
        try:
            segments = json_segments(json.loads(json_file.read_text("utf-8")))
        except (ValueError, TypeError):
            segments = None
        if segments:
            return group(segments)
    if vtt_file is not None and vtt_file.is_file():
        return group(vtt_cues(vtt_file.read_text("utf-8", errors="replace")))
    return []
