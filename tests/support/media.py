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
    playlist = _segment_hls(source, directory / "index.m3u8", segment, "-c", "copy")
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


AES_KEY = bytes(range(16))
"""The AES-128 key of :func:`make_encrypted_hls`."""


def _segment_hls(source: Path, playlist: Path, segment: float, *args: str) -> Path:
    """``source`` cut into an HLS VOD of MPEG-TS segments beside ``playlist``."""
    playlist.parent.mkdir(parents=True, exist_ok=True)
    run_ffmpeg(
        "-i",
        str(source),
        *args,
        "-f",
        "hls",
        "-hls_time",
        str(segment),
        "-hls_playlist_type",
        "vod",
        "-hls_segment_filename",
        str(playlist.parent / "seg%03d.ts"),
        str(playlist),
    )
    return playlist


def _keyframed_clip(path: Path, duration: float, segment: float) -> Path:
    return make_clip(
        path, duration=duration, extra=("-force_key_frames", f"expr:gte(t,n_forced*{segment})")
    )


def make_encrypted_hls(
    directory: Path, *, duration: float = 2.0, segment: float = 1.0, key_uri: str = "key.bin"
) -> Path:
    """An HLS VOD whose segments are AES-128 encrypted with :data:`AES_KEY` (ffmpeg's hls muxer
    with a key info file). The key is written to ``key.bin`` beside the playlist, which names
    it ``key_uri``; the IV is the segment's sequence number. Returns the playlist path."""
    directory.mkdir(parents=True, exist_ok=True)
    source = _keyframed_clip(directory / "source.mp4", duration, segment)
    key = directory / "key.bin"
    key.write_bytes(AES_KEY)
    key_info = directory / "key.info"
    key_info.write_text(f"{key_uri}\n{key}\n")
    playlist = _segment_hls(
        source, directory / "index.m3u8", segment, "-c", "copy", "-hls_key_info_file", str(key_info)
    )
    source.unlink()
    key_info.unlink()
    return playlist


def make_split_hls(directory: Path, *, duration: float = 2.0, segment: float = 1.0) -> Path:
    """An HLS master playlist with a video-only rendition (``video/``) and a separate audio
    rendition (``audio/``, an EXT-X-MEDIA group), as adaptive-streaming sites serve them, so
    yt-dlp downloads two formats and merges them. Returns the master playlist path."""
    directory.mkdir(parents=True, exist_ok=True)
    source = _keyframed_clip(directory / "source.mp4", duration, segment)
    _segment_hls(source, directory / "video" / "index.m3u8", segment, "-c", "copy", "-an")
    _segment_hls(source, directory / "audio" / "index.m3u8", segment, "-c", "copy", "-vn")
    source.unlink()
    master = directory / "master.m3u8"
    master.write_text(
        "#EXTM3U\n"
        '#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID="aud",NAME="English",LANGUAGE="en",DEFAULT=YES,'
        'AUTOSELECT=YES,URI="audio/index.m3u8"\n'
        '#EXT-X-STREAM-INF:BANDWIDTH=300000,RESOLUTION=320x180,CODECS="avc1.64000d,mp4a.40.2",'
        'AUDIO="aud"\n'
        "video/index.m3u8\n"
    )
    return master
