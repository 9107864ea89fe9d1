"""Clips of published cards: what a clip takes from its parent in storage, and the plan of a
clip asked for (by the API, ``recast clip``).

:func:`plan_clip` turns a request (parent card id, from, to, title, snap) into a
:class:`ClipPlan` or refuses it, before any job exists:

- ``clip.parent_not_found``: no card of that id is published;
- ``clip.parent_not_ready``: the card is a preview or only playable;
- ``clip.range_invalid``: a time that cannot be read, ``to`` not after ``from``, a range
  outside the recording, shorter than a second or longer than ``clips.max_duration_s``.

With ``snap``, each cut moves to the nearest pause between the parent's words within
``clips.snap_tolerance_s`` (:func:`pipeline.media.clips.snap_cut`); the plan says where each
cut was asked and where it went. The clip's job and card ids follow from the plan
(:class:`pipeline.core.clip.ClipSpec`), so the same request gives the same clip.

The readers below (:func:`ready_parent`, :func:`parent_source`, :func:`parent_transcript`,
:func:`parent_mp4_key`) are also what the clip job's ingest stage reads the parent with.
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from pipeline.core.card import Card, CardStatus
from pipeline.core.clip import MIN_DURATION_S, ClipSpec, clock, in_milliseconds, parse_time
from pipeline.core.errors import ErrorCode, RecastError
from pipeline.core.settings import Settings
from pipeline.core.source import SourceInfo
from pipeline.core.timedtext import TranscriptDocument
from pipeline.media.clips import snap_cut, word_spans
from pipeline.publish.keys import card_key
from pipeline.storage import Storage

SOURCE_FILE = "source.json"
"""Beside a card: what its source said about itself (published by every publication)."""
END_SLACK_S = 0.0005
"""A cut may end this far past the recording's measured end (its duration is kept to the
millisecond)."""


# -- the parent, as published ------------------------------------------------------------------


def parent_card(storage: Storage, card_id: str) -> Card:
    """The published card ``card_id``; ``clip.parent_not_found`` when there is none."""
    data = storage.get_bytes(card_key(card_id)) if _plain_id(card_id) else None
    if data is None:
        raise RecastError(ErrorCode.CLIP_PARENT_NOT_FOUND, f"There is no card {card_id}.")
    try:
        return Card.model_validate_json(data)
    except ValidationError as exc:
        raise RecastError(
            ErrorCode.CLIP_PARENT_NOT_FOUND, f"The card {card_id} cannot be read: {exc}"
        ) from exc


def ready_parent(storage: Storage, card_id: str) -> Card:
    """The published card ``card_id`` if it is ready; ``clip.parent_not_ready`` otherwise."""
    card = parent_card(storage, card_id)
    if card.status is not CardStatus.READY:
        raise RecastError(
            ErrorCode.CLIP_PARENT_NOT_READY,
            f"The card {card_id} is {card.status}, not ready: a clip is cut from a ready card.",
        )
    return card


def _plain_id(card_id: str) -> bool:
    return bool(card_id) and "/" not in card_id and not card_id.startswith(".")


def storage_key(storage: Storage, card_id: str, link: str) -> str | None:
    """The storage key a link of the card ``card_id`` points at (links are relative to the
    card's directory, or absolute under ``storage.public_base_url``); None for a link
    elsewhere."""
    base = storage.public_base_url
    if base and link.startswith(base + "/"):
        return link[len(base) + 1 :]
    if "://" in link or link.startswith("/"):
        return None
    key = posixpath.normpath(posixpath.join(card_id, link.split("#", 1)[0]))
    return None if key.startswith("..") else key


def parent_source(storage: Storage, card: Card) -> SourceInfo:
    """What the parent's source said about itself (its published ``source.json``)."""
    data = storage.get_bytes(f"{card.id}/{SOURCE_FILE}")
    if data is None:
        raise RecastError(
            ErrorCode.CLIP_PARENT_NOT_READY, f"The card {card.id} has no {SOURCE_FILE}."
        )
    return SourceInfo.model_validate_json(data)


def parent_transcript(storage: Storage, card: Card) -> TranscriptDocument | None:
    """The parent's published transcript (``transcript.json``, with word times); None when it
    has none."""
    if card.transcript is None:
        return None
    key = storage_key(storage, card.id, card.transcript.json_url)
    data = storage.get_bytes(key) if key and key.endswith(".json") else None
    if data is None:
        return None
    try:
        return TranscriptDocument.model_validate_json(data)
    except ValidationError:
        return None


def parent_mp4_key(storage: Storage, card: Card) -> str | None:
    """The key of the parent's highest progressive MP4 rendition."""
    for rendition in sorted(card.streams.mp4, key=lambda item: -item.height):
        key = storage_key(storage, card.id, rendition.src)
        if key is not None:
            return key
    return None


def check_range(start: float, end: float, card: Card, settings: Settings) -> None:
    """``clip.range_invalid`` unless ``[start, end)`` lies inside the card's recording and
    lasts from a second to ``clips.max_duration_s``."""
    if end <= start:
        raise RecastError(
            ErrorCode.CLIP_RANGE_INVALID,
            f"The clip ends ({clock(end)}) before it starts ({clock(start)}): "
            "to must come after from.",
        )
    length = card.duration.seconds if card.duration is not None else None
    if length is not None and (start >= length or end > length + END_SLACK_S):
        raise RecastError(
            ErrorCode.CLIP_RANGE_INVALID,
            f"{clock(start)}-{clock(end)} is outside the recording, which lasts {clock(length)}.",
        )
    duration = in_milliseconds(end - start)
    if duration < MIN_DURATION_S:
        raise RecastError(
            ErrorCode.CLIP_RANGE_INVALID,
            f"The clip would last {duration:g} s; a clip lasts at least {MIN_DURATION_S:g} s.",
        )
    if duration > settings.clips.max_duration_s:
        raise RecastError(
            ErrorCode.CLIP_RANGE_INVALID,
            f"The clip would last {duration:g} s, over the limit of "
            f"{settings.clips.max_duration_s:g} s (clips.max_duration_s).",
        )


# -- a clip asked for --------------------------------------------------------------------------


@dataclass(frozen=True)
class ClipRequest:
    """A clip as a producer asks for it: times as typed (seconds or clock times)."""

    parent: str
    start: str | float
    end: str | float
    title: str
    description: str = ""
    snap: bool = False


@dataclass(frozen=True)
class ClipPlan:
    """A clip that may be made: its spec, and where its cuts were asked and went."""

    spec: ClipSpec
    parent: Card
    requested_start: float
    requested_end: float
    snapped_start: bool = False
    snapped_end: bool = False

    @property
    def card_id(self) -> str:
        return self.spec.card_id

    def describe(self) -> dict[str, Any]:
        """The plan as the API and the command line show it."""
        return {
            "id": self.card_id,
            "parent": self.spec.parent,
            "title": self.spec.title,
            "start": self.spec.start,
            "end": self.spec.end,
            "duration": self.spec.duration,
            "requested": {"start": self.requested_start, "end": self.requested_end},
            "snapped": {"start": self.snapped_start, "end": self.snapped_end},
        }


def plan_clip(storage: Storage, settings: Settings, request: ClipRequest) -> ClipPlan:
    """The clip ``request`` asks for, or its refusal (see the module's docstring)."""
    start, end = parse_time(request.start), parse_time(request.end)
    parent = ready_parent(storage, request.parent)
    check_range(start, end, parent, settings)
    snapped_start = snapped_end = False
    if request.snap:
        document = parent_transcript(storage, parent)
        spans = word_spans(document) if document is not None else []
        length = parent.duration.seconds if parent.duration is not None else end
        common = {
            "pause_s": settings.clips.snap_pause_s,
            "tolerance_s": settings.clips.snap_tolerance_s,
            "duration": length,
        }
        first = snap_cut(start, spans, kind="start", **common)
        last = snap_cut(end, spans, kind="end", **common)
        start, snapped_start = first.time, first.snapped
        end, snapped_end = last.time, last.snapped
        check_range(start, end, parent, settings)
    try:
        spec = ClipSpec(
            parent=parent.id,
            start=start,
            end=end,
            title=" ".join(request.title.split()),
            description=request.description.strip(),
        )
    except ValidationError as exc:
        problem = exc.errors()[0]
        where = ".".join(str(part) for part in problem["loc"])
        raise RecastError(
            ErrorCode.REQUEST_INVALID, f"The clip's {where} is not valid: {problem['msg']}."
        ) from exc
    return ClipPlan(
        spec=spec,
        parent=parent,
        requested_start=parse_time(request.start),
        requested_end=parse_time(request.end),
        snapped_start=snapped_start,
        snapped_end=snapped_end,
    )
