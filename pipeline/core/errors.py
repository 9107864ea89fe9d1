"""The one error taxonomy: stable codes, permanent or transient, and the retry decision.

Every failure that leaves a stage is a :class:`RecastError` carrying an :class:`ErrorCode`
(part of the API: producers, webhooks and ops filter on it) and one sentence for a human.
Whether an error is worth retrying is a property of its code, decided here and nowhere else.
"""

from __future__ import annotations

import errno
import os
import random
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path


class ErrorCode(StrEnum):
    """Stable error codes. Renaming one breaks API clients: add, never rename."""

    SOURCE_UNSUPPORTED = "source.unsupported"
    SOURCE_UNAVAILABLE = "source.unavailable"
    SOURCE_NO_VIDEO = "source.no_video"
    SOURCE_FORBIDDEN = "source.forbidden"
    SOURCE_GEO_BLOCKED = "source.geo_blocked"
    SOURCE_BLOCKED = "source.blocked"
    SOURCE_HOST_PAUSED = "source.host_paused"
    """The source's host is paused after refusals (or its download slots are taken): the
    stage waits, uncounted, and runs again later (pipeline/core/hostgate.py)."""
    SOURCE_LIVE = "source.live"
    SOURCE_INCOMPLETE = "source.incomplete"
    SOURCE_UNSUPPORTED_PROTOCOL = "source.unsupported_protocol"
    """The media could only be fetched by ffmpeg or another external downloader (SAMPLE-AES or
    live HLS, RTMP...), which Recast never runs on a source's URLs."""
    LIMIT_DURATION = "limit.duration"
    LIMIT_FILESIZE = "limit.filesize"
    LIMIT_PIXELS = "limit.pixels"
    """The video's frames are larger than ``media.max_pixels``."""
    MEDIA_INVALID = "media.invalid"
    CARD_CONFLICT = "card.conflict"
    """The card id is taken by a card of another source; never replaced unless forced."""
    CLIP_PARENT_NOT_FOUND = "clip.parent_not_found"
    """A clip was asked of a card that is not published (HTTP 404)."""
    CLIP_PARENT_NOT_READY = "clip.parent_not_ready"
    """A clip was asked of a card that is not ready yet (preview or playable; HTTP 409)."""
    CLIP_RANGE_INVALID = "clip.range_invalid"
    """A clip's from/to cannot be read, or fall outside the recording, or make a clip shorter
    than a second or longer than ``clips.max_duration_s`` (HTTP 422)."""
    CARD_NOT_FOUND = "card.not_found"
    """A card was asked for by id (its poster by time) and none is published (HTTP 404)."""
    CARD_NOT_READY = "card.not_ready"
    """The card is not ready, or has no video to take a frame from (HTTP 409)."""
    POSTER_TIME_INVALID = "poster.time_invalid"
    """A poster's time is not inside the recording, [0, duration) (HTTP 422)."""
    SOCIAL_INVALID = "social.invalid"
    """The job's ``social`` option (the 9:16 cut) is malformed, or its crop leaves the frame."""
    NETWORK_TIMEOUT = "network.timeout"
    NETWORK_RATE_LIMITED = "network.rate_limited"
    NETWORK_SERVER_ERROR = "network.server_error"
    NETWORK_CONNECTION = "network.connection"
    STAGE_STALLED = "stage.stalled"
    STAGE_TIMEOUT = "stage.timeout"
    STAGE_INTERRUPTED = "stage.interrupted"
    """A tool the stage ran was killed from outside (OOM killer, an operator); retried."""
    STORAGE_UNAVAILABLE = "storage.unavailable"
    """The output or workspace is full, read-only, failing or gone, or its lock stayed taken."""
    WORKER_LOST = "worker.lost"
    JOB_CANCELLED = "job.cancelled"
    CONFIG_INVALID = "config.invalid"
    MODEL_UNAVAILABLE = "model.unavailable"
    INTERNAL = "internal.error"
    # Refusals of the producer API (workers/api), never the outcome of a stage.
    REQUEST_INVALID = "request.invalid"
    REQUEST_UNAUTHORIZED = "request.unauthorized"
    REQUEST_NOT_FOUND = "request.not_found"
    REQUEST_CONFLICT = "request.conflict"
    REQUEST_TOO_LARGE = "request.too_large"
    SERVICE_UNAVAILABLE = "service.unavailable"
    API_UNREACHABLE = "api.unreachable"
    """The command line got no usable answer from the producer API (``recast --api URL``)."""


