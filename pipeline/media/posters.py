"""Posters made from one frame: the srcset sizes in JPEG and WebP, the square crop over the most
detailed part, and the BlurHash placeholder.

The thumbnails stage makes them from the frame it scored best (``thumbs/poster-<w>.jpg``...);
a poster chosen by time (:mod:`pipeline.publish.poster`) from the frame the producer picked,
under names of their own (``thumbs/poster-<digest>-<w>.jpg``...), so a CDN never serves the
old picture under a new card.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from pipeline.core.settings import ThumbnailSettings
from pipeline.core.stage import AssetRole, OutputAsset
from pipeline.tools.images import Variant, grayscale, image_size, placeholder, write_variants

THUMBS_DIR = "thumbs"
"""Where posters (and the rest of the thumbnails stage's pictures) are published."""
POSTER_STEM = "poster"
SCORE_WIDTH = 256
"""Frames are judged (detail, brightness) scaled down to this width."""


def square_box(pixels: NDArray[np.float64]) -> tuple[float, float]:
    """Where a square window over the most detailed part starts, as fractions of (x, y)."""
    height, width = pixels.shape
    side = min(width, height)
    energy = np.abs(np.diff(pixels, axis=0))[:, :-1] + np.abs(np.diff(pixels, axis=1))[:-1, :]
    along = energy.sum(axis=0) if width > height else energy.sum(axis=1)
    length = len(along)
    window = min(side, length)
    if length <= window:
        return 0.0, 0.0
    sums = np.convolve(along, np.ones(window), mode="valid")
    centre = (len(sums) - 1) / 2
    bias = 1 - 0.3 * np.abs(np.arange(len(sums)) - centre) / max(centre, 1)
    best = int(np.argmax(sums * bias)) / (len(along) + 1)
    return (best, 0.0) if width > height else (0.0, best)


def _poster_asset(name: str, role: AssetRole, **fields: Any) -> OutputAsset:
    """A picture written as ``thumbs/<name>``, published under the same key."""
    key = f"{THUMBS_DIR}/{name}"
    return OutputAsset(file=key, key=key, role=role, **fields)


def write_posters(
    frame: Path,
    out: Path,
    thumbs: ThumbnailSettings,
    time: float | None,
    *,
    stem: str = POSTER_STEM,
) -> tuple[list[OutputAsset], str]:
    """Poster sizes (JPEG and WebP), the square crop, and the BlurHash of the poster (also in
    each poster asset's ``extra["placeholder"]``), written into ``out`` (a ``thumbs/``
    folder) as ``<stem>-<w>.jpg``, ``.webp`` and ``<stem>-square.jpg``; the assets' files are
    relative to ``out``'s parent, as a stage's are to its directory."""
    assets: list[OutputAsset] = []
    variants: list[Variant] = []
    extra: dict[str, Any] = {} if time is None else {"time": round(time, 3)}
    frame_width, frame_height = image_size(frame)
    widths = sorted({w for w in thumbs.poster_widths if w <= frame_width}, reverse=True)
    widths = widths or [frame_width - frame_width % 2]
    for width in widths:
        height = max(2, round(frame_height * width / frame_width))
        for ext, kind in (("jpg", "image/jpeg"), ("webp", "image/webp")):
            target = out / f"{stem}-{width}.{ext}"
            variants.append(Variant(target, (width, height)))
            assets.append(
                _poster_asset(
                    target.name,
                    AssetRole.POSTER,
                    width=width,
                    height=height,
                    extra={"type": kind, **extra},
                )
            )
    side = min(frame_width, frame_height)
    fx, fy = square_box(grayscale(frame, SCORE_WIDTH))
    left, top = round(fx * frame_width), round(fy * frame_height)
    left, top = min(left, frame_width - side), min(top, frame_height - side)
    size = min(side, thumbs.square_size)
    square = (left, top, left + side, top + side)
    variants.append(Variant(out / f"{stem}-square.jpg", (size, size), square))
    write_variants(
        frame, variants, jpeg_quality=thumbs.jpeg_quality, webp_quality=thumbs.webp_quality
    )
    assets.append(
        _poster_asset(
            f"{stem}-square.jpg",
            AssetRole.POSTER_SQUARE,
            width=size,
            height=size,
            extra={"type": "image/jpeg", **extra},
        )
    )
    blurhash = placeholder(out / f"{stem}-{widths[-1]}.jpg")
    for asset in assets:
        if asset.role is AssetRole.POSTER:
            asset.extra["placeholder"] = blurhash
    return assets, blurhash
