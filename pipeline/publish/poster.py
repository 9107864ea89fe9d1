"""A poster chosen by time: ``POST /v1/cards/{id}/poster`` and ``recast poster CARD --time``.

:func:`set_poster` takes the frame at ``time`` from the card's highest MP4 rendition as
published (the job's workspace may be pruned; a frame of Recast's own MP4 is read with
:data:`~pipeline.tools.ffmpeg_tools.OWN_OUTPUT_INPUT`, ``-ss`` before the input, which decodes
from the keyframe before and drops frames up to the time), makes the poster from it as the
thumbnails stage makes one (:func:`pipeline.media.posters.write_posters`: every srcset width
in JPEG and WebP, the square crop, the BlurHash placeholder), and republishes the card under
its lock, as :mod:`pipeline.publish.writer` orders a publication:

1. the new pictures, under names of their own (``thumbs/poster-<frame digest>-<w>.jpg``), so
   a CDN never serves the old picture for the new card;
2. card.html and oembed.json rendered again from the card; watch.html with the poster swapped
   in place (its links, its Open Graph size, the JSON-LD): the rest of that page came from
   stage outputs that may be gone, and stays as it was;
3. manifest.json, card.json (the poster with its ``chosen_time``, ``updated`` now), the event
   index;

then the old pictures, no longer in the manifest, go ``publish.gc_grace_s`` later (readers of
the previous card can still fetch them), and ``card.updated`` goes to ``publish.webhook_urls``,
signed as every event (there is no job, so no job callback URL).

The chosen time stays on the card (``poster.chosen_time``): a job that publishes the card again
(a forced re-run) gets the poster from that time again before its card goes out
(:func:`keep_chosen_poster`, called by the publish stage), so the producer's choice is never
silently replaced by the stage's scored frame.

Refusals: ``card.not_found`` (no such card), ``card.not_ready`` (not ready, or no MP4 to take
a frame from), ``poster.time_invalid`` (not inside ``[0, duration)``).
"""

from __future__ import annotations

import json
import logging
import math
import tempfile
from datetime import datetime
from pathlib import Path

from markupsafe import escape
from pydantic import ValidationError

from pipeline.core.card import Card, CardStatus, Poster
from pipeline.core.errors import ErrorCode, RecastError
from pipeline.core.fsutil import sha256_file
from pipeline.core.job import utcnow
from pipeline.core.manifest import Manifest
from pipeline.core.settings import MediaSettings, Settings
from pipeline.core.stage import AssetRole
from pipeline.media.posters import POSTER_STEM, THUMBS_DIR, write_posters
from pipeline.publish import events, html, webhooks, writer
from pipeline.publish.assemble import PlannedFile, Publication, poster_of, validate_card
from pipeline.publish.clips import parent_mp4_key, storage_key
from pipeline.publish.jsonld import script_json, thumbnail_urls
from pipeline.publish.keys import card_key, card_lock, manifest_key
from pipeline.publish.oembed import oembed_json
from pipeline.storage import Storage, open_storage
from pipeline.tools import ffmpeg_tools
from pipeline.tools.ffmpeg_tools import Graph, Output

log = logging.getLogger("recast.publish.poster")

POSTER_ROLES = frozenset({str(AssetRole.POSTER), str(AssetRole.POSTER_SQUARE)})
FRAME_FILE = "frame.png"
DIGEST_CHARS = 10
LAST_FRAME_WINDOW_S = 2.0
"""A time in the last frame's span (past its start) finds no frame after it: the frame is
then the last one within this many seconds of the end."""


# -- the card and its media ----------------------------------------------------------------------


