"""Caption files made for tests and benchmarks: YouTube-style rolling automatic captions of any
size (each cue repeats the line before it and times its new words with inline tags)."""

from __future__ import annotations

SCRIPT = (
    "good morning and welcome to the conference today we will talk about security energy "
    "deterrence and the budgets of europe in the years ahead"
)
WORDS = SCRIPT.split(" ")


def _clock(seconds: float) -> str:
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{int(hours):02d}:{int(minutes):02d}:{secs:06.3f}"


def rolling_vtt(size: int) -> str:
    """A rolling WebVTT track of about ``size`` characters (at least one cue)."""
    parts = ["WEBVTT\nKind: captions\nLanguage: en\n\n"]
    length = len(parts[0])
    at = 0.0
    previous = " "
    index = 0
    while length < size:
        words = [WORDS[(index + n) % len(WORDS)] for n in range(6)]
        index += 6
        timed = words[0] + "".join(
            f"<{_clock(at + 0.3 * (n + 1))}><c> {word}</c>" for n, word in enumerate(words[1:])
        )
        block = (
            f"{_clock(at)} --> {_clock(at + 2.0)} align:start position:0%\n"
            f"{previous}\n{timed}\n\n"
            f"{_clock(at + 2.0)} --> {_clock(at + 2.01)} align:start position:0%\n"
            f"{' '.join(words)}\n \n\n"
        )
        previous = " ".join(words)
        parts.append(block)
        length += len(block)
        at += 2.01
    return "".join(parts)
