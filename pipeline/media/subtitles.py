"""Captions from timed words: cue building, line wrapping, and the WebVTT and SRT writers.

Rules (``CueRules``, from the ``transcript`` settings): a cue has at most ``max_lines`` lines of
at most ``max_line_chars`` characters and lasts between ``min_s`` and ``max_s`` seconds.
Cues end preferably at a sentence end (or at the end of a cue the source authored), else at a
clause boundary (``,;:``), else at the last word that fits; a pause in the speech always ends a
cue, and a sound description ("[Music]") is a cue of its own. Lines are balanced, and broken
after punctuation or where the source broke them when that fits.

The writers emit strict WebVTT (``WEBVTT`` header, ``hh:mm:ss.ttt`` times, end after start,
``&``/``<``/``>`` escaped, no blank line inside a cue) and SRT.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, replace

from pipeline.core.timedtext import Cue, Word, join_words

_CLOSERS = "\"')]»”’」』"
SENTENCE_END = re.compile(rf"[.!?…。！？][{re.escape(_CLOSERS)}]*$")
CLAUSE_END = re.compile(rf"[,;:–—、，；：][{re.escape(_CLOSERS)}]*$")
_WEAK_ENDINGS = frozenset(
    {"a", "an", "the", "of", "to", "and", "or", "but", "in", "on", "at", "for", "with", "from"}
    | {"by", "as", "that", "der", "die", "das", "ein", "eine", "und", "oder", "zu", "von", "mit"}
)


@dataclass(frozen=True)
class CueRules:
    max_line_chars: int = 42
    max_lines: int = 2
    min_s: float = 1.0
    max_s: float = 7.0
    pause_s: float = 1.5
    """A silence at least this long between two words always ends a cue."""


# -- line wrapping -----------------------------------------------------------------------------


def _line(words: list[Word]) -> str:
    return join_words(words)


def wrap_words(words: list[Word], max_chars: int, max_lines: int) -> list[str] | None:
    """``words`` as at most ``max_lines`` lines of at most ``max_chars``; None if impossible.

    One line when it fits; otherwise the most balanced split, preferring breaks after
    punctuation or where the source broke the line, and avoiding a line ending in "the".
    """
    if not words:
        return []
    authored = _source_lines(words)
    if authored and len(authored) <= max_lines and all(len(x) <= max_chars for x in authored):
        return authored
    whole = _line(words)
    if len(whole) <= max_chars:
        return [whole]
    n = len(words)
    # best[k][i]: (score, breaks) for words[:i] in k lines
    inf = (math.inf, ())
    best: list[list[tuple[float, tuple[int, ...]]]] = [
        [inf] * (n + 1) for _ in range(max_lines + 1)
    ]
    best[0][0] = (0.0, ())
    for k in range(1, max_lines + 1):
        for i in range(1, n + 1):
            for j in range(i):
                prev_score, prev_breaks = best[k - 1][j]
                if prev_score == math.inf:
                    continue
                text = _line(words[j:i])
                if len(text) > max_chars:
                    continue
                score = prev_score + (max_chars - len(text)) ** 2 * 0.01
                if i < n:
                    score += _break_penalty(words[i - 1])
                if score < best[k][i][0]:
                    best[k][i] = (score, (*prev_breaks, i))
    candidates = [best[k][n] for k in range(1, max_lines + 1) if best[k][n][0] < math.inf]
    if not candidates:
        return None
    _, breaks = min(candidates, key=lambda c: c[0])
    lines, start = [], 0
    for stop in breaks:
        lines.append(_line(words[start:stop]))
        start = stop
    return lines


def _source_lines(words: list[Word]) -> list[str] | None:
    """The lines the source broke ``words`` into, when it broke them inside."""
    if not any(word.line_after for word in words[:-1]):
        return None
    lines, start = [], 0
    for index, word in enumerate(words):
        if word.line_after or index == len(words) - 1:
            lines.append(_line(words[start : index + 1]))
            start = index + 1
    return lines


def _break_penalty(last: Word) -> float:
    text = last.text.strip()
    if last.line_after:
        return -8.0
    if SENTENCE_END.search(text) or CLAUSE_END.search(text):
        return -4.0
    if text.lower() in _WEAK_ENDINGS:
        return 6.0
    return 0.0


# -- cue building ------------------------------------------------------------------------------


def _split_long_words(words: list[Word], max_chars: int) -> list[Word]:
    """Words longer than a line (a URL, unspaced text) cut into line-sized pieces."""
    out: list[Word] = []
    for word in words:
        text = word.text.strip()
        if len(text) <= max_chars:
            out.append(word)
            continue
        pieces = [text[i : i + max_chars] for i in range(0, len(text), max_chars)]
        step = (word.end - word.start) / len(pieces)
        lead = " " if word.text.startswith(" ") else ""
        for index, piece in enumerate(pieces):
            last = index == len(pieces) - 1
            out.append(
                replace(
                    word,
                    text=(lead if index == 0 else "") + piece,
                    start=word.start + index * step,
                    end=word.start + (index + 1) * step,
                    break_after=word.break_after and last,
                    line_after=word.line_after and last,
                )
            )
    return out


def _clean(words: list[Word]) -> list[Word]:
    cleaned: list[Word] = []
    for word in words:
        if not word.text.strip() or math.isnan(word.start) or math.isnan(word.end):
            continue
        start = max(0.0, word.start)
        if cleaned:
            start = max(start, cleaned[-1].start)
        cleaned.append(replace(word, start=start, end=max(word.end, start)))
    return cleaned


class _Builder:
    def __init__(self, words: list[Word], rules: CueRules):
        self.words = words
        self.rules = rules
        self.capacity = rules.max_line_chars * rules.max_lines

    def next_start(self, k: int) -> float:
        return self.words[k + 1].start if k + 1 < len(self.words) else math.inf

    def available(self, i: int, k: int) -> float:
        """How long a cue of words i..k may last without running into the next word."""
        return self.next_start(k) - self.words[i].start

    def fits(self, i: int, j: int) -> bool:
        span = self.words[j].end - self.words[i].start
        if j > i and span > self.rules.max_s:
            return False
        return (
            wrap_words(self.words[i : j + 1], self.rules.max_line_chars, self.rules.max_lines)
            is not None
        )

    def hard_stop_after(self, j: int) -> bool:
        """A pause, or a sound description on either side, ends the cue after word j."""
        if j + 1 >= len(self.words):
            return True
        here, after = self.words[j], self.words[j + 1]
        return here.noise != after.noise or (after.start - here.end) >= self.rules.pause_s

    def build(self) -> list[tuple[int, int]]:
        spans: list[tuple[int, int]] = []
        i, n = 0, len(self.words)
        while i < n:
            j = i
            while not self.hard_stop_after(j) and self.fits(i, j + 1):
                j += 1
            k = self._choose_break(i, j)
            spans.append((i, k))
            i = k + 1
        return spans

    def _choose_break(self, i: int, j: int) -> int:
        rules = self.rules
        words = self.words
        if words[i].noise:
            return j
        # An authored cue that fits stays whole; else the first sentence that lasts long enough.
        for wanted in (lambda w: w.break_after, lambda w: SENTENCE_END.search(w.text.strip())):
            for k in range(i, j + 1):
                if wanted(words[k]) and self.available(i, k) >= rules.min_s:
                    return k
        if self.hard_stop_after(j):
            return j
        balanced = self._balanced_break(i, j)
        if balanced is not None:
            return balanced
        best_k, best_score = j, -math.inf
        for k in range(i, j + 1):
            if self.available(i, k) < rules.min_s:
                continue
            text = words[k].text.strip()
            fill = len(join_words(words[i : k + 1])) / self.capacity
            score = fill
            if CLAUSE_END.search(text) and fill >= 0.4:
                score += 1.0
            if text.lower() in _WEAK_ENDINGS:
                score -= 0.5
            if score > best_score:
                best_k, best_score = k, score
        return best_k

    def _phrase_end(self, j: int) -> int:
        """The last word of the phrase that goes on after word j (to a sentence end or pause)."""
        h = j + 1
        while (
            h - j < 40
            and not self.hard_stop_after(h)
            and not self.words[h].break_after
            and not SENTENCE_END.search(self.words[h].text.strip())
        ):
            h += 1
        return h

    def _fill(self, i: int, k: int) -> float:
        return len(join_words(self.words[i : k + 1])) / self.capacity

    def _balanced_break(self, i: int, j: int) -> int | None:
        """When the rest of the phrase fits in one more cue, split the two evenly rather than
        leave an orphan of a word or two."""
        h = self._phrase_end(j)
        best: tuple[float, int] | None = None
        for k in range(i, j + 1):
            if self.available(i, k) < self.rules.min_s or not self.fits(k + 1, h):
                continue
            text = self.words[k].text.strip()
            score = min(self._fill(i, k), self._fill(k + 1, h))
            if CLAUSE_END.search(text):
                score += 0.15
            if text.lower() in _WEAK_ENDINGS:
                score -= 0.15
            if best is None or score > best[0]:
                best = (score, k)
        return best[1] if best is not None else None


def build_cues(words: list[Word], rules: CueRules) -> list[Cue]:
    """Cues from timed words, following ``rules`` (see the module docstring)."""
    prepared = _clean(_split_long_words(list(words), rules.max_line_chars))
    if not prepared:
        return []
    builder = _Builder(prepared, rules)
    cues: list[Cue] = []
    for i, k in builder.build():
        span = prepared[i : k + 1]
        lines = wrap_words(span, rules.max_line_chars, rules.max_lines)
        if lines is None:  # cannot happen after _split_long_words; kept as a guard
            lines = [join_words(span)[: rules.max_line_chars]]
        start = span[0].start
        end = max(span[-1].end, start + rules.min_s)
        end = min(end, max(builder.next_start(k), start + rules.min_s), start + rules.max_s)
        cues.append(
            Cue(
                start=start,
                end=end,
                lines=tuple(lines),
                words=tuple(span),
                noise=all(w.noise for w in span),
            )
        )
    return _settle(cues, rules)


def _settle(cues: list[Cue], rules: CueRules) -> list[Cue]:
    """No overlaps, and every cue within the duration bounds, in millisecond steps."""
    settled: list[Cue] = []
    for cue in cues:
        start = round(cue.start, 3)
        if settled and start < settled[-1].end:
            start = settled[-1].end
        end = round(max(cue.end, start + rules.min_s), 3)
        end = min(end, round(start + rules.max_s, 3))
        settled.append(replace(cue, start=start, end=end))
    return settled


# -- writers -----------------------------------------------------------------------------------


def _clock(seconds: float, separator: str) -> str:
    millis = round(seconds * 1000)
    hours, rest = divmod(millis, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    secs, millis = divmod(rest, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}{separator}{millis:03d}"


def _vtt_escape(line: str) -> str:
    return line.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _cue_times(cue: Cue) -> tuple[float, float]:
    start = max(0.0, cue.start)
    end = max(cue.end, start + 0.001)
    return start, end


def _text_lines(cue: Cue) -> list[str]:
    lines = [" ".join(line.split()) for line in cue.lines]
    return [line for line in lines if line]


def to_vtt(cues: list[Cue]) -> str:
    """A WebVTT file of ``cues``."""
    parts = ["WEBVTT", ""]
    for cue in cues:
        lines = _text_lines(cue)
        if not lines:
            continue
        start, end = _cue_times(cue)
        parts.append(f"{_clock(start, '.')} --> {_clock(end, '.')}")
        parts.extend(_vtt_escape(line) for line in lines)
        parts.append("")
    return "\n".join(parts)


def to_srt(cues: list[Cue]) -> str:
    """A SubRip file of ``cues``."""
    parts: list[str] = []
    number = 0
    for cue in cues:
        lines = _text_lines(cue)
        if not lines:
            continue
        number += 1
        start, end = _cue_times(cue)
        parts.append(str(number))
        parts.append(f"{_clock(start, ',')} --> {_clock(end, ',')}")
        parts.extend(lines)
        parts.append("")
    return "\n".join(parts)