TRANSIENT_CODES: frozenset[ErrorCode] = frozenset(
    {
        ErrorCode.NETWORK_TIMEOUT,
        ErrorCode.NETWORK_RATE_LIMITED,
        ErrorCode.NETWORK_SERVER_ERROR,
        ErrorCode.NETWORK_CONNECTION,
        ErrorCode.SOURCE_HOST_PAUSED,
        ErrorCode.STAGE_STALLED,
        ErrorCode.STAGE_TIMEOUT,
        ErrorCode.STAGE_INTERRUPTED,
        ErrorCode.STORAGE_UNAVAILABLE,
    }
)

# Codes that mean "the producer gave us something we cannot use" (CLI exit status 2).
INPUT_CODES: frozenset[ErrorCode] = frozenset(
    {
        ErrorCode.SOURCE_UNSUPPORTED,
        ErrorCode.SOURCE_UNAVAILABLE,
        ErrorCode.SOURCE_NO_VIDEO,
        ErrorCode.SOURCE_FORBIDDEN,
        ErrorCode.SOURCE_GEO_BLOCKED,
        ErrorCode.SOURCE_LIVE,
        ErrorCode.SOURCE_UNSUPPORTED_PROTOCOL,
        ErrorCode.LIMIT_DURATION,
        ErrorCode.LIMIT_FILESIZE,
        ErrorCode.LIMIT_PIXELS,
        ErrorCode.MEDIA_INVALID,
        ErrorCode.CARD_CONFLICT,
        ErrorCode.CLIP_PARENT_NOT_FOUND,
        ErrorCode.CLIP_PARENT_NOT_READY,
        ErrorCode.CLIP_RANGE_INVALID,
        ErrorCode.CARD_NOT_FOUND,
        ErrorCode.CARD_NOT_READY,
        ErrorCode.POSTER_TIME_INVALID,
        ErrorCode.SOCIAL_INVALID,
    }
)

