"""Public forms of URLs: what the board, ``recast status``, job listings and cards may show.

A URL a producer submits can carry secrets: a user name and password (``user:pw@host``), a
signed URL's signature and expiry (S3's ``X-Amz-*``, Google's ``X-Goog-*``, CloudFront's
``Policy``/``Signature``/``Key-Pair-Id``, Azure's ``sig``), an API key or a session token.
:func:`public_url` removes them, :func:`public_text` does it to every URL in a message or a log
line; the URL the job fetches is never changed, only what is shown.
"""

from __future__ import annotations

import re
from urllib.parse import unquote_plus, urlsplit, urlunsplit

SECRET_NAMES = frozenset(
    {
        "sig",
        "signature",
        "token",
        "key",
        "apikey",
        "api_key",
        "access_token",
        "auth",
        "authorization",
        "expires",
        "expiry",
        "policy",
        "key_pair_id",
        "credential",
        "credentials",
        "session",
        "sid",
        "password",
        "passwd",
        "pwd",
        "pass",
        "secret",
        "hmac",
        "jwt",
    }
)
"""Query parameter names (lower case, ``-`` read as ``_``) that are credentials or signatures."""
SECRET_PREFIXES = ("x_amz_", "x_goog_")
SECRET_WORDS = (
    "token",
    "secret",
    "passw",
    "signature",
    "credential",
    "session",
    "apikey",
    "api_key",
    "accesskey",
    "access_key",
)
"""A parameter whose name contains one of these (``upload_token``, ``AWSAccessKeyId``) is one."""

_USERINFO = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*://)[^/?#]*@")
_URL_IN_TEXT = re.compile(r"\b[A-Za-z][A-Za-z0-9+.-]*://[^\s<>\"'`\\]+")
"""A URL in running text; it stops at a backslash too, so an escape in a JSON line stays whole."""
_TRAILING = ".,;:!?)]}"


def public_url(url: str, *, keep_query: bool) -> str:
    """``url`` without user name and password, without its fragment and, when ``keep_query``,
    without the query parameters that are credentials or signatures (every other parameter
    is kept as written, in its order); without any query when not ``keep_query``."""
    try:
        parts = urlsplit(url)
    except ValueError:  # not a URL urllib can read (a broken IPv6 host): cut generously
        return _USERINFO.sub(r"\1", re.split(r"[?#]", url, maxsplit=1)[0])
    netloc = parts.netloc.rpartition("@")[2]
    query = _public_query(parts.query) if keep_query else ""
    return urlunsplit((parts.scheme, netloc, parts.path, query, ""))


def public_text(text: str) -> str:
    """``text`` (an error message, a log line) with every URL in it in its public form, the
    query kept without its secrets."""
    return _URL_IN_TEXT.sub(_public_match, text)


def _public_match(match: re.Match[str]) -> str:
    found = match.group(0)
    url = found.rstrip(_TRAILING)  # "(see https://…)." : the punctuation is the sentence's
    return public_url(url, keep_query=True) + found[len(url) :]


def is_secret_parameter(name: str) -> bool:
    """Whether a query parameter of this name carries a credential or a signature."""
    flat = unquote_plus(name).strip().lower().replace("-", "_")
    return (
        flat in SECRET_NAMES
        or flat.startswith(SECRET_PREFIXES)
        or any(word in flat for word in SECRET_WORDS)
    )


def _public_query(query: str) -> str:
    kept = [pair for pair in query.split("&") if pair and not _is_secret_pair(pair)]
    return "&".join(kept)


def _is_secret_pair(pair: str) -> bool:
    return is_secret_parameter(pair.split("=", 1)[0])