def ready_card(storage: Storage, card_id: str) -> Card:
    """The published card ``card_id`` if it is ready (``card.not_found``, ``card.not_ready``)."""
    plain = bool(card_id) and "/" not in card_id and not card_id.startswith(".")
    data = storage.get_bytes(card_key(card_id)) if plain else None
    if data is None:
        raise RecastError(ErrorCode.CARD_NOT_FOUND, f"There is no card {card_id}.")
    try:
        card = Card.model_validate_json(data)
    except ValidationError as exc:
        raise RecastError(
            ErrorCode.CARD_NOT_FOUND, f"The card {card_id} cannot be read: {exc}"
        ) from exc
    if card.status is not CardStatus.READY:
        raise RecastError(
            ErrorCode.CARD_NOT_READY,
            f"The card {card_id} is {card.status}, not ready: its poster is taken from its "
            "published MP4.",
        )
    return card


def check_time(card: Card, time_s: float) -> None:
    """``poster.time_invalid`` unless ``time_s`` is inside the recording, ``[0, duration)``."""
    duration = card.duration.seconds if card.duration is not None else math.inf
    if not math.isfinite(time_s) or time_s < 0 or time_s >= duration:
        raise RecastError(
            ErrorCode.POSTER_TIME_INVALID,
            f"{time_s:g} s is not inside the recording, which lasts {duration:g} s: "
            "give a time from 0 to just before the end.",
        )


def published_mp4(storage: Storage, card: Card, work: Path) -> Path:
    """The card's highest MP4 rendition as a local file (fetched into ``work`` when the
    storage keeps no files, S3); ``card.not_ready`` when there is none."""
    key = parent_mp4_key(storage, card)
    in_place = storage.local_path(key) if key is not None else None
    if in_place is not None:
        return in_place
    data = storage.get_bytes(key) if key is not None else None
    if key is None or data is None:
        raise RecastError(
            ErrorCode.CARD_NOT_READY,
            f"The card {card.id} has no published MP4 rendition to take a poster from.",
        )
    fetched = work / "media.mp4"
    fetched.write_bytes(data)
    return fetched


def extract_frame(media: Path, time_s: float, target: Path, settings: MediaSettings) -> Path:
    """The frame at ``time_s`` of Recast's own MP4 ``media``, as a PNG: the first frame at or
    after the time (what ``ffmpeg -ss T -i media -frames:v 1`` gives); past the last frame's
    start, where there is none, the last frame."""
    policy = ffmpeg_tools.OWN_OUTPUT_INPUT.limited_to(settings.max_pixels)
    start = max(0.0, time_s - LAST_FRAME_WINDOW_S)
    first_from_time = ({"ss": f"{time_s:.6f}"}, {"frames:v": 1, "update": 1})
    last_up_to_time = (  # each frame decoded overwrites the one before
        {"ss": f"{start:.6f}", "t": f"{time_s - start + 0.001:.6f}"},
        {"update": 1},
    )
    for seek, output in (first_from_time, last_up_to_time):
        graph = Graph(
            source=str(media),
            input_options=seek,
            input_policy=policy,
            outputs=[Output(str(target), output, video=0)],
        )
        ffmpeg_tools.run(
            ffmpeg_tools.graph_args(graph),
            timeout_s=settings.timeout_for(LAST_FRAME_WINDOW_S),
            stall_timeout_s=settings.stall_timeout_s,
            what="taking the poster's frame",
        )
        if target.is_file() and target.stat().st_size > 0:
            return target
    raise RecastError(ErrorCode.MEDIA_INVALID, f"No frame of {media.name} could be decoded.")


# -- the new poster ------------------------------------------------------------------------------


def render_poster(
    frame: Path, time_s: float, card: Card, storage: Storage, settings: Settings, work: Path
) -> tuple[Poster, list[PlannedFile]]:
    """The poster (every size and format, the square crop, the placeholder) from ``frame``, and
    its files; the alt text stays the card's."""
    stem = f"{POSTER_STEM}-{sha256_file(frame)[:DIGEST_CHARS]}"
    folder = work / THUMBS_DIR
    folder.mkdir(parents=True, exist_ok=True)
    assets, _ = write_posters(frame, folder, settings.media.thumbnails, time_s, stem=stem)
    poster, files = poster_of(storage, settings, card.id, card.title, work, assets)
    alt = card.poster.alt if card.poster is not None else poster.alt
    return poster.model_copy(update={"alt": alt, "chosen_time": round(time_s, 3)}), files