HINTS: dict[ErrorCode, str] = {
    ErrorCode.SOURCE_UNSUPPORTED: "Check the URL points at a video page or media file.",
    ErrorCode.SOURCE_UNAVAILABLE: "Check the video is public and still online.",
    ErrorCode.SOURCE_NO_VIDEO: "Give the URL of the recording itself, not a page around it.",
    ErrorCode.SOURCE_FORBIDDEN: "Use a public http(s) URL, or allow the network in settings.",
    ErrorCode.SOURCE_GEO_BLOCKED: "Fetch it from a worker in a region where it is available.",
    ErrorCode.SOURCE_BLOCKED: (
        "The site is refusing us; give its sources.sites entry a cookies_file, then retry."
    ),
    ErrorCode.SOURCE_HOST_PAUSED: "Nothing to do: the job waits until the host answers again.",
    ErrorCode.SOURCE_LIVE: "Submit it again once the stream has ended and a recording exists.",
    ErrorCode.SOURCE_INCOMPLETE: "The source is missing parts; try again later or another copy.",
    ErrorCode.SOURCE_UNSUPPORTED_PROTOCOL: (
        "Find another copy of the recording (a plain or AES-128 HLS, DASH or MP4 one)."
    ),
    ErrorCode.LIMIT_DURATION: "Raise ingest.max_duration_s if this recording is wanted.",
    ErrorCode.LIMIT_FILESIZE: "Raise ingest.max_filesize_mb or ingest.max_height.",
    ErrorCode.LIMIT_PIXELS: "Export the video at 8K or below, or raise media.max_pixels.",
    ErrorCode.MEDIA_INVALID: "Check the file plays; re-export or re-upload it.",
    ErrorCode.CARD_CONFLICT: "Another source owns that card id; resubmit with --replace-card.",
    ErrorCode.CLIP_PARENT_NOT_FOUND: "Check the card id; a clip is cut from a published card.",
    ErrorCode.CLIP_PARENT_NOT_READY: "Wait for the card's card.ready, then ask for the clip.",
    ErrorCode.CLIP_RANGE_INVALID: (
        "Give from and to as 750, 750.25, 12:30 or 1:02:03.5, inside the recording, at least "
        "1 s apart and within clips.max_duration_s."
    ),
    ErrorCode.CARD_NOT_FOUND: "Check the card id; published cards are under /v1/cards/{id}.",
    ErrorCode.CARD_NOT_READY: "Wait for the card's card.ready; a poster is taken from its MP4.",
    ErrorCode.POSTER_TIME_INVALID: "Give a time in seconds from 0 to just before the duration.",
    ErrorCode.SOCIAL_INVALID: (
        'Give social as {"crop_x": null or a left edge inside the frame, "captions": bool}.'
    ),
    ErrorCode.NETWORK_TIMEOUT: "Retried automatically; check the source site if it persists.",
    ErrorCode.NETWORK_RATE_LIMITED: "Retried automatically with backoff.",
    ErrorCode.NETWORK_SERVER_ERROR: "Retried automatically; the source site is failing.",
    ErrorCode.NETWORK_CONNECTION: "Retried automatically; check the network.",
    ErrorCode.STAGE_STALLED: "Retried automatically; the tool stopped making progress.",
    ErrorCode.STAGE_TIMEOUT: "Retried automatically; raise the stage time limit if it recurs.",
    ErrorCode.STAGE_INTERRUPTED: "Retried automatically; a tool was killed mid-run.",
    ErrorCode.STORAGE_UNAVAILABLE: "Retried automatically; free space on, or remount, the storage.",
    ErrorCode.WORKER_LOST: "The input crashes workers; inspect it before retrying.",
    ErrorCode.JOB_CANCELLED: "Retry the job to run it again.",
    ErrorCode.CONFIG_INVALID: "Fix the setting named in the message.",
    ErrorCode.MODEL_UNAVAILABLE: "Run `recast models install`, or fix transcript.model.",
    ErrorCode.INTERNAL: "This is a bug in Recast; report it with the job id.",
    ErrorCode.REQUEST_INVALID: "Fix the request as the message says; /docs has the schema.",
    ErrorCode.REQUEST_UNAUTHORIZED: "Send a valid token: Authorization: Bearer <token>.",
    ErrorCode.REQUEST_NOT_FOUND: "Check the id; jobs and cards are listed under /v1.",
    ErrorCode.REQUEST_CONFLICT: "The job is not in a state that allows this; fetch it first.",
    ErrorCode.REQUEST_TOO_LARGE: (
        "Send a smaller request: fewer URLs per request, a body within api.max_body_bytes."
    ),
    ErrorCode.SERVICE_UNAVAILABLE: "Retry shortly; Redis or the workers are not reachable.",
    ErrorCode.API_UNREACHABLE: "Check --api (RECAST_API_URL) and that `recast api` runs there.",
}


class RecastError(Exception):
    """A classified failure: a stable code and one sentence for a human."""

    def __init__(self, code: ErrorCode, message: str, *, retry_after: float | None = None):
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.retry_after = retry_after

    @property
    def transient(self) -> bool:
        return self.code in TRANSIENT_CODES

    @property
    def is_input_error(self) -> bool:
        return self.code in INPUT_CODES

    @property
    def hint(self) -> str:
        return HINTS.get(self.code, "")

    def to_dict(self) -> dict[str, str | bool]:
        return {
            "code": str(self.code),
            "message": self.message,
            "transient": self.transient,
            "hint": self.hint,
        }


class ConfigError(RecastError):
    """A setting with a bad value, found at start-up."""

    def __init__(self, message: str):
        super().__init__(ErrorCode.CONFIG_INVALID, message)


@dataclass(frozen=True)
class RetryDecision:
    retry: bool
    delay_s: float


