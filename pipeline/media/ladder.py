"""Rendition choice: which HLS rungs a source gets, at what size, rate and bit rate.

Rules (the configured ladder is ``media.ladder``; a rung's ``height`` is its short side):

- sizes are decided on the source's *display* size (pixel aspect applied, rotation applied),
  so output pixels are square and vertical video gets a vertical ladder;
- a rung is used only when its short side is at most the source's: nothing is upscaled; a
  source smaller than every rung gets one rung at its own size;
- both dimensions are even (4:2:0), rounded to the nearest even number but never above the
  source's;
- bit rates are the rung's, scaled by the rung's pixel count against a 16:9 frame of the same
  short side (4:3 needs fewer bits, 21:9 more), within 0.5x and 1.5x;
- the frame rate is the source's, divided down to at most ``media.max_frame_rate`` (119.88
  becomes 59.94); a variable rate becomes constant (its base rate, or the nearest common one).

:func:`source_filters` is the chain every decoded frame goes through first (deinterlace,
HDR tone mapping, constant rate, 8-bit 4:2:0), shared by the transcode and thumbnails stages.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from fractions import Fraction

from pydantic import BaseModel

from pipeline.core.settings import LadderRung
from pipeline.tools.ffmpeg_tools import Filter

COMMON_RATES = tuple(
    Fraction(value)
    for value in ("24000/1001", "24", "25", "30000/1001", "30", "50", "60000/1001", "60")
)
REFERENCE_ASPECT = Fraction(16, 9)


class Rendition(BaseModel):
    """One video rung as it will be encoded."""

    name: str
    """``<short side>p``: names the rung's directory (``hls/720p/``) and MP4 (``720p.mp4``)."""
    width: int
    height: int
    frame_rate: str
    """Output frame rate as a fraction (``30000/1001``)."""
    bitrate_kbps: int
    peak_kbps: int

    @property
    def short_side(self) -> int:
        return min(self.width, self.height)

    @property
    def fps(self) -> float:
        return float(Fraction(self.frame_rate))

    @property
    def bufsize_kbps(self) -> int:
        """The VBV buffer: two seconds at the peak rate."""
        return 2 * self.peak_kbps


def floor_even(value: float) -> int:
    return max(2, int(value) - int(value) % 2)


def nearest_even(value: float, limit: int) -> int:
    """``value`` rounded to the nearest even integer (halves up), at most ``limit`` rounded
    down to even."""
    return max(2, min(2 * math.floor(value / 2 + 0.5), floor_even(limit)))


def scaled_size(width: int, height: int, short_side: int) -> tuple[int, int]:
    """The even size of a ``width`` x ``height`` frame whose short side becomes ``short_side``."""
    if width >= height:
        new_height = min(floor_even(short_side), floor_even(height))
        return nearest_even(width * new_height / height, width), new_height
    new_width = min(floor_even(short_side), floor_even(width))
    return new_width, nearest_even(height * new_width / width, height)


def output_frame_rate(
    rate: Fraction, variable: bool, max_rate: float, base: Fraction | None = None
) -> Fraction:
    """The constant frame rate every rung is encoded at.

    ``rate`` is the source's average rate, ``base`` its base rate (ffprobe's r_frame_rate).
    A variable-rate source is encoded at its base rate when that is a plausible frame rate
    (pauses lower the average, not the motion), else at its average, snapped to the nearest
    common rate when within 3%.
    """
    if rate <= 0:
        rate = Fraction(25)
    if variable:
        if base is not None and rate < base <= 2 * Fraction(max_rate).limit_denominator(1001):
            rate = base
        nearest = min(COMMON_RATES, key=lambda common: abs(common - rate))
        rate = nearest if abs(nearest - rate) / rate < Fraction(3, 100) else Fraction(round(rate))
    divisor = max(1, math.ceil(rate / Fraction(max_rate).limit_denominator(1001)))
    return rate / divisor


def _bitrate_factor(width: int, height: int) -> float:
    short = min(width, height)
    reference = short * short * REFERENCE_ASPECT
    return min(1.5, max(0.5, float(width * height / reference)))


def choose_ladder(
    display_width: int,
    display_height: int,
    frame_rate: Fraction,
    rungs: Sequence[LadderRung],
    *,
    variable_frame_rate: bool = False,
    base_frame_rate: Fraction | None = None,
    max_frame_rate: float = 60.0,
) -> list[Rendition]:
    """The rungs for a source shown at ``display_width`` x ``display_height``, largest first."""
    rate = output_frame_rate(frame_rate, variable_frame_rate, max_frame_rate, base_frame_rate)
    rate_text = f"{rate.numerator}/{rate.denominator}"
    short = min(display_width, display_height)
    ordered = sorted(rungs, key=lambda rung: rung.height, reverse=True)
    chosen = [rung for rung in ordered if rung.height <= short]
    renditions: list[Rendition] = []
    for rung in chosen:
        width, height = scaled_size(display_width, display_height, rung.height)
        factor = _bitrate_factor(width, height)
        renditions.append(
            Rendition(
                name=f"{min(width, height)}p",
                width=width,
                height=height,
                frame_rate=rate_text,
                bitrate_kbps=round(rung.bitrate_kbps * factor),
                peak_kbps=round(rung.peak_kbps * factor),
            )
        )
    if not renditions:
        smallest = ordered[-1]
        width, height = scaled_size(display_width, display_height, short)
        reference = float(smallest.height**2 * REFERENCE_ASPECT)
        factor = max(0.25, min(1.0, width * height / reference))
        renditions.append(
            Rendition(
                name=f"{min(width, height)}p",
                width=width,
                height=height,
                frame_rate=rate_text,
                bitrate_kbps=max(1, round(smallest.bitrate_kbps * factor)),
                peak_kbps=max(1, round(smallest.peak_kbps * factor)),
            )
        )
    return renditions


def progressive_rendition(ladder: Sequence[Rendition], mp4_height: int) -> Rendition:
    """The rung for the progressive MP4: ``mp4_height``, else the highest rung below it, else
    the smallest rung."""
    fitting = [r for r in ladder if r.short_side <= mp4_height]
    if fitting:
        return max(fitting, key=lambda r: r.short_side)
    return min(ladder, key=lambda r: r.short_side)


def source_filters(
    *, interlaced: bool, hdr_transfer: str | None, rate: Fraction | None
) -> list[Filter]:
    """Filters that make decoded source frames standard before any scaling: deinterlaced,
    HDR tone-mapped to BT.709, at a constant ``rate`` (None: as they come), 8-bit 4:2:0."""
    chain: list[Filter] = []
    if interlaced:
        chain.append(Filter("yadif", options={"mode": 0, "parity": -1, "deint": 1}))
    if hdr_transfer:
        chain += [
            Filter(
                "zscale",
                options={"tin": hdr_transfer, "min": "bt2020nc", "pin": "bt2020", "t": "linear"},
            ),
            Filter("format", options={"pix_fmts": "gbrpf32le"}),
            Filter("zscale", options={"p": "bt709", "npl": 100}),
            Filter("tonemap", options={"tonemap": "hable", "desat": 0}),
            Filter("zscale", options={"t": "bt709", "m": "bt709", "r": "tv"}),
        ]
    if rate is not None:
        chain.append(Filter("fps", options={"fps": f"{rate.numerator}/{rate.denominator}"}))
    chain.append(Filter("format", options={"pix_fmts": "yuv420p"}))
    return chain
