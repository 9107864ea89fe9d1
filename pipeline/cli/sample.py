"""A sample recording made with ffmpeg, so Recast can be tried without a network."""

from __future__ import annotations

from pathlib import Path

from pipeline.tools import ffmpeg_tools


def make_sample(path: Path, duration_s: float = 8.0) -> Path:
    """A 640x360 H.264/AAC clip with a test pattern and a tone, titled for the card."""
    path.parent.mkdir(parents=True, exist_ok=True)
    args = [
        "-y",
        "-f",
        "lavfi",
        "-i",
        f"testsrc2=size=640x360:rate=25:duration={duration_s}",
        "-f",
        "lavfi",
        "-i",
        f"sine=frequency=440:sample_rate=48000:duration={duration_s}",
        "-c:v",
        "libx264",
        "-preset",
        "veryfast",
        "-pix_fmt",
        "yuv420p",
        "-c:a",
        "aac",
        "-b:a",
        "96k",
        "-shortest",
        "-metadata",
        "title=Recast sample: Quick Take",
        "-metadata",
        "comment=A generated test recording. It shows a test pattern and plays a "
        "steady tone, so that every stage of the pipeline has something real to work on.",
        "-movflags",
        "+faststart",
        str(path),
    ]
    generated = ffmpeg_tools.with_input_policy(args, ffmpeg_tools.GENERATED_INPUT)
    ffmpeg_tools.run(generated, timeout_s=120, what="sample")
    return path
