"""Builds the teaser card from what the stages found: title, excerpt, duration, poster, JSON-LD."""

from __future__ import annotations

import re
import unicodedata
from datetime import datetime
from typing import Any

from pipeline.core.card import (
    Card,
    CardStatus,
    ChapterRef,
    Duration,
    EventRef,
    Link,
    Poster,
    SourceRef,
)
from pipeline.core.redact import public_url
from pipeline.core.settings import Settings
from pipeline.core.source import URL_NAMED_EXTRACTORS, SourceInfo

ELLIPSIS = " [...]"
_SENTENCE = re.compile(
    r"[A-Za-zÀ-ÿ\u0370-\u03ff\u0400-\u04ff\u0600-\u06ff\u4e00-\u9fff]{2,}.*[.!?。！？]"
)


def slugify(text: str, max_length: int = 80) -> str:
    """A URL-safe slug: "Munich Security Conference 2026" -> "munich-security-conference-2026"."""
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    slug = re.sub(r"[^a-z0-9]+", "-", ascii_text.lower()).strip("-")
    return slug[:max_length].strip("-") or "event"


def iso_duration(seconds: float) -> str:
    total = round(seconds)
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    parts = "".join(
        f"{value}{unit}" for value, unit in ((hours, "H"), (minutes, "M"), (secs, "S")) if value
    )
    return f"PT{parts or '0S'}"


def display_duration(seconds: float) -> str:
    total = round(seconds)
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def has_sentences(text: str) -> bool:
    """Whether ``text`` reads as prose (not just links, hashtags or a bare title)."""
    stripped = re.sub(r"https?://\S+|#\w+", "", text).strip()
    return len(stripped.split()) >= 6 and bool(_SENTENCE.search(stripped))


def make_excerpt(text: str, length: int) -> str:
    """``text`` cut at a word boundary near ``length``, ending in " [...]" when cut."""
    flat = " ".join(text.split())
    if len(flat) <= length:
        return flat
    cut = flat[: length + 1]
    space = cut.rfind(" ")
    cut = cut[:space] if space >= length * 0.6 else cut[:length]
    return cut.rstrip(" ,;:-–—") + ELLIPSIS


def choose_excerpt(description: str, transcript_opening: str | None, length: int) -> str:
    """The card's excerpt: the description when it has real sentences, else the opening of the
    transcript (the transcript stage's ``opening``), else whatever the description is; cut at
    a word boundary near ``length`` and ending in " [...]" when cut."""
    if has_sentences(description):
        return make_excerpt(description, length)
    if transcript_opening and transcript_opening.strip():
        return make_excerpt(transcript_opening, length)
    return make_excerpt(description, length)


def public_source_url(meta: SourceInfo, url: str) -> str:
    """A URL of the source as cards publish it: never a user name, password, signature or
    token (pipeline.core.redact); the query is kept only when a real extractor recognised the source
    (YouTube's ``watch?v=`` names the video) and dropped for generic and direct-file sources."""
    extractor = meta.extractor.split(":", 1)[0].lower()
    recognised = extractor not in URL_NAMED_EXTRACTORS and extractor != "file"
    return public_url(url, keep_query=recognised) if url else url


def build_card(
    meta: SourceInfo,
    settings: Settings,
    *,
    status: CardStatus,
    event: str | None,
    poster: Poster | None,
    updated: datetime,
    excerpt_source: str | None = None,
) -> Card:
    duration_s = meta.media_duration or meta.duration
    duration = (
        Duration(
            seconds=round(duration_s, 3),
            iso8601=iso_duration(duration_s),
            display=display_duration(duration_s),
        )
        if duration_s
        else None
    )
    text = excerpt_source if excerpt_source is not None else meta.description
    source_url = public_source_url(meta, meta.webpage_url)
    card = Card(
        id=meta.card_id,
        status=status,
        title=meta.title,
        excerpt=make_excerpt(text, settings.card.excerpt_length),
        description=meta.description,
        event=EventRef(name=event, slug=slugify(event)) if event else None,
        source=SourceRef(
            platform=meta.platform,
            extractor=meta.extractor,
            id=meta.source_id,
            url=source_url,
            uploader=meta.uploader,
            uploader_url=public_source_url(meta, meta.uploader_url),
            published=meta.upload_date,
        ),
        duration=duration,
        link=Link(label=settings.card.watch_label, href=source_url),
        poster=poster,
        chapters=[ChapterRef(title=c.title, start=c.start, end=c.end) for c in meta.chapters],
        tags=meta.tags,
        language=meta.language,
        updated=updated,
        jsonld={},
    )
    card.jsonld = video_jsonld(card)
    return card


def video_jsonld(card: Card) -> dict[str, Any]:
    """schema.org VideoObject for the card (one implementation: pipeline.publish.jsonld)."""
    from pipeline.publish.jsonld import video_jsonld as build

    return build(card)
