"""The opaque cursor of ``GET /v1/jobs``: where the previous page stopped, as a keyset
position (the last job's creation time and id, :class:`JobPosition`), in URL-safe base64.

A position, unlike an offset, does not move when jobs are added: new jobs sort before it, so
the next page holds exactly the next older jobs. Clients pass ``next_cursor`` back as it is; a
cursor that is not one the API gave out is refused as ``request.invalid`` (422) with the
detail ``type: cursor_invalid`` at ``loc: ["query", "cursor"]``.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import re

from fastapi.exceptions import RequestValidationError

from pipeline.engine.distributed.jobstore import JobPosition
from workers.api.models import JOB_ID_PATTERN

MAX_CURSOR_CHARS = 200


def encode(position: JobPosition) -> str:
    raw = json.dumps([position.created, position.job_id], separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode(cursor: str) -> JobPosition:
    """The position ``cursor`` stands for; ``RequestValidationError`` if it stands for none."""
    try:
        if len(cursor) > MAX_CURSOR_CHARS:
            raise ValueError("too long")
        padded = cursor + "=" * (-len(cursor) % 4)
        data = json.loads(base64.b64decode(padded, altchars=b"-_", validate=True))
        created, job_id = data
        if isinstance(created, bool) or not isinstance(created, int | float):
            raise ValueError("no time")
        if not math.isfinite(created) or not isinstance(job_id, str):
            raise ValueError("no position")
        if re.fullmatch(JOB_ID_PATTERN, job_id) is None:
            raise ValueError("no job id")
    except (ValueError, TypeError, binascii.Error, UnicodeError, RecursionError):
        raise RequestValidationError(
            [
                {
                    "loc": ("query", "cursor"),
                    "msg": "Not a cursor this API gave out: pass next_cursor back unchanged.",
                    "type": "cursor_invalid",
                }
            ]
        ) from None
    return JobPosition(float(created), job_id)
