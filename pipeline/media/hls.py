"""HLS playlists: read media playlists, measure renditions from their files, write masters.

A master playlist here is never guessed from settings: BANDWIDTH is the peak segment bit rate
measured on the files written (plus the audio group's peak), AVERAGE-BANDWIDTH the mean over
all segments, CODECS come from the init segment's ``avcC`` and ``esds`` boxes, RESOLUTION and
FRAME-RATE from ffprobe on the rendition itself.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

from pipeline.core.errors import ErrorCode, RecastError
from pipeline.core.fsutil import atomic_write_bytes
from pipeline.tools import ffmpeg_tools

_EXTINF = re.compile(r"#EXTINF:([0-9.]+)")
_MAP = re.compile(r'#EXT-X-MAP:URI="([^"]+)"')


@dataclass(frozen=True)
class Segment:
    uri: str
    duration: float


@dataclass(frozen=True)
class MediaPlaylist:
    path: Path
    target_duration: int
    init: str | None
    segments: list[Segment]

    @property
    def duration(self) -> float:
        return sum(s.duration for s in self.segments)

    @property
    def init_file(self) -> Path:
        if self.init is None:
            raise RecastError(ErrorCode.MEDIA_INVALID, f"{self.path} has no init segment.")
        return self.path.parent / self.init

    def files(self) -> list[Path]:
        """The playlist's init segment and media segments, in order."""
        names = ([self.init] if self.init else []) + [s.uri for s in self.segments]
        return [self.path.parent / name for name in names]


@dataclass(frozen=True)
class Measurement:
    """Bit rates of a rendition, measured on its segment files (bits per second)."""

    peak: int
    average: int
    duration: float
    max_segment: float


def read_media_playlist(path: Path) -> MediaPlaylist:
    text = path.read_text(encoding="utf-8")
    target = 0
    init: str | None = None
    segments: list[Segment] = []
    pending: float | None = None
    for line in (raw.strip() for raw in text.splitlines()):
        if line.startswith("#EXT-X-TARGETDURATION:"):
            target = int(line.split(":", 1)[1])
        elif match := _MAP.match(line):
            init = match.group(1)
        elif match := _EXTINF.match(line):
            pending = float(match.group(1))
        elif line and not line.startswith("#") and pending is not None:
            segments.append(Segment(line, pending))
            pending = None
    if not segments:
        raise RecastError(ErrorCode.MEDIA_INVALID, f"{path} lists no segments.")
    return MediaPlaylist(path, target, init, segments)


def rename_init(playlist: Path, name: str) -> None:
    """Give a media playlist's init segment the file name ``name`` (ffmpeg numbers them when
    one muxer writes several renditions), rewriting the playlist's EXT-X-MAP."""
    text = playlist.read_text(encoding="utf-8")
    match = _MAP.search(text)
    if match is None or match.group(1) == name:
        return
    (playlist.parent / match.group(1)).rename(playlist.parent / name)
    text = text[: match.start(1)] + name + text[match.end(1) :]
    atomic_write_bytes(playlist, text.encode("utf-8"))


def measure(playlist: MediaPlaylist) -> Measurement:
    peak = 0.0
    total_bits = 0
    for segment in playlist.segments:
        bits = (playlist.path.parent / segment.uri).stat().st_size * 8
        total_bits += bits
        if segment.duration > 0:
            peak = max(peak, bits / segment.duration)
    duration = playlist.duration
    return Measurement(
        peak=round(peak),
        average=round(total_bits / duration) if duration > 0 else round(peak),
        duration=duration,
        max_segment=max(s.duration for s in playlist.segments),
    )


# -- codecs from the init segment -----------------------------------------------------------


def _box(data: bytes, kind: bytes) -> bytes | None:
    """The payload of the first ``kind`` box in ``data`` (searched, sizes checked)."""
    start = 0
    while (found := data.find(kind, start)) >= 4:
        size = int.from_bytes(data[found - 4 : found], "big")
        if 8 <= size <= len(data) - found + 4:
            return data[found + 4 : found - 4 + size]
        start = found + 1
    return None


def _descriptor(data: bytes, offset: int) -> tuple[int, int, int]:
    """(tag, payload offset, payload length) of the MPEG-4 descriptor at ``offset``."""
    tag = data[offset]
    length = 0
    offset += 1
    for _ in range(4):
        byte = data[offset]
        offset += 1
        length = (length << 7) | (byte & 0x7F)
        if not byte & 0x80:
            break
    return tag, offset, length


def _aac_object_type(esds: bytes) -> int | None:
    try:
        tag, offset, _ = _descriptor(esds, 4)  # after version and flags
        if tag != 0x03:
            return None
        flags = esds[offset + 2]
        offset += 3
        if flags & 0x80:
            offset += 2
        if flags & 0x40:
            offset += 1 + esds[offset]
        if flags & 0x20:
            offset += 2
        tag, offset, _ = _descriptor(esds, offset)
        if tag != 0x04 or esds[offset] != 0x40:  # MPEG-4 audio
            return None
        tag, offset, _ = _descriptor(esds, offset + 13)
        if tag != 0x05:
            return None
        object_type = esds[offset] >> 3
        if object_type == 31:
            object_type = 32 + (((esds[offset] & 0x07) << 3) | (esds[offset + 1] >> 5))
        return object_type
    except IndexError:
        return None


