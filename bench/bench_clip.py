"""A clip against a new source: 2 minutes of a 30-minute 1080p recording, in one run.

The recording: 30 minutes of 1080p (testsrc2 at ``--fps``, H.264 veryfast at 4 Mb/s, a
440 Hz tone as AAC), made as one generated minute joined 30 times by stream copy, with human
captions (a cue every 3 s) served beside it on a page of the local HTTP server. It is
processed once as the parent, the cheapest honest way: every stage runs, but with a one-rung
180p ladder and small thumbnails (the parent's own outputs are not measured; what a clip
reads of it is its ready card, its transcript and its original media in the workspace).
Then, with the default settings (the default four-rung ladder, default thumbnails,
transcripts from captions), measured side by side:

- **clip**: ``recast clip``'s way: the request planned (card, range, transcript) and the clip's
  job run by the local executor, from the request to the clip's ready card: the
  frame-accurate cut of the parent's media, probe, playable, transcode, thumbnails, the
  transcript from the parent's words, publish;
- **new source**: the same 2 minutes as a file of their own (cut beforehand, not timed),
  served on the local HTTP server with their captions, downloaded and processed by the local
  executor (``recast process``'s way) to its ready card.

Prints wall and CPU time (this process and its ffmpeg children) of each, each stage's wall
time, and the ratios: clip time / clip duration (goal: at most 2) and clip / new source.
Figures go to docs/benchmarks.md.

    .venv/bin/python bench/bench_clip.py [--fps 25] [--start 750] [--length 120]
"""

from __future__ import annotations

import argparse
import logging
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pipeline.core.clip import clock  # noqa: E402
from pipeline.core.job import JobSpec, JobState  # noqa: E402
from pipeline.core.settings import Settings  # noqa: E402
from pipeline.engine.local import LocalExecutor  # noqa: E402
from pipeline.publish.clips import ClipRequest, plan_clip  # noqa: E402
from pipeline.publish.publisher import CardPublisher  # noqa: E402
from pipeline.storage import open_storage  # noqa: E402
from tests.conftest import make_settings  # noqa: E402
from tests.support.httpserver import MediaServer  # noqa: E402
from tests.support.media import run_ffmpeg  # noqa: E402
from tests.support.workers import tiny_sections  # noqa: E402

MINUTES = 30
CUE_EVERY_S = 3.0
CUE_LENGTH_S = 2.5


def recording(tmp: Path, fps: int) -> Path:
    """30 minutes of 1080p: one generated minute joined 30 times by stream copy."""
    minute = tmp / "minute.mp4"
    run_ffmpeg(
        *("-f", "lavfi", "-i", f"testsrc2=size=1920x1080:rate={fps}:duration=60"),
        *("-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000:duration=60"),
        *("-c:v", "libx264", "-preset", "veryfast", "-b:v", "4M", "-maxrate", "6M"),
        *("-bufsize", "8M", "-g", str(2 * fps), "-pix_fmt", "yuv420p"),
        *("-c:a", "aac", "-b:a", "128k", str(minute)),
    )
    listing = tmp / "minutes.txt"
    listing.write_text("".join(f"file '{minute}'\n" for _ in range(MINUTES)))
    joined = tmp / "recording.mp4"
    run_ffmpeg(
        *("-f", "concat", "-safe", "0", "-i", str(listing)),
        *("-c", "copy", "-movflags", "+faststart", str(joined)),
    )
    minute.unlink()
    return joined


