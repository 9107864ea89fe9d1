"""Caption parsing stays linear in its input: hostile and realistic caption files of 256 KB
and of twice that, parsed (``parse_caption_text`` + ``caption_words``, what the transcript
stage runs) side by side in one run.

For each kind the bench prints the time for 256 KB, the time for 512 KB and their ratio: about
2 means linear; a quadratic pattern shows 4 or more (before the fix, 32 KB of unclosed "<a"
took 1.5 s and doubling the input tripled the time).

    .venv/bin/python bench/bench_captions.py [--runs 3]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pipeline.media.captions import caption_words, parse_caption_text  # noqa: E402
from tests.support.captions import rolling_vtt  # noqa: E402

KB = 1024
HEADER = "WEBVTT\n\n00:00:00.000 --> 00:00:01.000\n"


def hostile(unit: str) -> Callable[[int], str]:
    return lambda size: HEADER + unit * (size // len(unit)) + "\n"


KINDS: dict[str, Callable[[int], str]] = {
    "rolling captions (YouTube-style)": rolling_vtt,
    'unclosed tags "<a<a<a"': hostile("<a"),
    'unclosed ASS overrides "{\\{\\"': hostile("{\\"),
    "one cue of 2-byte lines": hostile("x\n"),
    "inline times with long digits": hostile("<1" + "1" * 50),
}


def parse_seconds(text: str, runs: int) -> float:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        caption_words(parse_caption_text(text, "vtt"))
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    print(f"{'input':36} {'256 KB':>9} {'512 KB':>9} {'ratio':>6}")
    for name, make in KINDS.items():
        small = parse_seconds(make(256 * KB), args.runs)
        large = parse_seconds(make(512 * KB), args.runs)
        print(f"{name:36} {small:8.3f}s {large:8.3f}s {large / small:6.2f}")


if __name__ == "__main__":
    main()
