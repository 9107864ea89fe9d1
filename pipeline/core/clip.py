"""Clips: what a clip job cuts from a ready card, the clip's card id, and time parsing.

A clip is a new card cut from a ready card (its *parent*) over ``[start, end)`` of the
parent's time. Its job carries a :class:`ClipSpec` in its options (``options["clip"]``), so
the job id, like any job's, follows from what was asked: the same parent, range, title and
description give the same job. The clip's card id (:func:`clip_card_id`) follows from the
parent and the range only (``<parent>-clip-<start ms>-<end ms>``), so a new title republishes
the same card.

Times are seconds in the parent's timeline, kept to the millisecond; people may write them as
``750``, ``750.25``, ``12:30`` or ``1:02:03.5`` (:func:`parse_time`).
"""

from __future__ import annotations

import hashlib
import math
import re
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from pipeline.core.errors import ErrorCode, RecastError
from pipeline.core.job import JobSpec

CLIP_OPTION = "clip"
"""The job option holding a clip job's :class:`ClipSpec`."""
SOCIAL_OPTION = "social"
"""The job option asking for the 9:16 social cut (rendered by its own stage, not here)."""
CARD_ID_MAX = 120
"""The longest card id the API accepts (``CARD_ID_PATTERN``)."""
MIN_DURATION_S = 1.0
"""The shortest clip."""

_CLOCK = re.compile(r"^(?:(\d+):)?(\d+):(\d+(?:\.\d+)?)$")
_SECONDS = re.compile(r"^\d+(?:\.\d+)?$")


def milliseconds(seconds: float) -> int:
    return round(seconds * 1000)


def in_milliseconds(seconds: float) -> float:
    """``seconds`` kept to the millisecond, as every clip time is."""
    return milliseconds(seconds) / 1000


def parse_time(value: str | float | int) -> float:
    """Seconds from ``750``, ``750.25``, ``12:30`` (m:ss) or ``1:02:03.5`` (h:mm:ss), to the
    millisecond; ``clip.range_invalid`` for anything else (negative, minutes or seconds of 60
    or more after a colon, not a number)."""
    if isinstance(value, bool):
        raise _bad_time(value)
    if isinstance(value, int | float):
        if not math.isfinite(value) or value < 0:
            raise _bad_time(value)
        return in_milliseconds(float(value))
    text = value.strip()
    if _SECONDS.match(text):
        return in_milliseconds(float(text))
    match = _CLOCK.match(text)
    if match is None:
        raise _bad_time(value)
    hours, minutes, seconds = match.group(1), int(match.group(2)), float(match.group(3))
    if seconds >= 60 or (hours is not None and minutes >= 60):
        raise _bad_time(value)
    return in_milliseconds(int(hours or 0) * 3600 + minutes * 60 + seconds)


def _bad_time(value: object) -> RecastError:
    return RecastError(
        ErrorCode.CLIP_RANGE_INVALID,
        f"{value!r} is not a time: write seconds (750, 750.25) or m:ss / h:mm:ss (12:30, "
        "1:02:03.5).",
    )


def clock(seconds: float) -> str:
    """``seconds`` as people write them: ``12:30``, ``1:02:03.5``."""
    millis = milliseconds(seconds)
    hours, rest = divmod(millis, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    secs = f"{rest / 1000:06.3f}".rstrip("0").rstrip(".")
    secs = secs if "." in secs or len(secs) == 2 else secs.zfill(2)
    return f"{hours}:{minutes:02d}:{secs}" if hours else f"{minutes}:{secs}"


def clip_card_id(parent: str, start: float, end: float) -> str:
    """The clip's card id: ``<parent>-clip-<start ms>-<end ms>``; when that would pass
    :data:`CARD_ID_MAX`, the parent's id is shortened and a hash of the whole added, so two
    clips never share an id."""
    suffix = f"-clip-{milliseconds(start)}-{milliseconds(end)}"
    plain = f"{parent}{suffix}"
    if len(plain) <= CARD_ID_MAX:
        return plain
    digest = hashlib.sha256(plain.encode("utf-8")).hexdigest()[:12]
    keep = CARD_ID_MAX - len(suffix) - len(digest) - 1
    return f"{parent[:keep].rstrip('-_.')}-{digest}{suffix}"


class ClipOrigin(BaseModel):
    """Where a clip comes from: its parent card and the span of the parent's time it covers.
    Recorded in the clip's source metadata (``source.json``) and shown on its card."""

    model_config = ConfigDict(extra="forbid")

    parent: str
    """The parent card's id."""
    parent_title: str = ""
    start: float = Field(ge=0)
    end: float = Field(gt=0)

    @property
    def card_id(self) -> str:
        return clip_card_id(self.parent, self.start, self.end)


class ClipSpec(BaseModel):
    """What a clip job cuts (``options["clip"]`` of its job)."""

    model_config = ConfigDict(extra="forbid")

    parent: str = Field(min_length=1, max_length=CARD_ID_MAX)
    start: float = Field(ge=0)
    end: float = Field(gt=0)
    title: str = Field(min_length=1, max_length=300)
    description: str = Field("", max_length=5000)

    @property
    def duration(self) -> float:
        return in_milliseconds(self.end - self.start)

    @property
    def card_id(self) -> str:
        return clip_card_id(self.parent, self.start, self.end)

    def origin(self, parent_title: str) -> ClipOrigin:
        return ClipOrigin(
            parent=self.parent, parent_title=parent_title, start=self.start, end=self.end
        )

    def job_spec(
        self,
        *,
        event: str | None = None,
        priority: int = 5,
        callback_url: str | None = None,
        options: dict[str, Any] | None = None,
    ) -> JobSpec:
        """The clip's job: its source names the parent and range (``clip:<parent>@<start>-
        <end>``, for people; nothing fetches it), its options carry this spec and ``options``
        (the social cut's, say)."""
        return JobSpec(
            source=f"clip:{self.parent}@{self.start:.3f}-{self.end:.3f}",
            event=event,
            options={**(options or {}), CLIP_OPTION: self.model_dump(mode="json")},
            callback_url=callback_url,
            priority=priority,
        )


def clip_spec(spec: JobSpec) -> ClipSpec | None:
    """The clip a job cuts; None for a job that is not a clip's."""
    value = spec.options.get(CLIP_OPTION)
    if value is None:
        return None
    try:
        return ClipSpec.model_validate(value)
    except ValidationError as exc:
        raise RecastError(
            ErrorCode.CLIP_RANGE_INVALID, f"The job's clip option is not a clip: {exc}"
        ) from exc