def with_poster(card: Card, poster: Poster, now: datetime) -> Card:
    """``card`` with ``poster``, its JSON-LD ``thumbnailUrl`` following; validated."""
    jsonld = dict(card.jsonld)
    jsonld["thumbnailUrl"] = thumbnail_urls(poster)
    changed = card.model_copy(update={"poster": poster, "jsonld": jsonld, "updated": now})
    validate_card(changed)
    return changed


def swap_poster_in_watch_page(page: str, old: Card, new: Card) -> str:
    """``page`` (watch.html of ``old``) showing ``new``'s poster: the JSON-LD, the picture's
    links (the video's poster, Open Graph, Twitter) and its Open Graph size. A page that still
    names an old picture afterwards is a bug (``internal.error``), never published."""
    assert old.poster is not None and new.poster is not None
    before = script_json(old.jsonld)
    if page.count(before) != 1:
        raise RecastError(
            ErrorCode.INTERNAL, f"The watch page of {old.id} does not carry the card's JSON-LD."
        )
    page = page.replace(before, script_json(new.jsonld))
    page = page.replace(f'"{escape(old.poster.src)}"', f'"{escape(new.poster.src)}"')
    for name, was, now in (
        ("og:image:width", old.poster.width, new.poster.width),
        ("og:image:height", old.poster.height, new.poster.height),
    ):
        page = page.replace(
            f'<meta property="{name}" content="{was}">', f'<meta property="{name}" content="{now}">'
        )
    kept = {source.src for source in new.poster.sources} | {new.poster.src}
    stale = {source.src for source in old.poster.sources} | {old.poster.src}
    left = sorted(src for src in stale - kept if f'"{escape(src)}"' in page or src in page)
    if left:
        raise RecastError(
            ErrorCode.INTERNAL,
            f"The watch page of {old.id} still names the old poster ({', '.join(left)}).",
        )
    return page


def _pages(old: Card, new: Card, watch_page: bytes | None, settings: Settings) -> list[PlannedFile]:
    """The pages that show the poster, for ``new``."""
    pages = [PlannedFile("card.html", "page", data=html.render_card_html(new).encode())]
    watch_url = new.pages.watch_html if new.pages is not None else None
    if watch_url is None:
        return pages
    pages.append(
        PlannedFile("oembed.json", "oembed", data=oembed_json(new, watch_url, settings.publish))
    )
    if watch_page is not None:
        swapped = swap_poster_in_watch_page(watch_page.decode("utf-8"), old, new)
        pages.append(PlannedFile("watch.html", "page", data=swapped.encode()))
    return pages


# -- republishing --------------------------------------------------------------------------------


def _republish(
    storage: Storage, card: Card, files: list[PlannedFile], previous: Manifest, now: datetime
) -> None:
    """Under the card's lock: the files (leaves first), then manifest.json (the previous one's
    assets but its posters and the files replaced), card.json, the event index."""
    replaced = {item.key for item in files}
    kept = [
        asset
        for asset in previous.assets
        if asset.role not in POSTER_ROLES and asset.path not in replaced
    ]
    manifest = Manifest(id=card.id, status=str(card.status), updated=now, assets=kept)
    for item in sorted(files, key=writer.upload_order):
        key = f"{card.id}/{item.key}"
        if item.file is not None:
            storage.put_file(key, item.file, writer.upload_type(key))
        else:
            storage.put_bytes(key, item.content(), writer.upload_type(key))
        manifest.assets.append(item.describe())
    json_type = writer.upload_type("card.json")
    storage.put_bytes(manifest_key(card.id), manifest.model_dump_json(indent=2).encode(), json_type)
    storage.put_bytes(card_key(card.id), card.to_json().encode(), json_type)
    if card.event is not None:
        events.upsert(storage, card, now)


