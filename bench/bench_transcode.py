"""Transcode speed: the stage against its bare ffmpeg command and against one process per rung;
time to first playable (stream copy) for 1, 5 and 10 minute H.264 sources.

On a generated 1080p30 H.264/AAC source (60 s by default, about 5 Mb/s, a moving test pattern
with a tone), with the default settings (four rungs 1080p/720p/540p/360p, veryfast, 6 s
segments, keyframes every 2 s, -16 LUFS), measured in one run:

- **stage**: the transcode stage through the runner (loudness scan, the one-pass ladder
  encode, measuring the files, writing the master, the MP4 and audio.m4a, committing);
- **bare**: the stage's own ffmpeg ladder command (same arguments, same loudness values), run
  with subprocess and nothing else: overhead = stage / bare - 1 (target at most 5%);
- **per rung**: each rung encoded by its own ffmpeg process from the source (decoding it each
  time), plus one process for the audio, one after the other, as most pipelines do:
  speed-up = per rung / stage (target at least 1.3x);
- **first playable**: the probe stage plus the playable stage (stream copy to HLS) on H.264
  sources of 1, 5 and 10 minutes (the 1-minute source concatenated by stream copy); the
  target is under 3 s for 10 minutes, growing far slower than the duration.

The order of the encodes alternates (bare, stage, per rung) and each is run ``--runs`` times,
the best kept, to damp the noise of a shared machine.

    .venv/bin/python bench/bench_transcode.py [--duration 60] [--runs 1] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pipeline.core.dag import Dag  # noqa: E402
from pipeline.core.job import JobSpec  # noqa: E402
from pipeline.core.readers import read_media_info  # noqa: E402
from pipeline.core.settings import Settings, load_settings  # noqa: E402
from pipeline.core.stage import StageContext  # noqa: E402
from pipeline.core.workspace import Workspace  # noqa: E402
from pipeline.engine.local import LocalExecutor  # noqa: E402
from pipeline.engine.runner import run_stage  # noqa: E402
from pipeline.stages.ingest import STAGE as INGEST  # noqa: E402
from pipeline.stages.playable import STAGE as PLAYABLE  # noqa: E402
from pipeline.stages.probe import STAGE as PROBE  # noqa: E402
from pipeline.stages.transcode import (  # noqa: E402
    AUDIO_NAME,
    HLS_DIR,
    Plan,
    encode_args,
    make_plan,
    measure_loudness,
)
from pipeline.stages.transcode import STAGE as TRANSCODE  # noqa: E402
from pipeline.tools import ffmpeg_tools  # noqa: E402


def ffmpeg(*args: str) -> None:
    subprocess.run(["ffmpeg", "-hide_banner", "-loglevel", "error", "-y", *args], check=True)


def make_source(path: Path, duration: float) -> Path:
    ffmpeg(
        "-f", "lavfi", "-i", f"testsrc2=size=1920x1080:rate=30:duration={duration}",
        "-f", "lavfi", "-i", f"sine=frequency=300:sample_rate=48000:duration={duration}",
        "-c:v", "libx264", "-preset", "veryfast", "-b:v", "5M", "-maxrate", "6M",
        "-bufsize", "10M", "-g", "60", "-pix_fmt", "yuv420p",
        "-c:a", "aac", "-b:a", "128k", "-movflags", "+faststart", str(path),
    )  # fmt: skip
    return path


def lengthen(source: Path, times: int, target: Path) -> Path:
    listing = target.with_suffix(".txt")
    listing.write_text("".join(f"file '{source}'\n" for _ in range(times)))
    ffmpeg(
        "-f", "concat", "-safe", "0", "-i", str(listing), "-c", "copy",
        "-movflags", "+faststart", str(target),
    )  # fmt: skip
    listing.unlink()
    return target


_BASE: dict[str, Any] = {}


def settings_for(root: Path) -> Settings:
    """The default settings (read once: the configuration may change under a long run)."""
    if not _BASE:
        _BASE.update(load_settings().model_dump())
    base = json.loads(json.dumps(_BASE))
    base["storage"].update(output=str(root / "out"), workspace=str(root / "work"))
    base["executor"].update(max_attempts=1)
    return load_settings(**base)


def prepare(source: Path, settings: Settings) -> Workspace:
    """Run ingest and probe for ``source``; returns the job's workspace."""
    state = LocalExecutor(settings, dag=Dag.of([INGEST, PROBE])).run(JobSpec(source=str(source)))
    if state.error is not None:
        raise SystemExit(f"preparing {source.name} failed: {state.error}")
    return Workspace.for_job(settings.storage.workspace, state.id)


def context(workspace: Workspace, settings: Settings, stage: str) -> StageContext:
    return StageContext(
        job_id=workspace.root.name,
        stage=stage,
        spec=JobSpec(source="bench"),
        settings=settings,
        workspace=workspace,
        out=workspace.partial_dir(stage),
    )


def _cpu() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def timed(action: Callable[[], Any]) -> tuple[float, float]:
    """Wall seconds and CPU seconds (this process and its finished children) of ``action``."""
    cpu = _cpu()
    started = time.perf_counter()
    action()
    return time.perf_counter() - started, _cpu() - cpu


def run_bare(args: list[str]) -> None:
    subprocess.run(["ffmpeg", "-hide_banner", "-nostdin", "-loglevel", "error", *args], check=True)


