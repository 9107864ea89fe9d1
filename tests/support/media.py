"""A media factory: clips made with ffmpeg's lavfi sources, and speech from espeak-ng."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path


def run_ffmpeg(*args: str) -> None:
    subprocess.run(["ffmpeg", "-hide_banner", "-loglevel", "error", "-y", *args], check=True)


def make_clip(
    path: Path,
    *,
    duration: float = 3.0,
    size: str = "320x180",
    rate: int = 25,
    audio: bool = True,
    video: bool = True,
    vcodec: str = "libx264",
    acodec: str = "aac",
    pattern: str = "testsrc2",
    title: str | None = None,
    extra: tuple[str, ...] = (),
) -> Path:
    """A clip of a test pattern (and a tone) of the given size, rate and duration."""
    path.parent.mkdir(parents=True, exist_ok=True)
    args: list[str] = []
    if video:
        args += ["-f", "lavfi", "-i", f"{pattern}=size={size}:rate={rate}:duration={duration}"]
    if audio:
        args += ["-f", "lavfi", "-i", f"sine=frequency=440:sample_rate=48000:duration={duration}"]
    if video:
        args += ["-c:v", vcodec, "-pix_fmt", "yuv420p"]
        if vcodec == "libx264":
            args += ["-preset", "ultrafast", "-g", str(rate * 2)]
    if audio:
        args += ["-c:a", acodec, "-b:a", "64k"]
    if title:
        args += ["-metadata", f"title={title}"]
    args += [*extra, str(path)]
    run_ffmpeg(*args)
    return path


def make_hls(directory: Path, *, duration: float = 6.0, segment: float = 2.0) -> Path:
    """An HLS VOD (MPEG-TS segments) of a clip; returns the playlist path."""
    directory.mkdir(parents=True, exist_ok=True)
    source = make_clip(
        directory / "source.mp4",
        duration=duration,
        extra=("-force_key_frames", f"expr:gte(t,n_forced*{segment})"),
    )
    playlist = directory / "index.m3u8"
    run_ffmpeg(
        "-i",
        str(source),
        "-c",
        "copy",
        "-f",
        "hls",
        "-hls_time",
        str(segment),
        "-hls_playlist_type",
        "vod",
        "-hls_segment_filename",
        str(directory / "seg%03d.ts"),
        str(playlist),
    )
    source.unlink()
    return playlist


def speak(path: Path, text: str, *, voice: str = "en-us", speed: int = 150) -> Path:
    """Speech synthesized by espeak-ng into a WAV file."""
    espeak = shutil.which("espeak-ng") or "espeak-ng"
    path.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run([espeak, "-v", voice, "-s", str(speed), "-w", str(path), text], check=True)
    return path


def make_speech_clip(
    path: Path, text: str, *, voice: str = "en-us", size: str = "320x180", lead_silence: float = 0.0
) -> Path:
    """A video whose audio track is ``text`` spoken by espeak-ng."""
    wav = speak(path.with_suffix(".speech.wav"), text, voice=voice)
    audio_filter = f"adelay={int(lead_silence * 1000)}:all=1,apad=pad_dur=0.5"
    run_ffmpeg(
        "-f",
        "lavfi",
        "-i",
        f"testsrc2=size={size}:rate=25",
        "-i",
        str(wav),
        "-filter:a",
        audio_filter,
        "-shortest",
        "-c:v",
        "libx264",
        "-preset",
        "ultrafast",
        "-pix_fmt",
        "yuv420p",
        "-c:a",
        "aac",
        "-b:a",
        "64k",
        str(path),
    )
    wav.unlink()
    return path