def codecs(init: Path) -> list[str]:
    """RFC 6381 codec strings of the tracks in an fMP4 init segment (video first)."""
    data = init.read_bytes()
    found: list[str] = []
    avcc = _box(data, b"avcC")
    if avcc is not None and len(avcc) >= 4:
        found.append(f"avc1.{avcc[1]:02x}{avcc[2]:02x}{avcc[3]:02x}")
    esds = _box(data, b"esds")
    if esds is not None:
        object_type = _aac_object_type(esds)
        if object_type is not None:
            found.append(f"mp4a.40.{object_type}")
    if not found:
        raise RecastError(ErrorCode.MEDIA_INVALID, f"{init.name} has no H.264 or AAC track.")
    return found


@dataclass(frozen=True)
class VideoShape:
    width: int
    height: int
    frame_rate: float


def video_shape(
    playlist: MediaPlaylist, max_pixels: int = ffmpeg_tools.DEFAULT_MAX_PIXELS
) -> VideoShape:
    """Size and frame rate of a rendition, read by ffprobe from its first segment (Recast's
    own output: read as an fMP4 file, nothing else)."""
    files = playlist.files()[:2]
    policy = ffmpeg_tools.OWN_OUTPUT_INPUT.limited_to(max_pixels)
    data = (
        ffmpeg_tools.probe(Path(files[0]), policy=policy)
        if len(files) == 1
        else _probe_concat(files, policy)
    )
    for stream in data.get("streams", []):
        if stream.get("codec_type") == "video":
            rate = Fraction(str(stream.get("r_frame_rate") or "0/1"))
            return VideoShape(int(stream["width"]), int(stream["height"]), float(rate))
    raise RecastError(ErrorCode.MEDIA_INVALID, f"{playlist.path} has no video.")


def _probe_concat(files: list[Path], policy: ffmpeg_tools.InputPolicy) -> dict[str, Any]:
    joined = files[0].parent / f".probe-{files[0].stem}.mp4"
    try:
        atomic_write_bytes(joined, b"".join(f.read_bytes() for f in files))
        return ffmpeg_tools.probe(joined, policy=policy)
    finally:
        joined.unlink(missing_ok=True)


# -- master playlist ----------------------------------------------------------------------


@dataclass(frozen=True)
class AudioRendition:
    group: str
    name: str
    uri: str
    channels: int
    language: str = ""


@dataclass(frozen=True)
class Variant:
    uri: str
    bandwidth: int
    average_bandwidth: int
    codecs: list[str]
    resolution: tuple[int, int] | None = None
    frame_rate: float | None = None
    audio_group: str | None = None


def master_text(variants: list[Variant], audio: AudioRendition | None = None) -> str:
    lines = ["#EXTM3U", "#EXT-X-VERSION:7", "#EXT-X-INDEPENDENT-SEGMENTS"]
    if audio is not None:
        language = f',LANGUAGE="{audio.language}"' if audio.language else ""
        lines.append(
            f'#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID="{audio.group}",NAME="{audio.name}"{language},'
            f'DEFAULT=YES,AUTOSELECT=YES,CHANNELS="{audio.channels}",URI="{audio.uri}"'
        )
    for variant in variants:
        attributes = [
            f"BANDWIDTH={variant.bandwidth}",
            f"AVERAGE-BANDWIDTH={variant.average_bandwidth}",
            f'CODECS="{",".join(variant.codecs)}"',
        ]
        if variant.resolution is not None:
            attributes.append(f"RESOLUTION={variant.resolution[0]}x{variant.resolution[1]}")
        if variant.frame_rate:
            attributes.append(f"FRAME-RATE={variant.frame_rate:.3f}")
        if variant.audio_group:
            attributes.append(f'AUDIO="{variant.audio_group}"')
        if variant.resolution is not None:
            attributes.append("CLOSED-CAPTIONS=NONE")
        lines += [f"#EXT-X-STREAM-INF:{','.join(attributes)}", variant.uri]
    return "\n".join(lines) + "\n"


def write_master(path: Path, variants: list[Variant], audio: AudioRendition | None = None) -> None:
    atomic_write_bytes(path, master_text(variants, audio).encode("utf-8"))


def read_master(path: Path) -> list[tuple[dict[str, str], str]]:
    """The variants of a master playlist: (attributes, URI) pairs."""
    lines = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]
    variants: list[tuple[dict[str, str], str]] = []
    for number, line in enumerate(lines):
        if line.startswith("#EXT-X-STREAM-INF:"):
            variants.append((parse_attributes(line.split(":", 1)[1]), lines[number + 1]))
    return variants


def parse_attributes(text: str) -> dict[str, str]:
    pairs = re.findall(r'([A-Z0-9-]+)=("[^"]*"|[^,]*)', text)
    return {key: value.strip('"') for key, value in pairs}
