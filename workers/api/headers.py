"""Security headers on every answer of the API (a pure ASGI middleware, it never reads bodies).

- ``Content-Security-Policy``: a route that serves a page sets its own (the board: scripts and
  styles by nonce; /docs: its own files); any other answer gets :data:`DEFAULT_CSP`, which
  lets nothing load. Every policy ends up with ``frame-ancestors 'none'``: no other site may
  frame the board or the docs (clickjacking), and nothing of the API is meant to be framed.
- ``X-Frame-Options: DENY`` for browsers that predate ``frame-ancestors``.
- ``X-Content-Type-Options: nosniff`` and ``Referrer-Policy: same-origin``.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

DEFAULT_CSP = "default-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
FIXED = {
    b"x-frame-options": b"DENY",
    b"x-content-type-options": b"nosniff",
    b"referrer-policy": b"same-origin",
}
CSP = b"content-security-policy"


def with_security_headers(headers: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """``headers`` (raw ASGI pairs) with the security headers added where they are missing."""
    present = {name.lower() for name, _ in headers}
    result = [(name, _framed(value) if name.lower() == CSP else value) for name, value in headers]
    result += [(name, value) for name, value in FIXED.items() if name not in present]
    if CSP not in present:
        result.append((CSP, DEFAULT_CSP.encode()))
    return result


def _framed(policy: bytes) -> bytes:
    if b"frame-ancestors" in policy:
        return policy
    return policy.rstrip(b"; ") + b"; frame-ancestors 'none'"


class SecurityHeaders:
    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {
                    **message,
                    "headers": with_security_headers(list(message.get("headers", []))),
                }
            await send(message)

        await self.app(scope, receive, send_with_headers)
