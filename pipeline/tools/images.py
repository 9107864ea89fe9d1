"""Still images with Pillow: decode, convert, resize, and tiny placeholders."""

from __future__ import annotations

import io
from pathlib import Path

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
