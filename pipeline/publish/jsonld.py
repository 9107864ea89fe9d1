"""schema.org VideoObject for a card, and its safe embedding inside an HTML script element.

:func:`video_jsonld` builds the JSON-LD (name, description, thumbnailUrl, uploadDate,
duration, contentUrl, embedUrl, transcript, inLanguage, publisher, chapters as ``hasPart``
Clips; for a clip, the recording it was cut from as ``isPartOf``) and, when the card has a watch
page, the ``SeekToAction`` search engines use for key moments: the page's URL with
``?t=SECONDS``, which ``watch.js`` honours (:func:`url_at_time` makes those URLs).
:func:`script_json` serialises any JSON value so that it can sit between
``<script type="application/ld+json">`` and ``</script>``: "<", ">" and "&" (and the line
separators U+2028/U+2029) are written as JSON ``\\uXXXX`` escapes, so no text in the data can
close the element or open a comment, and the element's text still parses to the same value.
"""

from __future__ import annotations

import json
import math
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from pipeline.core.card import Card, Poster

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


SEEK_TO_PARAMETER = "seek_to_second_number"
"""The name Google's key-moments documentation gives the SeekToAction's placeholder."""


def url_at_time(page: str, seconds: str | float) -> str:
    """``page`` with ``t=seconds`` in its query (any earlier ``t`` and fragment dropped), as the
    watch page reads it: ``watch.html?t=42``. A float is cut to whole seconds (starting a moment
    early beats missing a chapter's first word); a string goes in as it is (a template's
    ``{placeholder}``)."""
    value = str(start_second(seconds)) if isinstance(seconds, float | int) else seconds
    parts = urlsplit(page.split("#", 1)[0])
    kept = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k != "t"]
    query = "&".join(part for part in (urlencode(kept), f"t={value}") if part)
    return urlunsplit(parts._replace(query=query, fragment=""))


def start_second(seconds: float) -> int:
    """A time as the whole second a link to it names (``?t=``, ``startOffset``)."""
    return max(0, math.floor(seconds))


def _key_moments(card: Card, page: str) -> list[dict[str, Any]]:
    """The chapters as schema.org Clips: each ends where the next starts, the last at the end of
    the recording (or where its source says it ends)."""
    clips: list[dict[str, Any]] = []
    chapters = sorted(card.chapters, key=lambda chapter: chapter.start)
    for index, chapter in enumerate(chapters):
        start = start_second(chapter.start)
        if index + 1 < len(chapters):
            end: float | None = start_second(chapters[index + 1].start)
        else:
            end = card.duration.seconds if card.duration is not None else chapter.end
        clip: dict[str, Any] = {"@type": "Clip", "name": chapter.title, "startOffset": start}
        if end is not None and round(end) > start:
            clip["endOffset"] = round(end)
        clip["url"] = url_at_time(page, chapter.start)
        clips.append(clip)
    return clips


def thumbnail_urls(poster: Poster) -> list[str]:
    """The VideoObject's ``thumbnailUrl``: every size and format of the poster."""
    return [source.src for source in poster.sources] or [poster.src]


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
        data["thumbnailUrl"] = thumbnail_urls(card.poster)
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
    if card.parent is not None:  # a clip: the recording it was cut from
        data["isPartOf"] = {
            "@type": "VideoObject",
            "name": card.parent.title or card.parent.id,
            "url": card.parent.url,
        }
    if card.chapters:
        data["hasPart"] = _key_moments(card, page)
    if embed_url:  # the watch page honours ?t=SECONDS (pipeline/static/watch.js)
        data["potentialAction"] = {
            "@type": "SeekToAction",
            "target": url_at_time(embed_url, f"{{{SEEK_TO_PARAMETER}}}"),
            "startOffset-input": f"required name={SEEK_TO_PARAMETER}",
        }
    return data
