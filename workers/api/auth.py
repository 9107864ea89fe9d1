"""Who may do what: the bearer tokens of ``api.tokens`` and the board's login cookie.

- ``/v1`` takes ``Authorization: Bearer <token>`` only (:class:`TokenCheck`).
- The jobs board is a page a browser opens, and a browser cannot add a header to a page it
  navigates to, so ``POST /board/login`` (a form posting the token) sets :data:`COOKIE`:
  HttpOnly (page scripts cannot read it), ``SameSite=Strict`` (no other site's page sends it),
  ``Secure`` over HTTPS. Its value is not the token but ``<issued>.<HMAC-SHA256(token,
  issued)>``: it opens the board for :data:`SESSION_S` and nothing else, and removing the
  token from ``api.tokens`` ends every session made with it.
- :class:`BoardAccess` guards the board's routes: a bearer token, or the cookie; reading is
  open to anyone when ``ops.public_board`` is set. Retry and cancel from the board always need
  one, and with the cookie also the header :data:`ACTION_HEADER`, which a page of another
  origin cannot send without a CORS preflight the API never grants (CSRF).
"""

from __future__ import annotations

import hashlib
import hmac
import time
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from pipeline.core.errors import ErrorCode, RecastError

COOKIE = "recast_board"
SESSION_S = 12 * 3600
ACTION_HEADER = "X-Recast-Board"
CLOCK_SKEW_S = 60

_bearer = HTTPBearer(auto_error=False)


def unauthorized(message: str = "A valid bearer token is required.") -> RecastError:
    return RecastError(ErrorCode.REQUEST_UNAUTHORIZED, message)


class Tokens:
    """The tokens of ``api.tokens``, compared in constant time."""

    def __init__(self, tokens: list[str]):
        self.tokens = [t.encode() for t in tokens if t]

    def valid(self, given: str) -> bool:
        data = given.encode()
        return bool(data) and any(hmac.compare_digest(data, t) for t in self.tokens)

    def session(self, token: str, now: float | None = None) -> str:
        """A login cookie's value for ``token`` (a valid one), issued ``now``."""
        issued = int(time.time() if now is None else now)
        return f"{issued}.{_mac(token.encode(), issued)}"

    def valid_session(self, value: str, now: float | None = None) -> bool:
        issued_text, _, mac = value.partition(".")
        if not issued_text.isdigit() or not mac:
            return False
        issued = int(issued_text)
        age = (time.time() if now is None else now) - issued
        if not -CLOCK_SKEW_S <= age <= SESSION_S:
            return False
        return any(hmac.compare_digest(mac, _mac(t, issued)) for t in self.tokens)


def _mac(token: bytes, issued: int) -> str:
    return hmac.new(token, f"recast-board-session:{issued}".encode(), hashlib.sha256).hexdigest()


class TokenCheck:
    """The dependency guarding /v1: a bearer token among ``api.tokens``."""

    def __init__(self, tokens: Tokens):
        self.tokens = tokens

    def __call__(
        self, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
    ) -> None:
        if credentials is None or not self.tokens.valid(credentials.credentials):
            raise unauthorized()


class BoardAccess:
    """Whether a request may read the board (``action=False``) or act from it."""

    def __init__(self, tokens: Tokens, *, public: bool):
        self.tokens = tokens
        self.public = public

    def allows(self, request: Request, *, action: bool = False) -> bool:
        if self.public and not action:
            return True
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() == "bearer" and self.tokens.valid(given.strip()):
            return True
        if action and not request.headers.get(ACTION_HEADER):
            return False
        return self.tokens.valid_session(request.cookies.get(COOKIE, ""))

    def require(self, request: Request, *, action: bool = False) -> None:
        if not self.allows(request, action=action):
            raise unauthorized(
                "A valid API token is required: log in at /board/login, or send "
                "Authorization: Bearer <token>."
            )
