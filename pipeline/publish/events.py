"""The event index (``events/<slug>.json``): the cards of one event, newest first.

A CMS builds an event's coverage page from it. Each entry summarises a card (title, excerpt,
poster, duration, status, links to card.json and the pages) so a rail can be drawn from the
index alone. "Newest" is the recording's publication date, then the time the card joined
the index.

Every change is a read-modify-write through :meth:`Storage.update` (a file lock on local
disk, a conditional write on S3), so two cards published at once both end up in the index.
"""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field

from pipeline.core.card import Card, CardStatus, EventRef
from pipeline.publish.keys import card_key
from pipeline.storage import Storage

INDEX_VERSION = "1.0"


class EntryPoster(BaseModel):
    src: str
    width: int
    height: int
    alt: str


class EventEntry(BaseModel):
    id: str
    status: CardStatus
    title: str
    excerpt: str
    platform: str
    published: str | None = None
    duration: str | None = None
    """As shown on a card ("4:05")."""
    duration_s: float | None = None
    poster: EntryPoster | None = None
    card: str
    """Link to the card's card.json."""
    card_html: str
    watch: str | None = None
    added: datetime
    """When the card first joined this index (stays when it is republished)."""
    updated: datetime


class EventIndex(BaseModel):
    schema_version: str = INDEX_VERSION
    event: EventRef
    updated: datetime
    cards: list[EventEntry] = Field(default_factory=list)


def index_key(slug: str) -> str:
    return f"events/{slug}.json"


def _link(storage: Storage, card_id: str, url: str | None, index: str) -> str | None:
    """A link written relative to the card's directory, rewritten relative to the index."""
    if url is None:
        return None
    if "://" in url or url.startswith("/"):
        return url
    return storage.relative_url(f"{card_id}/{url}", index)


def entry_for(storage: Storage, card: Card, now: datetime, added: datetime | None) -> EventEntry:
    assert card.event is not None
    key = index_key(card.event.slug)
    poster = None
    if card.poster is not None:
        poster = EntryPoster(
            src=_link(storage, card.id, card.poster.src, key) or card.poster.src,
            width=card.poster.width,
            height=card.poster.height,
            alt=card.poster.alt,
        )
    pages = card.pages
    return EventEntry(
        id=card.id,
        status=card.status,
        title=card.title,
        excerpt=card.excerpt,
        platform=card.source.platform,
        published=card.source.published,
        duration=card.duration.display if card.duration else None,
        duration_s=card.duration.seconds if card.duration else None,
        poster=poster,
        card=storage.relative_url(card_key(card.id), key),
        card_html=storage.relative_url(f"{card.id}/card.html", key),
        watch=_link(storage, card.id, pages.watch_html if pages else None, key),
        added=added or now,
        updated=now,
    )


def _newest_first(entries: list[EventEntry]) -> list[EventEntry]:
    return sorted(
        entries,
        key=lambda e: (e.published or e.added.date().isoformat(), e.added, e.id),
        reverse=True,
    )


def read_index(storage: Storage, slug: str) -> EventIndex | None:
    data = storage.get_bytes(index_key(slug))
    return None if data is None else EventIndex.model_validate_json(data)


def upsert(storage: Storage, card: Card, now: datetime) -> None:
    """Put the card into its event's index (replacing its entry), newest first."""
    assert card.event is not None
    event = card.event

    def change(current: bytes | None) -> bytes:
        index = (
            EventIndex.model_validate_json(current)
            if current
            else EventIndex(event=event, updated=now)
        )
        previous = next((e for e in index.cards if e.id == card.id), None)
        entry = entry_for(storage, card, now, previous.added if previous else None)
        index.cards = _newest_first([e for e in index.cards if e.id != card.id] + [entry])
        index.event = event
        index.updated = now
        return (index.model_dump_json(indent=2) + "\n").encode()

    storage.update(index_key(event.slug), change, "application/json; charset=utf-8")


def remove(storage: Storage, slug: str, card_id: str, now: datetime) -> None:
    """Take the card out of the event's index (nothing happens if it is not there)."""

    def change(current: bytes | None) -> bytes | None:
        if current is None:
            return None
        index = EventIndex.model_validate_json(current)
        kept = [e for e in index.cards if e.id != card_id]
        if len(kept) == len(index.cards):
            return None
        index.cards = kept
        index.updated = now
        return (index.model_dump_json(indent=2) + "\n").encode()

    storage.update(index_key(slug), change, "application/json; charset=utf-8")
