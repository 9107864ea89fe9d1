"""Webhook signatures: ``Recast-Signature: t=<unix time>,v1=<hex HMAC-SHA256>``.

The HMAC key is the shared secret (``publish.webhook_secret``); the signed message is the
timestamp, a dot and the raw request body: ``f"{t}.".encode() + body``. A receiver checks the
HMAC in constant time and refuses a timestamp older (or newer) than a tolerance, which stops
replays of a captured request. Several ``v1=`` values may appear (while a secret is rotated);
one matching is enough.

This module depends on the standard library only, so a CMS may copy it as it is.
"""

from __future__ import annotations

import hashlib
import hmac
import time

HEADER = "Recast-Signature"
SCHEME = "v1"
DEFAULT_TOLERANCE_S = 300


def compute(secret: str | bytes, timestamp: int, body: bytes) -> str:
    """The hex HMAC-SHA256 of ``"<timestamp>." + body`` under ``secret``."""
    key = secret.encode() if isinstance(secret, str) else secret
    return hmac.new(key, f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()


def sign(secret: str | bytes, body: bytes, timestamp: int | None = None) -> str:
    """The value of the ``Recast-Signature`` header for ``body``."""
    moment = int(time.time()) if timestamp is None else timestamp
    return f"t={moment},{SCHEME}={compute(secret, moment, body)}"


def verify_signature(
    secret: str | bytes,
    header: str | None,
    body: bytes | str,
    tolerance_s: float = DEFAULT_TOLERANCE_S,
    *,
    now: float | None = None,
) -> bool:
    """Whether ``header`` is a valid signature of ``body`` (the raw bytes received) made with
    ``secret`` less than ``tolerance_s`` seconds from now. Never raises on malformed input."""
    if not header or not secret:
        return False
    raw = body.encode() if isinstance(body, str) else body
    timestamp: int | None = None
    candidates: list[str] = []
    for item in header.split(","):
        name, _, value = item.strip().partition("=")
        if name == "t" and value.isdigit():
            timestamp = int(value)
        elif name == SCHEME and value:
            candidates.append(value)
    if timestamp is None or not candidates:
        return False
    current = time.time() if now is None else now
    if abs(current - timestamp) > tolerance_s:
        return False
    expected = compute(secret, timestamp, raw)
    return any(hmac.compare_digest(expected, candidate) for candidate in candidates)
