"""What the downloaded media is, as typed models: the probe stage writes a :class:`MediaInfo`
(``probe/media.json``) and the media stages decide by it (ladder, stream copy, thumbnails,
transcript). Reading ffprobe's JSON into these models is the probe stage's job.
"""

from __future__ import annotations

import re
from fractions import Fraction
from typing import Any

from pydantic import BaseModel, Field

HDR_TRANSFERS = frozenset({"smpte2084", "arib-std-b67"})


def positive_fraction(value: Any) -> Fraction | None:
    """``30000/1001`` (or ``25``) as a fraction; None unless it is one and above zero."""
    try:
        result = Fraction(str(value))
    except (ValueError, ZeroDivisionError):
        return None
    return result if result > 0 else None


def aspect_ratio(value: Any) -> Fraction | None:
    """``16:9`` as a fraction; None unless both sides are positive whole numbers."""
    match = re.fullmatch(r"(\d+):(\d+)", str(value or ""))
    if not match or int(match.group(1)) == 0 or int(match.group(2)) == 0:
        return None
    return Fraction(int(match.group(1)), int(match.group(2)))


class VideoInfo(BaseModel):
    index: int
    """The stream's index in the file."""
    codec: str
    profile: str = ""
    width: int
    """Width of the frames as stored (before the pixel aspect ratio and rotation)."""
    height: int
    coded_width: int = 0
    """The size the decoder works at, as ffprobe reports it (larger than the stored size when
    a crop applies); 0 when not reported."""
    coded_height: int = 0
    sar: str = "1:1"
    """Sample (pixel) aspect ratio."""
    rotation: int = 0
    """Display-matrix rotation in degrees (0, 90, 180 or 270), as ffprobe reports it."""
    frame_rate: str = "0/1"
    """Average frame rate as a fraction (``30000/1001``)."""
    base_frame_rate: str = "0/1"
    """ffprobe's r_frame_rate: the rate every timestamp fits on (a variable source's maximum)."""
    variable_frame_rate: bool = False
    pix_fmt: str = ""
    bit_depth: int = 8
    interlaced: bool = False
    color_transfer: str = ""
    bit_rate: int | None = None

    @property
    def pixels(self) -> int:
        """Pixels of one decoded frame: the coded size, else the stored size."""
        return max(self.width * self.height, self.coded_width * self.coded_height)

    @property
    def fps(self) -> float:
        return float(positive_fraction(self.frame_rate) or 0)

    @property
    def sample_aspect(self) -> Fraction:
        return aspect_ratio(self.sar) or Fraction(1)

    @property
    def hdr(self) -> bool:
        return self.color_transfer in HDR_TRANSFERS

    @property
    def display_size(self) -> tuple[int, int]:
        """Width and height as shown: pixel aspect applied, then rotation."""
        width = round(self.width * self.sample_aspect)
        height = self.height
        if self.rotation % 180 == 90:
            width, height = height, width
        return max(1, width), max(1, height)

    @property
    def display_aspect(self) -> str:
        width, height = self.display_size
        ratio = Fraction(width, height)
        return f"{ratio.numerator}:{ratio.denominator}"


class AudioInfo(BaseModel):
    index: int
    codec: str
    profile: str = ""
    channels: int = 0
    channel_layout: str = ""
    sample_rate: int = 0
    bit_rate: int | None = None


class SubtitleInfo(BaseModel):
    index: int
    codec: str
    language: str = ""


class MediaInfo(BaseModel):
    """The media file, as the transcode and thumbnails stages need to know it."""

    container: str
    duration: float
    bit_rate: int | None = None
    size: int = 0
    video: VideoInfo | None = None
    audio: AudioInfo | None = None
    audio_streams: int = 0
    subtitles: list[SubtitleInfo] = Field(default_factory=list)

    @property
    def has_video(self) -> bool:
        return self.video is not None

    @property
    def has_audio(self) -> bool:
        return self.audio is not None

    @property
    def summary(self) -> str:
        parts = [f"{self.duration:.1f} s {self.container}"]
        if self.video is not None:
            width, height = self.video.display_size
            parts.append(f"{self.video.codec} {width}x{height} @{self.video.fps:.3g}")
        if self.audio is not None:
            parts.append(f"{self.audio.codec} {self.audio.channels}ch")
        return ", ".join(parts)
