"""A local threaded HTTP server for tests: files with range requests, pages, redirects, chosen
error statuses, a switch that makes it refuse (403, 429 with Retry-After...) every request or
the next few, by host name, and a log of every request it got, with its host and times. yt-dlp
runs against it for real."""

from __future__ import annotations

import mimetypes
import re
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

mimetypes.add_type("application/vnd.apple.mpegurl", ".m3u8")
mimetypes.add_type("text/vtt", ".vtt")
mimetypes.add_type("video/mp2t", ".ts")
mimetypes.add_type("video/iso.segment", ".m4s")
mimetypes.add_type("application/x-subrip", ".srt")


@dataclass
class Response:
    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    stream: Iterable[bytes] | None = None
    """Sent instead of ``body``, piece by piece, with no Content-Length, the connection closed
    at its end: a server that does not say how much it sends. The log's ``bytes_sent`` is then
    what was written before the end or before the client hung up."""


@dataclass
class LoggedRequest:
    method: str
    path: str
    status: int
    bytes_sent: int
    range: str | None
    host: str = ""
    """The Host header's name, without the port."""
    started: float = 0.0
    """When the request arrived (time.monotonic())."""
    ended: float = 0.0
    """When the answer had been sent."""


@dataclass
class Refusal:
    """What :meth:`MediaServer.refuse` answers instead of the content."""

    status: int
    headers: dict[str, str]
    hosts: frozenset[str] | None
    """Only requests to these host names (Host header); None: every request."""
    remaining: int | None
    """Requests left to refuse; None: until :meth:`MediaServer.allow`."""

    def applies(self, host: str) -> bool:
        return (self.remaining is None or self.remaining > 0) and (
            self.hosts is None or host in self.hosts
        )


Route = Callable[["_Handler"], Response]


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_HEAD(self) -> None:
        self._serve(head=True)

    def do_GET(self) -> None:
        self._serve(head=False)

    def _serve(self, head: bool) -> None:
        started = time.monotonic()
        path = self.path.split("?", 1)[0]
        host = (self.headers.get("Host") or "").rsplit(":", 1)[0].lower()
        refusal = self._refusal(host)
        if refusal is not None:
            response = Response(refusal.status, b"refused", dict(refusal.headers))
        else:
            route = self.server.routes.get(path)
            response = route(self) if route is not None else self._file(path)
        body = response.body
        status = response.status
        headers = dict(response.headers)
        range_header = self.headers.get("Range")
        if status == 200 and range_header and "Content-Range" not in headers:
            match = re.fullmatch(r"bytes=(\d*)-(\d*)", range_header.strip())
            if match:
                start = int(match.group(1) or 0)
                end = int(match.group(2)) if match.group(2) else len(body) - 1
                end = min(end, len(body) - 1)
                if start <= end:
                    headers["Content-Range"] = f"bytes {start}-{end}/{len(body)}"
                    body = body[start : end + 1]
                    status = 206
        headers.setdefault("Content-Type", "application/octet-stream")
        headers["Content-Length"] = str(len(body))
        headers.setdefault("Accept-Ranges", "bytes")
        if response.stream is not None:
            del headers["Content-Length"], headers["Accept-Ranges"]
            headers["Connection"] = "close"
            self.close_connection = True
        self.send_response(status)
        for key, value in headers.items():
            self.send_header(key, value)
        self.end_headers()
        sent = 0
        if response.stream is not None and not head:
            sent = self._send_stream(response.stream)
        elif not head:
            try:
                self.wfile.write(body)
                sent = len(body)
            except (BrokenPipeError, ConnectionResetError):
                sent = -1
        with self.server.lock:
            self.server.log.append(
                LoggedRequest(
                    self.command,
                    path,
                    status,
                    sent,
                    range_header,
                    host=host,
                    started=started,
                    ended=time.monotonic(),
                )
            )

    def _refusal(self, host: str) -> Refusal | None:
        with self.server.lock:
            refusal = self.server.refusal
            if refusal is None or not refusal.applies(host):
                return None
            if refusal.remaining is not None:
                refusal.remaining -= 1
            return refusal

    def _send_stream(self, pieces: Iterable[bytes]) -> int:
        sent = 0
        try:
            for piece in pieces:
                self.wfile.write(piece)
                self.wfile.flush()
                sent += len(piece)
        except (BrokenPipeError, ConnectionResetError):
            pass
        return sent

    def _file(self, path: str) -> Response:
        target = (self.server.root / path.lstrip("/")).resolve()
        if self.server.root not in target.parents or not target.is_file():
            return Response(404, b"not found", {"Content-Type": "text/plain"})
        ctype = mimetypes.guess_type(target.name)[0] or "application/octet-stream"
        return Response(200, target.read_bytes(), {"Content-Type": ctype})


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    root: Path
    routes: dict[str, Route]
    log: list[LoggedRequest]
    lock: threading.Lock
    refusal: Refusal | None


class MediaServer:
    """Serves ``root`` on ``host`` (default 127.0.0.1) on a free port."""

    def __init__(self, root: Path, host: str = "127.0.0.1"):
        self.root = root.resolve()
        self.root.mkdir(parents=True, exist_ok=True)
        self.httpd = _Server((host, 0), _Handler)
        self.httpd.root = self.root
        self.httpd.routes = {}
        self.httpd.log = []
        self.httpd.lock = threading.Lock()
        self.httpd.refusal = None
        self.host = host
        self.port = self.httpd.server_address[1]
        # A short poll: shutdown() waits for the loop to notice, 0.5 s per server by default.
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.02,), daemon=True)

    def __enter__(self) -> MediaServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def url(self, path: str) -> str:
        return f"http://{self.host}:{self.port}/{path.lstrip('/')}"

    def add(
        self, path: str, data: bytes | str, content_type: str = "text/html; charset=utf-8"
    ) -> str:
        """Serve fixed content at ``path``; returns its URL."""
        body = data.encode() if isinstance(data, str) else data
        self.route(path, lambda _h: Response(200, body, {"Content-Type": content_type}))
        return self.url(path)

    def route(self, path: str, handler: Route) -> str:
        self.httpd.routes["/" + path.lstrip("/")] = handler
        return self.url(path)

    def status(self, path: str, status: int, headers: dict[str, str] | None = None) -> str:
        return self.route(path, lambda _h: Response(status, b"error", dict(headers or {})))

    def redirect(self, path: str, location: str, status: int = 302) -> str:
        return self.route(path, lambda _h: Response(status, b"", {"Location": location}))

    def put_file(self, relative: str, source: Path) -> str:
        target = self.root / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(source.read_bytes())
        return self.url(relative)

    def refuse(
        self,
        status: int,
        headers: dict[str, str] | None = None,
        *,
        hosts: tuple[str, ...] | None = None,
        times: int | None = None,
    ) -> None:
        """Answer ``status`` (with ``headers``: ``{"Retry-After": "2"}``) instead of anything,
        to requests for ``hosts`` (every host when None), the next ``times`` (or all) of them."""
        with self.httpd.lock:
            self.httpd.refusal = Refusal(
                status,
                dict(headers or {}),
                frozenset(hosts) if hosts is not None else None,
                times,
            )

    def allow(self) -> None:
        """Stop refusing: answer as the routes and files say."""
        with self.httpd.lock:
            self.httpd.refusal = None

    @property
    def requests(self) -> list[LoggedRequest]:
        with self.httpd.lock:
            return list(self.httpd.log)

    def hits(self, path: str, method: str = "GET") -> list[LoggedRequest]:
        path = "/" + path.lstrip("/")
        return [r for r in self.requests if r.path == path and r.method == method]
