"""Speech recognition speed and memory: Recast's way against faster-whisper's plain defaults.

A ~2-minute talk is synthesized with espeak-ng and muxed into a video. On 2 cores, with the
offline Whisper base model in int8, the same file goes through:

- ours: ``ffmpeg_tools.extract_speech_audio`` (16 kHz mono) then ``pipeline.tools.asr.transcribe``
  with the project's default settings (VAD, word timestamps, beam 1, no conditioning on the
  previous text), as the transcript stage runs it;
- reference: ``WhisperModel(...).transcribe(path)`` with default options (beam 5, no VAD, no
  word timestamps), the generator consumed;
- ours-beam5: ours with ``transcript.beam_size = 5``, to show what the default beam of 1 buys.

Each runs in its own process (so peak memory is its own), after loading the model once (load
time is reported apart: a worker loads it once, not per job). Printed: wall time, realtime
factor (audio seconds per wall second), peak RSS, and WER against the spoken text.

    .venv/bin/python bench/bench_asr.py [--runs 2] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

TALK = (
    "Good morning, and welcome to this session of the conference. Over the next few minutes, "
    "I want to talk about three things: energy, security, and the future of our alliances. "
    "Let me begin with energy. For many years, Europe relied on cheap gas from a single "
    "supplier. That dependence turned out to be a strategic weakness. When supplies were cut, "
    "prices rose sharply, and governments had to act quickly. They filled storage, found new "
    "suppliers, and accelerated the move to renewable sources. The lesson is simple: a "
    "diverse supply is a matter of security, not only of economics. Now, let me turn to "
    "security. Spending has increased across the continent, but money alone does not buy "
    "capability. We need common standards, shared procurement, and industrial capacity that "
    "can grow when it is needed. Too often, each country buys its own systems, in small "
    "numbers, at high prices. Working together would give us more for less. Finally, "
    "alliances. Partnerships are built over decades and can be damaged in months. They depend "
    "on trust, on predictability, and on the willingness to carry a fair share of the burden. "
    "Younger people ask why these institutions matter. Our answer must be concrete: they keep "
    "the peace, they protect trade, and they give smaller nations a voice. Before I close, "
    "let me say a word about cities, where most of us live and work. Cities need clean power, "
    "safe streets, good schools and public transport that runs on time. In closing, I would "
    "like to thank the organizers, the speakers, and all of you for being here. The "
    "challenges are serious, but they are not beyond us. If we act together, with patience "
    "and with courage, we can meet them. Thank you very much."
)


VARIANTS = ("ours", "reference", "ours-beam5")


def child(variant: str, media: Path, model: str, threads: int) -> dict[str, Any]:
    """One measurement, in this process; returns the figures as a dict."""
    from pipeline.core.settings import TranscriptSettings
    from pipeline.stages.transcript import read_speech_wav
    from pipeline.tools import asr, ffmpeg_tools

    started = time.perf_counter()
    defaults = TranscriptSettings()
    config = asr.ModelConfig(model=model, compute_type="int8", cpu_threads=threads)
    model_object = asr.get_model(config)
    loaded = time.perf_counter()
    if variant.startswith("ours"):
        with tempfile.TemporaryDirectory() as scratch:
            wav = Path(scratch) / "speech.wav"
            ffmpeg_tools.extract_speech_audio(media, wav, timeout_s=600)
            audio = read_speech_wav(wav)
        beam = 5 if variant == "ours-beam5" else defaults.beam_size
        options = asr.AsrOptions(beam_size=beam, vad=defaults.vad)
        result = asr.transcribe(audio, config, options)
        text = " ".join(s.text for s in result.segments if not s.noise)
        audio_s = result.duration
    else:
        segments, info = model_object.transcribe(str(media))
        text = " ".join(segment.text.strip() for segment in segments)
        audio_s = float(info.duration)
    done = time.perf_counter()
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {
        "variant": variant,
        "load_s": loaded - started,
        "wall_s": done - loaded,
        "audio_s": audio_s,
        "peak_rss_mb": peak_kb / 1024,
        "text": text,
    }


def measure(variant: str, media: Path, model: str, threads: int) -> dict[str, Any]:
    cores = ",".join(str(c) for c in sorted(os.sched_getaffinity(0))[:threads])
    completed = subprocess.run(
        [
            "taskset",
            "-c",
            cores,
            sys.executable,
            __file__,
            "--child",
            variant,
            "--media",
            str(media),
            "--model",
            model,
            "--threads",
            str(threads),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    figures: dict[str, Any] = json.loads(completed.stdout.strip().splitlines()[-1])
    return figures


def make_talk(directory: Path) -> tuple[Path, float]:
    from tests.support.media import make_speech_clip

    media = make_speech_clip(directory / "talk.mp4", TALK, size="320x180")
    from pipeline.tools import ffmpeg_tools

    return media, ffmpeg_tools.media_duration(ffmpeg_tools.probe(media)) or 0.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=2, help="runs per variant (best is kept)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--child", choices=VARIANTS)
    parser.add_argument("--media")
    parser.add_argument("--model")
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child, Path(args.media), args.model, args.threads)))
        return 0

    from pipeline.core.settings import load_settings
    from pipeline.tools.speech_models import install_offline_model
    from tests.support.speech import wer

    with tempfile.TemporaryDirectory(prefix="bench-asr-") as scratch:
        cache = Path(os.path.expanduser(load_settings().transcript.model_cache_dir))
        model = str(install_offline_model(cache).path)
        media, duration = make_talk(Path(scratch))
        print(
            f"talk: {duration:.1f} s, {len(TALK.split())} words; model {model}; "
            f"{args.threads} cores, int8"
        )
        best: dict[str, dict[str, Any]] = {}
        for _ in range(args.runs):
            for variant in VARIANTS:
                figures = measure(variant, media, model, args.threads)
                previous = best.get(variant)
                if previous is None or float(figures["wall_s"]) < float(previous["wall_s"]):
                    best[variant] = figures
    print(f"{'':10} {'wall s':>8} {'RTF':>7} {'load s':>7} {'peak MB':>8} {'WER':>6}")
    for variant in VARIANTS:
        f = best[variant]
        wall, audio = float(f["wall_s"]), float(f["audio_s"])
        print(
            f"{variant:10} {wall:8.2f} {audio / wall:6.1f}x {float(f['load_s']):7.2f} "
            f"{float(f['peak_rss_mb']):8.0f} {wer(TALK, str(f['text'])):6.3f}"
        )
    ratio = float(best["reference"]["wall_s"]) / float(best["ours"]["wall_s"])
    print(f"ours is {ratio:.2f}x the reference's speed (same audio, same model, same cores)")
    print(f"load average at the end: {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
