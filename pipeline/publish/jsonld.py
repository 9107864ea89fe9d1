"""schema.org VideoObject for a card, and its safe embedding inside an HTML script element.

:func:`video_jsonld` builds the JSON-LD (name, description, thumbnailUrl, uploadDate,
duration, contentUrl, embedUrl, transcript, inLanguage, publisher, chapters as ``hasPart``
Clips). :func:`script_json` serialises any JSON value so that it can sit between
``<script type="application/ld+json">`` and ``</script>``: "<", ">" and "&" (and the line
separators U+2028/U+2029) are written as JSON ``\\uXXXX`` escapes, so no text in the data can
close the element or open a comment, and the element's text still parses to the same value.
"""

from __future__ import annotations

import json
from typing import Any

from pipeline.core.card import Card

TRANSCRIPT_MAX_CHARS = 100_000

_SCRIPT_ESCAPES = {
    ord("<"): "\\u003c",
    ord(">"): "\\u003e",
    ord("&"): "\\u0026",
    0x2028: "\\u2028",
    0x2029: "\\u2029",
}


def script_json(value: Any) -> str:
    """JSON text safe inside a ``<script>`` element (no ``</script>`` or ``<!--`` possible)."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).translate(_SCRIPT_ESCAPES)


def _clip_url(base: str, start: float) -> str:
    return f"{base.split('#', 1)[0]}#t={round(start)}"


def video_jsonld(
    card: Card,
    *,
    embed_url: str | None = None,
    transcript: str | None = None,
    publisher_name: str | None = None,
) -> dict[str, Any]:
    """schema.org VideoObject for the card.

    ``embed_url`` is the watch page (when one is published), ``transcript`` the plain text of
    the transcript, ``publisher_name`` a fallback publisher when the source names no uploader.
    """
    page = embed_url or card.link.href
    data: dict[str, Any] = {
        "@context": "https://schema.org",
        "@type": "VideoObject",
        "name": card.title,
        "description": card.description or card.excerpt or card.title,
        "url": page,
    }
    if card.poster is not None:
        data["thumbnailUrl"] = [source.src for source in card.poster.sources] or [card.poster.src]
    data["uploadDate"] = card.source.published or card.updated.isoformat()
    if card.duration is not None:
        data["duration"] = card.duration.iso8601
    if card.streams.mp4:
        data["contentUrl"] = card.streams.mp4[0].src
    elif card.streams.hls:
        data["contentUrl"] = card.streams.hls
    if embed_url:
        data["embedUrl"] = embed_url
    if transcript:
        data["transcript"] = transcript[:TRANSCRIPT_MAX_CHARS]
    if card.language:
        data["inLanguage"] = card.language
    if card.source.uploader:
        publisher: dict[str, Any] = {"@type": "Organization", "name": card.source.uploader}
        if card.source.uploader_url:
            publisher["url"] = card.source.uploader_url
        data["publisher"] = publisher
    elif publisher_name:
        data["publisher"] = {"@type": "Organization", "name": publisher_name}
    if card.tags:
        data["keywords"] = ", ".join(card.tags)
    if card.chapters:
        data["hasPart"] = [
            {
                "@type": "Clip",
                "name": chapter.title,
                "startOffset": round(chapter.start),
                **({"endOffset": round(chapter.end)} if chapter.end is not None else {}),
                "url": _clip_url(page, chapter.start),
            }
            for chapter in card.chapters
        ]
    return data
