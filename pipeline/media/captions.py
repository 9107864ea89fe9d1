"""Source captions: parse WebVTT and SRT files, and clean YouTube-style automatic captions.

- :func:`parse_caption_file` reads a WebVTT or SRT file into :class:`SourceCue`s; a file that is
  not one (no ``WEBVTT`` header and no SRT cue, a malformed timestamp, a cue ending before it
  starts, no cue at all, an unknown format) raises :class:`CaptionError`, so the transcript
  stage can fall back to recognition with a warning.
- :func:`caption_words` turns the cues into timed :class:`~pipeline.core.timedtext.Word`s for the
  cue builder. Rolling automatic captions (each cue repeats the line before it, and carries
  inline ``<00:00:01.000><c>`` word times) are de-duplicated: only the line a cue adds is kept,
  with the word times the tags give. Authored (human) cues keep their boundaries and line
  breaks as preferred break points; times inside a cue are spread by word length.
- Sound descriptions ("[Music]", "(applause)") become words marked ``noise``: the cue builder
  gives them a cue of their own, and the transcript leaves them out.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass
from pathlib import Path

from pipeline.core.timedtext import Word, is_noise

_TIMESTAMP = r"(?:(\d{1,}):)?([0-5]\d):([0-5]\d)[.,](\d{3})"
_TIMING_LINE = re.compile(rf"^\s*{_TIMESTAMP}\s*-->\s*{_TIMESTAMP}(?:\s+.*)?$")
_INLINE_TIME = re.compile(r"<((?:\d+:)?[0-5]\d:[0-5]\d\.\d{3})>")
# Every pattern here is linear in its input: a tag's body stops at the next "<" (and an ASS
# override's at the next "{"), so a line of unclosed "<a<a<a…" cannot make each "<" scan the
# rest of the line (which was quadratic: 32 KB took 1.5 s).
_TAG = re.compile(r"</?[A-Za-z][^<>]*>|<(?:\d+:)?\d\d:\d\d\.\d{3}>")
_ASS_OVERRIDE = re.compile(r"\{\\[^{}]*\}")
_VTT_SKIP_BLOCKS = ("NOTE", "STYLE", "REGION")
MAX_CAPTION_BYTES = 10 * 1024 * 1024
"""The default cap of a caption file (``ingest.max_caption_mb``)."""


class CaptionError(ValueError):
    """A caption file that cannot be used."""


@dataclass(frozen=True)
class SourceCue:
    start: float
    end: float
    lines: tuple[str, ...]
    """Raw text lines, markup and inline timestamps still in."""


@dataclass(frozen=True)
class SourceCaptions:
    cues: list[SourceCue]
    format: str
    rolling: bool


def _seconds(match: re.Match[str], offset: int) -> float:
    hours, minutes, seconds, millis = match.group(offset, offset + 1, offset + 2, offset + 3)
    return int(hours or 0) * 3600 + int(minutes) * 60 + int(seconds) + int(millis) / 1000


def _clock_seconds(text: str) -> float:
    match = re.fullmatch(_TIMESTAMP, text)
    if match is None:
        raise CaptionError(f"bad inline timestamp {text!r}")
    return _seconds(match, 1)


def _decode(data: bytes) -> str:
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        text = data.decode("cp1252", errors="replace")
    if "\x00" in text:
        raise CaptionError("binary data, not a caption file")
    return text.replace("\r\n", "\n").replace("\r", "\n")


def _timing(line: str, where: str) -> tuple[float, float]:
    match = _TIMING_LINE.match(line)
    if match is None:
        raise CaptionError(f"malformed timing line {where}: {line.strip()[:60]!r}")
    start, end = _seconds(match, 1), _seconds(match, 5)
    if end < start:
        raise CaptionError(f"a cue ends before it starts {where}")
    return start, end


def _blocks(text: str) -> list[list[str]]:
    blocks: list[list[str]] = []
    current: list[str] = []
    for line in text.split("\n"):
        if line == "":
            if current:
                blocks.append(current)
                current = []
        else:
            current.append(line)
    if current:
        blocks.append(current)
    return blocks


def parse_vtt(text: str) -> list[SourceCue]:
    lines = text.split("\n", 1)
    if not re.match(r"^WEBVTT(?:[ \t].*)?$", lines[0]):
        raise CaptionError("no WEBVTT header")
    cues: list[SourceCue] = []
    for number, block in enumerate(_blocks(text)[1:], start=2):
        if block[0].split(" ", 1)[0].split("\t", 1)[0] in _VTT_SKIP_BLOCKS:
            continue
        timing_at = 0 if "-->" in block[0] else 1
        if timing_at >= len(block) or "-->" not in block[timing_at]:
            raise CaptionError(f"block {number} is neither a cue nor a comment")
        start, end = _timing(block[timing_at], f"in block {number}")
        cues.append(SourceCue(start, end, tuple(block[timing_at + 1 :])))
    return cues


def parse_srt(text: str) -> list[SourceCue]:
    cues: list[SourceCue] = []
    for number, block in enumerate(_blocks(text), start=1):
        timing_at = 1 if block[0].strip().isdigit() else 0
        if timing_at >= len(block) or "-->" not in block[timing_at]:
            raise CaptionError(f"SRT block {number} has no timing line")
        start, end = _timing(block[timing_at], f"in SRT block {number}")
        cues.append(SourceCue(start, end, tuple(block[timing_at + 1 :])))
    return cues


def parse_caption_text(text: str, hint: str = "") -> SourceCaptions:
    """Parse WebVTT or SRT text (``hint``: the file's extension)."""
    kind = hint.lower().lstrip(".")
    if text.startswith("WEBVTT") or kind == "vtt":
        cues, fmt = parse_vtt(text), "vtt"
    elif kind in ("srt", "") and "-->" in text:
        cues, fmt = parse_srt(text), "srt"
    else:
        raise CaptionError(f"not a WebVTT or SRT file ({hint or 'unknown format'})")
    cues = [cue for cue in cues if any(_plain(line) for line in cue.lines)]
    if not cues:
        raise CaptionError("the file has no cue with text")
    return SourceCaptions(cues=cues, format=fmt, rolling=_is_rolling(cues))


def parse_caption_file(path: Path, max_bytes: int = MAX_CAPTION_BYTES) -> SourceCaptions:
    """Parse a caption file; :class:`CaptionError` when it cannot be used (or is over
    ``max_bytes``)."""
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise CaptionError(f"{path.name} cannot be read: {exc.strerror}") from exc
    if size > max_bytes:
        raise CaptionError(
            f"{path.name} is {size / 1048576:.1f} MB, over the caption limit of "
            f"{max_bytes / 1048576:.1f} MB"
        )
    return parse_caption_text(_decode(path.read_bytes()), path.suffix)


# -- text --------------------------------------------------------------------------------------


def _plain(line: str) -> str:
    """A cue line without markup, entities decoded, spaces collapsed."""
    text = line
    if "<" in text or "{" in text:
        text = _ASS_OVERRIDE.sub("", _TAG.sub("", text))
    if "&" in text:
        text = html.unescape(text)
    if "\u200e" in text or "\u200f" in text:
        text = text.replace("\u200e", "").replace("\u200f", "")
    return " ".join(text.split())


def _is_rolling(cues: list[SourceCue]) -> bool:
    """YouTube-style rolling captions: inline word times, or cues repeating the line before."""
    if any(_INLINE_TIME.search(line) for cue in cues for line in cue.lines):
        return True
    repeats = 0
    previous: list[str] = []
    for cue in cues:
        lines = [p for p in (_plain(line) for line in cue.lines) if p]
        if previous and lines and lines[0] == previous[-1]:
            repeats += 1
        previous = lines or previous
    return len(cues) >= 3 and repeats >= len(cues) * 0.3


MAX_ROLLING_OVERLAP = 4
"""Rolling captions repeat one or two lines; looking further would make a cue of many lines
cost the square of its length."""


def _overlap(previous: list[str], lines: list[str]) -> int:
    """How many leading ``lines`` repeat the end of ``previous``."""
    for size in range(min(len(previous), len(lines), MAX_ROLLING_OVERLAP), 0, -1):
        if lines[:size] == previous[-size:]:
            return size
    return 0


def _spread(text: str, start: float, end: float) -> list[Word]:
    """Words of ``text`` with times spread over [start, end] by their length."""
    tokens = text.split()
    if not tokens:
        return []
    total = sum(len(t) + 1 for t in tokens)
    words: list[Word] = []
    at = start
    for token in tokens:
        share = (end - start) * (len(token) + 1) / total
        words.append(Word(text=" " + token, start=at, end=at + share))
        at += share
    return words


def _timed_line_words(line: str, start: float, end: float) -> list[Word]:
    """Words of a line with inline timestamps: text before the first tag starts at ``start``."""
    pieces = _INLINE_TIME.split(line)
    chunks: list[tuple[float, str]] = [(start, pieces[0])]
    for index in range(1, len(pieces), 2):
        chunks.append((_clock_seconds(pieces[index]), pieces[index + 1]))
    words: list[Word] = []
    for index, (chunk_start, raw) in enumerate(chunks):
        chunk_end = chunks[index + 1][0] if index + 1 < len(chunks) else end
        chunk_start = min(max(chunk_start, start), end)
        words.extend(_spread(_plain(raw), chunk_start, max(chunk_start, min(chunk_end, end))))
    return words


def _line_words(raw: str, plain: str, start: float, end: float) -> list[Word]:
    if not plain:
        return []
    if is_noise(plain):
        return [Word(text=" " + plain, start=start, end=end, noise=True)]
    if _INLINE_TIME.search(raw):
        return _timed_line_words(raw, start, end)
    return _spread(plain, start, end)


def _mark_last(words: list[Word], *, line: bool, cue: bool) -> None:
    if words:
        last = words[-1]
        words[-1] = Word(
            text=last.text,
            start=last.start,
            end=last.end,
            confidence=last.confidence,
            break_after=last.break_after or cue,
            line_after=last.line_after or line,
            noise=last.noise,
        )


def caption_words(captions: SourceCaptions) -> list[Word]:
    """Timed words of the captions, rolling repetitions removed."""
    words: list[Word] = []
    previous: list[str] = []
    last_noise = ""
    for cue in captions.cues:
        pairs = [(line, plain) for line in cue.lines if (plain := _plain(line))]
        lines = [plain for _raw, plain in pairs]
        if captions.rolling:
            fresh = pairs[_overlap(previous, lines) :]
            previous = lines or previous
        else:
            fresh = pairs
        cue_words: list[Word] = []
        line_count = len(fresh)
        for index, (raw, plain) in enumerate(fresh):
            if line_count > 1 and not _INLINE_TIME.search(raw):
                share = (cue.end - cue.start) / line_count
                line_start, line_end = cue.start + index * share, cue.start + (index + 1) * share
            else:
                line_start, line_end = cue.start, cue.end
            found = _line_words(raw, plain, line_start, line_end)
            if found and found[0].noise:
                if plain == last_noise and captions.rolling:
                    continue  # a repeated "[Music]" line of a rolling track
                last_noise = plain
            elif found:
                last_noise = ""
            cue_words.extend(found)
            _mark_last(cue_words, line=not captions.rolling, cue=False)
        _mark_last(cue_words, line=False, cue=not captions.rolling)
        words.extend(cue_words)
    return words
