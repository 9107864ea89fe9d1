"""Still images, the one module importing Pillow and blurhash: decode, convert, scale, crop,
flatten, compose sprite sheets, read pixels for scoring, and BlurHash placeholders (made from a
picture, and decoded back into a tiny PNG)."""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray
from PIL import Image, UnidentifiedImageError

from pipeline.core.fsutil import atomic_write_bytes

MAX_PIXELS = 50_000_000
"""A larger picture from outside is refused before it is decoded (Pillow's own bomb check
only warns below twice its MAX_IMAGE_PIXELS)."""
WEB_IMAGE_FORMATS = ("JPEG", "PNG", "WEBP", "GIF", "AVIF")
"""What a source's thumbnail may be: never a format whose plugin runs a program (EPS starts
Ghostscript) or one no web page shows (TIFF, PSD, ICNS...)."""


def to_jpeg(data: bytes, target: Path, quality: int = 90) -> bool:
    """Decode ``data`` (a web image format) and write it as a JPEG. False if undecodable, of
    another format, or larger than ``MAX_PIXELS``: a decompression bomb is no thumbnail."""
    try:
        with Image.open(io.BytesIO(data), formats=WEB_IMAGE_FORMATS) as image:
            if image.width * image.height > MAX_PIXELS:
                return False
            rgb = image.convert("RGB")
    except (
        UnidentifiedImageError,
        OSError,
        ValueError,
        Image.DecompressionBombError,
        Image.DecompressionBombWarning,  # raised, not warned, where warnings are errors
    ):
        return False
    buffer = io.BytesIO()
    rgb.save(buffer, "JPEG", quality=quality, optimize=True, progressive=True)
    atomic_write_bytes(target, buffer.getvalue())
    return True


def resize_to_width(source: Path, target: Path, width: int, fmt: str = "JPEG") -> tuple[int, int]:
    """Write ``source`` scaled to ``width`` (never up) in ``fmt``; returns the size written."""
    with Image.open(source) as image:
        rgb = image.convert("RGB")
    if rgb.width > width:
        height = max(2, round(rgb.height * width / rgb.width))
        rgb = rgb.resize((width, height), Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    if fmt == "WEBP":
        rgb.save(buffer, "WEBP", quality=80, method=4)
    else:
        rgb.save(buffer, "JPEG", quality=85, optimize=True, progressive=True)
    atomic_write_bytes(target, buffer.getvalue())
    return rgb.width, rgb.height


def image_size(path: Path) -> tuple[int, int]:
    with Image.open(path) as image:
        return image.width, image.height


def placeholder(path: Path) -> str:
    """A BlurHash of the image, for a card's placeholder while the poster loads."""
    import blurhash

    with Image.open(path) as image:
        small = image.convert("RGB")
        small.thumbnail((64, 64))
        value: str = blurhash.encode(small, x_components=4, y_components=3)
    return value


def placeholder_png(value: str, width: int, height: int) -> bytes | None:
    """The BlurHash ``value`` decoded into a ``width`` x ``height`` PNG; None when invalid."""
    import blurhash

    try:
        pixels = blurhash.decode(value, width, height)
    except (ValueError, blurhash.BlurhashDecodeError):
        return None
    image = pixels if isinstance(pixels, Image.Image) else Image.fromarray(pixels)
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, "PNG", optimize=True)
    return buffer.getvalue()


def grayscale(path: Path, max_width: int) -> NDArray[np.float64]:
    """The image's luma (0 to 255), scaled down to at most ``max_width`` wide (and four times
    that high), as rows of pixels."""
    with Image.open(path) as image:
        small = image.convert("L")
        small.thumbnail((max_width, max_width * 4))
        return np.asarray(small, dtype=np.float64)


@dataclass(frozen=True)
class Variant:
    """A picture to make from a source image: the part inside ``box`` (left, top, right, bottom
    in source pixels; the whole image when None) at ``size``, in the format of the target's
    suffix (``.webp`` is WebP, anything else JPEG)."""

    target: Path
    size: tuple[int, int]
    box: tuple[int, int, int, int] | None = None


def write_variants(
    source: Path, variants: Sequence[Variant], *, jpeg_quality: int, webp_quality: int
) -> None:
    """Decode ``source`` once and write every variant (Lanczos scaling, only when needed)."""
    with Image.open(source) as opened:
        image = opened.convert("RGB")
    made: dict[tuple[tuple[int, int, int, int] | None, tuple[int, int]], Image.Image] = {}
    for variant in variants:
        key = (variant.box, variant.size)
        if key not in made:
            picture = image.crop(variant.box) if variant.box is not None else image
            if picture.size != variant.size:
                picture = picture.resize(variant.size, Image.Resampling.LANCZOS)
            made[key] = picture
        _save(made[key], variant.target, jpeg_quality, webp_quality)


def _save(image: Image.Image, target: Path, jpeg_quality: int, webp_quality: int) -> None:
    if target.suffix == ".webp":
        image.save(target, "WEBP", quality=webp_quality, method=4)
    else:
        image.save(target, "JPEG", quality=jpeg_quality, optimize=True, progressive=True)


def flatten(source: Path, target: Path, background: tuple[int, int, int]) -> None:
    """Write ``source`` laid over an opaque ``background`` colour (its transparency gone), in
    the format of the target's suffix."""
    with Image.open(source) as drawn:
        under = Image.new("RGBA", drawn.size, (*background, 255))
        Image.alpha_composite(under, drawn.convert("RGBA")).convert("RGB").save(target)


def write_sheet(
    tiles: Sequence[tuple[Path, tuple[int, int]]],
    size: tuple[int, int],
    tile_size: tuple[int, int],
    target: Path,
    quality: int,
) -> None:
    """A JPEG sprite sheet of ``size``: each tile image scaled to ``tile_size`` and placed with
    its top left corner at the given (x, y)."""
    sheet = Image.new("RGB", size)
    for file, corner in tiles:
        with Image.open(file) as tile:
            sheet.paste(tile.convert("RGB").resize(tile_size), corner)
    sheet.save(target, "JPEG", quality=quality, optimize=True)