def retry_decision(
    error: RecastError,
    attempt: int,
    *,
    max_attempts: int,
    base_delay_s: float = 2.0,
    max_delay_s: float = 300.0,
    storage_span_s: float = 0.0,
    rng: random.Random | None = None,
) -> RetryDecision:
    """Whether to retry after ``attempt`` (1-based) failed, and after how long.

    Exponential backoff with full jitter; a server's Retry-After is honoured as a floor.
    ``storage.unavailable`` has its own budget: it is retried (beyond ``max_attempts``) until
    the backoff has spanned ``storage_span_s`` at least, because a full or read-only disk
    takes minutes to put right, while a few quick attempts would all be lost on it.
    """
    limit = max_attempts
    if error.code is ErrorCode.STORAGE_UNAVAILABLE:
        limit = max(limit, attempts_spanning(storage_span_s, base_delay_s, max_delay_s))
    if not error.transient or attempt >= limit:
        return RetryDecision(False, 0.0)
    delay = backoff_delay(attempt, base_delay_s, max_delay_s, rng)
    if error.retry_after is not None:
        delay = max(delay, min(error.retry_after, max_delay_s))
    return RetryDecision(True, delay)


def attempts_spanning(span_s: float, base_delay_s: float, max_delay_s: float) -> int:
    """Attempts whose backoff, at its shortest (half of each ceiling), adds up to ``span_s``.

    Without a delay no span can be covered: 0 (the caller's ``max_attempts`` applies).
    """
    if span_s <= 0 or base_delay_s <= 0 or max_delay_s <= 0:
        return 0
    waited, attempts = 0.0, 1
    while waited < span_s:
        waited += _ceiling(attempts, base_delay_s, max_delay_s) / 2
        attempts += 1
    return attempts


def backoff_delay(
    attempts: int, base_s: float, max_s: float, rng: random.Random | None = None
) -> float:
    """Seconds to wait after ``attempts`` failed attempts: doubling from ``base_s`` up to
    ``max_s``, with jitter (a random value between half and all of it). The one backoff of
    Recast: stage retries, storage outages waited out in place, webhook deliveries."""
    ceiling = _ceiling(attempts, base_s, max_s)
    return (rng or random).uniform(ceiling / 2, ceiling)


def _ceiling(attempt: int, base_delay_s: float, max_delay_s: float) -> float:
    """The longest wait after ``attempt`` failed: doubling from the base, capped."""
    return min(max_delay_s, base_delay_s * 2.0 ** min(max(0, attempt - 1), 64))


STORAGE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EIO, errno.ESTALE})
"""A full disk or quota, a read-only remount, a failing disk, a vanished network share."""


def storage_failure(exc: BaseException, roots: Iterable[Path] = ()) -> RecastError | None:
    """The transient ``storage.unavailable`` for an OSError (or one it was raised from) that
    says the disk is full, read-only, failing or gone; ``ENOENT`` counts when one of the
    storage ``roots`` (output, workspace) has vanished. None for any other exception."""
    roots = tuple(roots)
    cause: BaseException | None = exc
    while cause is not None and not isinstance(cause, RecastError):
        if isinstance(cause, OSError) and _storage_fault(cause, roots):
            reason = os.strerror(cause.errno) if cause.errno else str(cause)
            return RecastError(ErrorCode.STORAGE_UNAVAILABLE, f"The storage failed: {reason}.")
        cause = cause.__cause__
    return None


def _storage_fault(error: OSError, roots: Iterable[Path]) -> bool:
    if error.errno in STORAGE_ERRNOS:
        return True
    return error.errno == errno.ENOENT and any(not Path(root).is_dir() for root in roots)


def as_recast_error(exc: BaseException, storage_roots: Iterable[Path] = ()) -> RecastError:
    """Any exception as a RecastError: storage faults (see :func:`storage_failure`) are the
    transient ``storage.unavailable``; other unknown ones are internal errors (bugs)."""
    if isinstance(exc, RecastError):
        return exc
    failure = storage_failure(exc, storage_roots)
    if failure is not None:
        return failure
    return RecastError(ErrorCode.INTERNAL, f"Unexpected {type(exc).__name__}: {exc}")
