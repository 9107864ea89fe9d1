"""``api.max_body_bytes`` for every request, chunked ones included, before anything parses it.

:class:`BodyLimit` is a pure ASGI middleware, added last so that it wraps everything that can
read a body (FastAPI's parsing, the token check, every route). A request whose declared
Content-Length is over the limit is refused at once with 413, its body never read. A body sent
without a length (``Transfer-Encoding: chunked``) is counted as it is received: as soon as the
count passes the limit, reading stops and the answer is 413, whatever the application was doing
with the part it had. Nothing here holds more than the one message the server handed over.

The refusal is the API's JSON error (``request.too_large``) with ``Connection: close``, so the
server drops the connection instead of reading the rest of an upload nobody wants; any other
answer given before the body was read to its end (a 401 from a route that never reads it)
gets ``Connection: close`` too.
"""

from __future__ import annotations

from dataclasses import dataclass

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from pipeline.core.errors import ErrorCode
from workers.api import errors


class BodyTooLarge(Exception):
    """Raised into the application when it reads past the limit (it answers 413 instead)."""


@dataclass
class _Exchange:
    received: int = 0
    complete: bool = True
    """The whole request body has been received (or there is none)."""
    refused: bool = False
    started: bool = False


class BodyLimit:
    def __init__(self, app: ASGIApp, max_bytes: int):
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared, chunked = _framing(scope)
        if declared is not None and (declared < 0 or declared > self.max_bytes):
            await self._refuse(scope, receive, send)
            return
        exchange = _Exchange(complete=not chunked and not declared)

        async def counted_receive() -> Message:
            if exchange.refused:
                raise BodyTooLarge()
            message = await receive()
            if message["type"] == "http.request":
                exchange.received += len(message.get("body", b""))
                exchange.complete = not message.get("more_body", False)
                if exchange.received > self.max_bytes:
                    exchange.refused = True
                    raise BodyTooLarge()
            return message

        async def guarded_send(message: Message) -> None:
            if exchange.refused and not exchange.started:
                return  # the application's answer to a body it could not read: ours goes out
            if message["type"] == "http.response.start":
                exchange.started = True
                if not exchange.complete:  # answered without reading it all (a 401): hang up
                    message = {**message, "headers": [*message.get("headers", []), _CLOSE]}
            await send(message)

        try:
            await self.app(scope, counted_receive, guarded_send)
        except Exception:
            if not exchange.refused:
                raise
        if exchange.refused and not exchange.started:
            await self._refuse(scope, receive, send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = errors.error_response(
            ErrorCode.REQUEST_TOO_LARGE,
            f"Request bodies are limited to {self.max_bytes} bytes.",
            headers={"Connection": "close"},
        )
        await response(scope, receive, send)


_CLOSE = (b"connection", b"close")


def _framing(scope: Scope) -> tuple[int | None, bool]:
    """The declared Content-Length (-1 when unreadable, None when absent) and whether the body
    comes chunked."""
    declared: int | None = None
    chunked = False
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            text = value.decode("latin-1").strip()
            declared = int(text) if text.isdigit() else -1
        elif name == b"transfer-encoding":
            chunked = b"chunked" in value.lower()
    return declared, chunked