def set_poster(
    settings: Settings,
    card_id: str,
    time_s: float,
    *,
    storage: Storage | None = None,
    now: datetime | None = None,
    collect: bool = True,
) -> Card:
    """Make the poster of the ready card ``card_id`` from the frame at ``time_s`` and republish
    the card (see the module's docstring); returns the card now published. With ``collect``
    false the old pictures are left for the caller to collect
    (:func:`pipeline.publish.writer.collect_garbage`, after ``publish.gc_grace_s``)."""
    storage = storage or open_storage(settings)
    check_time(ready_card(storage, card_id), time_s)  # refusals before any lock or work
    with tempfile.TemporaryDirectory(prefix="recast-poster-") as temporary:
        work = Path(temporary)
        with storage.lock(card_lock(card_id), timeout_s=settings.publish.lock_timeout_s):
            card = ready_card(storage, card_id)
            check_time(card, time_s)
            previous = writer.read_manifest(storage, card_id)
            if previous is None:
                raise RecastError(
                    ErrorCode.CARD_NOT_READY, f"The card {card_id} has no readable manifest.json."
                )
            media = published_mp4(storage, card, work)
            frame = extract_frame(media, time_s, work / FRAME_FILE, settings.media)
            poster, files = render_poster(frame, time_s, card, storage, settings, work)
            changed = with_poster(card, poster, now or utcnow())
            watch_page = storage.get_bytes(f"{card_id}/watch.html")
            files += _pages(card, changed, watch_page, settings)
            _republish(storage, changed, files, previous, changed.updated)
    log.info("card %s: poster from the frame at %.3f s", card_id, time_s)
    if collect:
        writer.collect_garbage(storage, settings, card_id, grace_s=settings.publish.gc_grace_s)
    event = webhooks.WebhookEvent(
        type=webhooks.EventType.CARD_UPDATED,
        card_id=changed.id,
        card=json.loads(changed.to_json()),
    )
    webhooks.notify(settings, event)
    return changed


# -- a job publishing the card again -------------------------------------------------------------


def keep_chosen_poster(
    publication: Publication,
    previous: Card | None,
    storage: Storage,
    settings: Settings,
    work: Path,
) -> Publication:
    """``publication`` with the poster taken again at the time a producer chose for the card
    in place (``previous.poster.chosen_time``), from the publication's own top MP4; as it is
    when nothing was chosen, the card is not ready, or the time is past its recording."""
    card = publication.card
    chosen = previous.poster.chosen_time if previous and previous.poster else None
    if chosen is None or card.status is not CardStatus.READY or not card.streams.mp4:
        return publication
    try:
        check_time(card, chosen)
    except RecastError:
        log.warning("card %s: the chosen poster time %.3f s is past its end", card.id, chosen)
        return publication
    top = max(card.streams.mp4, key=lambda rendition: rendition.height)
    key = storage_key(storage, card.id, top.src)
    media = next(
        (
            item.file
            for item in publication.files
            if item.file is not None and f"{card.id}/{item.key}" == key
        ),
        None,
    )
    if media is None:
        return publication
    work.mkdir(parents=True, exist_ok=True)
    frame = extract_frame(media, chosen, work / FRAME_FILE, settings.media)
    poster, files = render_poster(frame, chosen, card, storage, settings, work)
    frame.unlink()  # the pictures are made; the stage's directory keeps only what it publishes
    changed = with_poster(card, poster, card.updated)
    pages = {item.key: item for item in publication.files if item.role in ("page", "oembed")}
    watch = pages.get("watch.html")
    files += _pages(card, changed, watch.data if watch is not None else None, settings)
    replaced = {item.key for item in files}
    kept = [
        item
        for item in publication.files
        if item.role not in POSTER_ROLES and item.key not in replaced
    ]
    return Publication(card=changed, files=kept + files, static=publication.static)
