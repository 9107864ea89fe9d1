"""Writes a card and its files to storage so that readers never see a broken card.

Under the card's lock (one publisher of a card at a time, across processes and machines):

1. refuse a card worse than the one published (preview < playable < ready): a late preview
   never replaces a playable card, a playable one never a ready one;
2. upload the files, leaves before what refers to them (segments, then media playlists, then
   master playlists; sprites before their WebVTT; pages last); a file whose checksum the
   current manifest already lists is not uploaded again;
3. write manifest.json, then card.json, then the event index(es);

and afterwards, ``publish.gc_grace_s`` later (so a reader that fetched the previous card a
moment ago can still fetch its files), delete the files under the card's directory that the
card now in place no longer lists (``hls-copy/`` once the ready card replaced the playable one).
At no moment does a published card.json link to a file that is not there.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from pipeline.core.card import Card, CardStatus
from pipeline.core.manifest import Asset, Manifest, content_type
from pipeline.core.settings import Settings
from pipeline.publish import events, ownership
from pipeline.publish.assemble import PlannedFile, Publication
from pipeline.publish.keys import CONTROL_FILES, card_key, card_lock, manifest_key
from pipeline.publish.static import publish_static
from pipeline.storage import Storage

log = logging.getLogger("recast.publish.writer")

RANK = {CardStatus.PREVIEW: 0, CardStatus.PLAYABLE: 1, CardStatus.READY: 2}


def read_card(storage: Storage, card_id: str) -> Card | None:
    data = storage.get_bytes(card_key(card_id))
    return None if data is None else Card.model_validate_json(data)


def read_manifest(storage: Storage, card_id: str) -> Manifest | None:
    data = storage.get_bytes(manifest_key(card_id))
    if data is None:
        return None
    try:
        return Manifest.model_validate_json(data)
    except ValueError:
        return None


def upload_type(key: str) -> str:
    """The Content-Type a file is stored with: its MIME type, UTF-8 named for text (card.html
    is plain ASCII, any other character written as a character reference, so it reads right
    without a charset too)."""
    mime = content_type(key)
    if mime.startswith("text/") or mime in ("application/json", "application/vnd.apple.mpegurl"):
        return f"{mime}; charset=utf-8"
    return mime


def upload_order(item: PlannedFile) -> tuple[int, str]:
    """Leaves first: what a file refers to is always uploaded before the file."""
    key = item.key.lower()
    if item.role in ("page", "oembed", "metadata"):
        rank = 5
    elif item.role == "hls-master":
        rank = 4
    elif key.endswith(".m3u8"):
        rank = 3
    elif key.endswith(".vtt"):
        rank = 2
    else:
        rank = 1
    return rank, item.key


@dataclass(frozen=True)
class PublishOutcome:
    """What :func:`publish` did: whether the card was replaced, and the card now in place."""

    published: bool
    card: Card
    """The card now in place (the existing one when this one was refused)."""
    previous: Card | None = None
    uploaded: int = 0


def publish(
    storage: Storage,
    settings: Settings,
    publication: Publication,
    *,
    now: datetime,
    allowed: Callable[[Card | None, Card], bool] | None = None,
    force: bool = False,
) -> PublishOutcome:
    """Publish ``publication`` atomically to readers; see the module's docstring.

    Raises ``card.conflict`` when the card in place belongs to another source (unless
    ``force``).
    """
    card = publication.card
    check = allowed or not_worse
    with storage.lock(card_lock(card.id), timeout_s=settings.publish.lock_timeout_s):
        existing = read_card(storage, card.id)
        ownership.check_owner(existing, card, force=force)
        if not check(existing, card):
            log.info(
                "card %s stays %s; not replaced by %s",
                card.id,
                existing and existing.status,
                card.status,
            )
            assert existing is not None
            return PublishOutcome(False, existing, existing)
        uploaded = _write(storage, publication, now)
        _update_events(storage, existing, card, now)
    collect_garbage(storage, settings, card.id, grace_s=settings.publish.gc_grace_s)
    return PublishOutcome(True, card, existing, uploaded)


def not_worse(existing: Card | None, new: Card) -> bool:
    return existing is None or RANK[new.status] >= RANK[existing.status]


def _write(storage: Storage, publication: Publication, now: datetime) -> int:
    card = publication.card
    publish_static(storage, {item.name: item for item in publication.static})
    previous = read_manifest(storage, card.id)
    known = {a.path: a.sha256 for a in previous.assets} if previous else {}
    present = set(storage.list(f"{card.id}/")) if known else set()
    manifest = Manifest(id=card.id, status=str(card.status), updated=now)
    uploaded = 0
    for item in sorted(publication.files, key=upload_order):
        asset = item.describe()
        manifest.assets.append(asset)
        key = f"{card.id}/{item.key}"
        if known.get(item.key) == asset.sha256 and key in present:
            continue  # the same bytes are there already
        if item.file is not None:
            storage.put_file(key, item.file, upload_type(key))
        else:
            storage.put_bytes(key, item.content(), upload_type(key))
        uploaded += 1
    for static in publication.static:
        manifest.assets.append(
            Asset(
                path=f"../{static.key}",
                type=content_type(static.key),
                role="static",
                size=len(static.data),
                sha256=_sha256(static.data),
            )
        )
    json_type = upload_type("card.json")
    storage.put_bytes(manifest_key(card.id), manifest.model_dump_json(indent=2).encode(), json_type)
    storage.put_bytes(card_key(card.id), card.to_json().encode(), json_type)
    return uploaded


def _sha256(data: bytes) -> str:
    import hashlib

    return hashlib.sha256(data).hexdigest()


def _update_events(storage: Storage, existing: Card | None, card: Card, now: datetime) -> None:
    old_slug = existing.event.slug if existing is not None and existing.event else None
    new_slug = card.event.slug if card.event else None
    if new_slug is not None:
        events.upsert(storage, card, now)
    if old_slug is not None and old_slug != new_slug:
        events.remove(storage, old_slug, card.id, now)


def collect_garbage(storage: Storage, settings: Settings, card_id: str, *, grace_s: float) -> int:
    """Delete files under ``<id>/`` that the card in place does not list; returns how many.

    When there is something to delete, waits ``grace_s`` first (outside the lock) and looks
    again, so readers of the previous card have that long to fetch its files.
    """
    if not _stale_keys(storage, card_id):
        return 0
    if grace_s > 0:
        time.sleep(grace_s)
    with storage.lock(card_lock(card_id), timeout_s=settings.publish.lock_timeout_s):
        stale = _stale_keys(storage, card_id)
        for key in stale:
            storage.delete(key)
    if stale:
        log.info("removed %d files card %s no longer uses", len(stale), card_id)
    return len(stale)


def _stale_keys(storage: Storage, card_id: str) -> list[str]:
    manifest = read_manifest(storage, card_id)
    if manifest is None:
        return []
    keep = {f"{card_id}/{name}" for name in CONTROL_FILES}
    keep.update(f"{card_id}/{a.path}" for a in manifest.assets if not a.path.startswith("../"))
    return [key for key in storage.list(f"{card_id}/") if key not in keep]


def withdraw(
    storage: Storage,
    settings: Settings,
    card_id: str,
    now: datetime,
    *,
    only_status: CardStatus | None = None,
) -> bool:
    """Remove a card: from its event index first, then card.json, then every file.

    With ``only_status``, a card with another status is left as it is. Without a card.json,
    files under ``<id>/`` are what a publication (or a withdrawal) that failed half-way left:
    they go too, so a withdrawal interrupted by a storage fault can simply be run again.
    Returns whether there was a card.
    """
    with storage.lock(card_lock(card_id), timeout_s=settings.publish.lock_timeout_s):
        card = read_card(storage, card_id)
        if card is None:
            for key in storage.list(f"{card_id}/"):
                storage.delete(key)
            return False
        if only_status is not None and card.status != only_status:
            return False
        if card.event is not None:
            events.remove(storage, card.event.slug, card_id, now)
        storage.delete(card_key(card_id))
        for key in storage.list(f"{card_id}/"):
            storage.delete(key)
    return True