def per_rung_commands(
    source: Path, workspace: Workspace, settings: Settings, out: Path
) -> list[list[str]]:
    media = read_media_info(workspace.stage_dir("probe"))
    plan = make_plan(media, settings.media)
    loudness = measure_loudness(source, media, settings.media)
    commands = []
    for rendition in plan.ladder:
        one = Plan(ladder=[rendition], audio=False, source_rate=plan.source_rate)
        commands.append(encode_args(source, media, one, out / rendition.name, settings.media, None))
    audio_only = Plan(ladder=[], audio=True, source_rate=None)
    commands.append(
        encode_args(source, media, audio_only, out / AUDIO_NAME, settings.media, loudness)
    )
    return commands


def bench_encodes(source: Path, root: Path, runs: int) -> dict[str, Any]:
    settings = settings_for(root / "encode")
    workspace = prepare(source, settings)
    media = read_media_info(workspace.stage_dir("probe"))
    plan = make_plan(media, settings.media)
    loudness = measure_loudness(source, media, settings.media)
    results: dict[str, list[tuple[float, float]]] = {"bare": [], "stage": [], "per_rung": []}
    for _ in range(runs):
        bare_out = root / "bare"
        shutil.rmtree(bare_out, ignore_errors=True)
        args = encode_args(source, media, plan, bare_out, settings.media, loudness)
        results["bare"].append(timed(lambda args=args: run_bare(args)))

        workspace.discard_stage("transcode")
        ctx = context(workspace, settings, "transcode")
        results["stage"].append(timed(lambda ctx=ctx: run_stage(TRANSCODE, ctx)))

        rung_out = root / "per-rung"
        shutil.rmtree(rung_out, ignore_errors=True)
        commands = per_rung_commands(source, workspace, settings, rung_out)
        results["per_rung"].append(timed(lambda cs=commands: [run_bare(c) for c in cs]))
    size = sum(p.stat().st_size for p in (workspace.stage_dir("transcode") / HLS_DIR).rglob("*"))
    best = {name: min(w for w, _ in values) for name, values in results.items()}
    cpu = {name: min(c for _, c in values) for name, values in results.items()}
    return {
        "rungs": [r.name for r in plan.ladder],
        "runs": results,
        "best": best,
        "cpu": cpu,
        "overhead": best["stage"] / best["bare"] - 1,
        "cpu_overhead": cpu["stage"] / cpu["bare"] - 1,
        "speedup_vs_per_rung": best["per_rung"] / best["stage"],
        "cpu_speedup_vs_per_rung": cpu["per_rung"] / cpu["stage"],
        "speedup_bare_vs_per_rung": best["per_rung"] / best["bare"],
        "realtime_factor": media.duration / best["stage"],
        "hls_megabytes": size / 1e6,
    }


def bench_first_playable(source: Path, root: Path) -> dict[str, float]:
    figures = {}
    for minutes in (1, 5, 10):
        clip = (
            source if minutes == 1 else lengthen(source, minutes, root / f"source-{minutes}m.mp4")
        )
        settings = settings_for(root / f"playable-{minutes}")
        state = LocalExecutor(settings, dag=Dag.of([INGEST])).run(JobSpec(source=str(clip)))
        workspace = Workspace.for_job(settings.storage.workspace, state.id)

        def probe_and_copy(ws: Workspace = workspace, st: Settings = settings) -> None:
            run_stage(PROBE, context(ws, st, "probe"))
            result, _ = run_stage(PLAYABLE, context(ws, st, "playable"))
            assert result.status == "done", result.detail

        figures[f"{minutes}m"] = timed(probe_and_copy)[0]
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--duration", type=float, default=60.0)
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    options = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="bench-transcode-"))
    try:
        load_before = os.getloadavg()
        started = time.perf_counter()
        source = make_source(root / "source-1m.mp4", options.duration)
        generated = time.perf_counter() - started
        encodes = bench_encodes(source, root, options.runs)
        print(f"encodes (wall, CPU): {json.dumps(encodes['runs'])}", flush=True)
        playable = bench_first_playable(source, root)
        report = {
            "cpus": os.cpu_count(),
            "load_before": load_before,
            "load_after": os.getloadavg(),
            "source_seconds": options.duration,
            "source_generation_s": generated,
            "encodes": encodes,
            "first_playable_s": playable,
            "ffmpeg": ffmpeg_tools.FFMPEG,
        }
        best, cpu = encodes["best"], encodes["cpu"]
        print(f"source: {options.duration:.0f} s 1080p30 H.264/AAC, rungs {encodes['rungs']}")
        print(f"load average before {load_before}, after {report['load_after']}")
        print("                         wall s    CPU s")
        for name, label in (
            ("bare", "bare one-pass ffmpeg"),
            ("stage", "transcode stage"),
            ("per_rung", "one process per rung"),
        ):
            print(f"{label:22} {best[name]:8.1f} {cpu[name]:8.1f}")
        print(
            f"stage overhead over bare: {encodes['overhead']:+.1%} wall, "
            f"{encodes['cpu_overhead']:+.1%} CPU"
        )
        print(
            f"speed-up of the stage over per-rung: {encodes['speedup_vs_per_rung']:.2f}x wall, "
            f"{encodes['cpu_speedup_vs_per_rung']:.2f}x CPU"
        )
        print(f"stage realtime factor: {encodes['realtime_factor']:.2f}x")
        for name, seconds in playable.items():
            print(f"first playable, {name} source: {seconds:.2f} s")
        growth = playable["10m"] / playable["1m"]
        print(f"first playable 10m / 1m: {growth:.2f}x for 10x the duration")
        if options.json:
            options.json.write_text(json.dumps(report, indent=2))
    finally:
        if options.keep:
            print(f"kept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
