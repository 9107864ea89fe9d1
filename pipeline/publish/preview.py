"""The poster a card has before the thumbnails stage ran: the source's own thumbnail in the
sizes of ``card.poster_widths``, with a BlurHash placeholder. The preview card is published
from it (see :mod:`pipeline.publish.publisher`)."""

from __future__ import annotations

from pathlib import Path

from pipeline.core.card import ImageSource, Poster
from pipeline.core.settings import Settings
from pipeline.core.source import SourceInfo
from pipeline.publish.keys import card_key
from pipeline.storage import Storage
from pipeline.tools.images import placeholder, resize_to_width


def poster_from_thumbnail(
    storage: Storage, settings: Settings, meta: SourceInfo, thumbnail: Path, work: Path
) -> tuple[Poster, list[tuple[Path, str]]]:
    """Poster sizes made from the source's thumbnail, and the files to upload with their keys."""
    sources: list[ImageSource] = []
    uploads: list[tuple[Path, str]] = []
    for width in sorted(set(settings.card.poster_widths), reverse=True):
        file = work / f"source-{width}.jpg"
        real_w, real_h = resize_to_width(thumbnail, file, width)
        key = f"{meta.card_id}/thumbs/source-{real_w}.jpg"
        if any(s.width == real_w for s in sources):
            continue
        uploads.append((file, key))
        src = storage.relative_url(key, card_key(meta.card_id))
        sources.append(ImageSource(src=src, width=real_w, height=real_h, type="image/jpeg"))
    largest = sources[0]
    poster = Poster(
        src=largest.src,
        width=largest.width,
        height=largest.height,
        alt=f"Poster of {meta.title}",
        srcset=", ".join(f"{s.src} {s.width}w" for s in sources),
        sources=sources,
        placeholder=placeholder(uploads[-1][0]),
    )
    return poster, uploads