def _clock(seconds: float) -> str:
    millis = round(seconds * 1000)
    hours, rest = divmod(millis, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    return f"{hours:02d}:{minutes:02d}:{rest // 1000:02d}.{rest % 1000:03d}"


def captions(start: float, end: float, shift: float = 0.0) -> str:
    """A cue every 3 s over [start, end), in time shifted by ``-shift``."""
    parts = ["WEBVTT", ""]
    number = 0
    at = 0.0
    while at < end:
        number += 1
        if at >= start and at + CUE_LENGTH_S <= end:
            parts.append(f"{_clock(at - shift)} --> {_clock(at + CUE_LENGTH_S - shift)}")
            parts.append(f"Sentence {number} of the panel on energy and defence.")
            parts.append("")
        at += CUE_EVERY_S
    return "\n".join(parts)


def page(server: MediaServer, name: str, video: Path, vtt: str) -> str:
    media = server.put_file(f"{name}/video.mp4", video)
    track = server.add(f"{name}/video.en.vtt", vtt, "text/vtt")
    return server.add(
        f"{name}/page.html",
        f"<html><head><title>{name}</title></head><body><video controls>"
        f'<source src="{media}" type="video/mp4">'
        f'<track kind="captions" srclang="en" label="English" src="{track}"></video>'
        "</body></html>",
    )


def cpu_seconds() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def stage_times(state: JobState) -> dict[str, float]:
    return {
        name: (stage.finished_at - stage.started_at).total_seconds()
        for name, stage in state.stages.items()
        if stage.started_at is not None and stage.finished_at is not None
    }


def run_job(settings: Settings, spec: JobSpec) -> JobState:
    state = LocalExecutor(settings, publisher=CardPublisher(settings)).run(spec)
    assert str(state.status) == "succeeded", state.error
    return state


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fps", type=int, default=25)
    parser.add_argument("--start", type=float, default=750.0, help="the clip's start (s)")
    parser.add_argument("--length", type=float, default=120.0, help="the clip's length (s)")
    args = parser.parse_args()
    logging.disable(logging.WARNING)
    start, end = args.start, args.start + args.length
    tmp = Path(tempfile.mkdtemp(prefix="bench-clip-"))
    try:
        began = time.perf_counter()
        source = recording(tmp, args.fps)
        excerpt = tmp / "excerpt.mp4"  # the same 2 minutes, as a source of their own
        run_ffmpeg(
            *("-ss", f"{start}", "-i", str(source), "-t", f"{args.length}"),
            *("-c:v", "libx264", "-preset", "veryfast", "-b:v", "4M", "-maxrate", "6M"),
            *("-bufsize", "8M", "-g", str(2 * args.fps), "-pix_fmt", "yuv420p"),
            *("-c:a", "aac", "-b:a", "128k", "-movflags", "+faststart", str(excerpt)),
        )
        made_s = time.perf_counter() - began
        cheap = tiny_sections()
        cheap["media"] |= {
            "ladder": [{"height": 180, "bitrate_kbps": 300, "peak_kbps": 450}],
            "mp4_height": 180,
        }
        parent_settings = make_settings(tmp, **cheap)
        settings = make_settings(tmp, transcript={"engine": "captions"})
        with MediaServer(tmp / "www") as server:
            parent_page = page(server, "parent", source, captions(0.0, MINUTES * 60.0))
            began = time.perf_counter()
            parent = run_job(parent_settings, JobSpec(source=parent_page, event="Bench"))
            parent_s = time.perf_counter() - began
            assert parent.card_id is not None

            began, cpu = time.perf_counter(), cpu_seconds()
            plan = plan_clip(
                open_storage(settings),
                settings,
                ClipRequest(parent=parent.card_id, start=start, end=end, title="Quick take"),
            )
            clip = run_job(settings, plan.spec.job_spec())
            clip_s, clip_cpu = time.perf_counter() - began, cpu_seconds() - cpu

            new_page = page(server, "excerpt", excerpt, captions(start, end, shift=start))
            began, cpu = time.perf_counter(), cpu_seconds()
            fresh = run_job(settings, JobSpec(source=new_page, event="Bench"))
            fresh_s, fresh_cpu = time.perf_counter() - began, cpu_seconds() - cpu
        ingest = Path(settings.storage.workspace) / clip.id / "ingest" / "_stage.json"
        cut_from = ingest.read_text().split('"detail": "', 1)[1].split('"', 1)[0]
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(
        f"recording: {MINUTES} min 1080p{args.fps}, H.264 4 Mb/s + AAC, captions "
        f"(made in {made_s:.0f} s); parent processed (180p ladder) in {parent_s:.0f} s"
    )
    print(f"clip {clock(start)}-{clock(end)} ({args.length:g} s): {cut_from}")
    print(f"{'way':<11} {'wall s':>7} {'CPU s':>7} {'wall/duration':>14}")
    for way, wall, cpu in (("clip", clip_s, clip_cpu), ("new source", fresh_s, fresh_cpu)):
        print(f"{way:<11} {wall:7.1f} {cpu:7.1f} {wall / args.length:14.2f}")
    print(f"clip / new source: wall {clip_s / fresh_s:.2f}, CPU {clip_cpu / fresh_cpu:.2f}")
    print(f"goal: clip ready within 2x its duration ({2 * args.length:g} s): ", end="")
    print("met" if clip_s <= 2 * args.length else "NOT met")
    print("stage wall s (the executor runs independent stages at once):")
    names = list(dict.fromkeys([*stage_times(clip), *stage_times(fresh)]))
    for name in names:
        ours, theirs = stage_times(clip).get(name, 0.0), stage_times(fresh).get(name, 0.0)
        print(f"  {name:<17} clip {ours:7.1f}  new source {theirs:7.1f}")


if __name__ == "__main__":
    main()
