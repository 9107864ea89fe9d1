"""A strict WebVTT checker for tests, written from the W3C WebVTT syntax (not its lenient
parser): file magic, blocks separated by blank lines, cue timings with ``hh:mm:ss.ttt``
timestamps (minutes and seconds below 60), end after start, start times in order, payload
lines that are not blank and hold no ``-->``, ``&`` only in character references and ``<`` only
in tags. Returns the cues so tests can check times and lines too."""

from __future__ import annotations

import re
from dataclasses import dataclass

_TIMESTAMP = r"(?:(\d{2,}):)?([0-5]\d):([0-5]\d)\.(\d{3})"
_TIMINGS = re.compile(rf"^{_TIMESTAMP}[ \t]+-->[ \t]+{_TIMESTAMP}(?:[ \t]+(.*))?$")
_SETTING = re.compile(r"^(vertical|line|position|size|align|region):\S+$")
_REFERENCE = re.compile(r"&(?:[A-Za-z][A-Za-z0-9]*;|#\d+;|#[xX][0-9A-Fa-f]+;)")
_TAG = re.compile(r"</?(?:c|i|b|u|ruby|rt|v|lang)(?:\.[^\s>.]+)*(?:[ \t][^>]*)?>|<[\d:.]+>")


class WebVTTError(AssertionError):
    pass


@dataclass(frozen=True)
class StrictCue:
    identifier: str | None
    start: float
    end: float
    lines: tuple[str, ...]

    @property
    def text(self) -> str:
        return " ".join(unescape(line) for line in self.lines)


def unescape(line: str) -> str:
    line = re.sub(r"<[^>]*>", "", line)
    return (
        line.replace("&lt;", "<").replace("&gt;", ">").replace("&nbsp;", " ").replace("&amp;", "&")
    )


def _seconds(groups: tuple[str | None, ...]) -> float:
    hours, minutes, seconds, millis = groups
    return (
        int(hours or 0) * 3600
        + int(minutes or 0) * 60
        + int(seconds or 0)
        + int(millis or 0) / 1000
    )


def _check_payload(line: str, where: str) -> None:
    if not line.strip():
        raise WebVTTError(f"{where}: a blank payload line")
    if "-->" in line:
        raise WebVTTError(f"{where}: '-->' in cue text")
    rest = _TAG.sub("", line)
    if "<" in rest:
        raise WebVTTError(f"{where}: a '<' that is not a tag: {line!r}")
    if "&" in _REFERENCE.sub("", rest):
        raise WebVTTError(f"{where}: an '&' that is not a character reference: {line!r}")


def check_webvtt(text: str) -> list[StrictCue]:
    """The cues of ``text``; :class:`WebVTTError` at the first thing the syntax forbids."""
    if "\r" in text:
        raise WebVTTError("carriage returns: this project writes LF line endings")
    body = text[1:] if text.startswith("\ufeff") else text
    lines = body.split("\n")
    if not re.fullmatch(r"WEBVTT(?:[ \t][^\n]*)?", lines[0]):
        raise WebVTTError(f"bad file magic {lines[0]!r}")
    blocks: list[tuple[int, list[str]]] = []
    current: list[str] = []
    start_line = 0
    for number, line in enumerate(lines[1:], start=2):
        if line == "":
            if current:
                blocks.append((start_line, current))
                current = []
        else:
            if not current:
                start_line = number
            current.append(line)
    if current:
        blocks.append((start_line, current))
    if lines[1:2] and lines[1] != "":
        raise WebVTTError("the header must be followed by a blank line")
    cues: list[StrictCue] = []
    for first_line, block in blocks:
        where = f"line {first_line}"
        if block[0].startswith("NOTE") and re.match(r"^NOTE(?:[ \t]|$)", block[0]):
            if any("-->" in line for line in block):
                raise WebVTTError(f"{where}: '-->' in a comment")
            continue
        identifier = None
        if "-->" not in block[0]:
            identifier = block[0]
            block = block[1:]
            if not block:
                raise WebVTTError(f"{where}: an identifier without a cue")
        match = _TIMINGS.match(block[0])
        if match is None:
            raise WebVTTError(f"{where}: malformed cue timings {block[0]!r}")
        groups = match.groups()
        start, end = _seconds(groups[0:4]), _seconds(groups[4:8])
        for token in (groups[8] or "").split():
            if not _SETTING.match(token):
                raise WebVTTError(f"{where}: bad cue setting {token!r}")
        if not end > start:
            raise WebVTTError(f"{where}: cue ends at {end} but starts at {start}")
        if cues and start < cues[-1].start:
            raise WebVTTError(f"{where}: cue starts before the cue before it")
        for offset, line in enumerate(block[1:], start=1):
            _check_payload(line, f"line {first_line + offset}")
        cues.append(StrictCue(identifier, start, end, tuple(block[1:])))
    return cues


def check_rules(
    cues: list[StrictCue],
    *,
    max_line_chars: int = 42,
    max_lines: int = 2,
    min_s: float = 1.0,
    max_s: float = 7.0,
) -> None:
    """The project's caption rules: line length, line count, duration, no overlap."""
    for index, cue in enumerate(cues):
        label = f"cue {index} {cue.lines!r}"
        assert 1 <= len(cue.lines) <= max_lines, label
        for line in cue.lines:
            assert len(unescape(line)) <= max_line_chars, f"{label}: line too long"
        duration = round(cue.end - cue.start, 3)
        assert min_s <= duration <= max_s, f"{label}: lasts {duration} s"
        if index:
            assert cue.start >= cues[index - 1].end, f"{label}: overlaps the cue before"
