"""Local proxies for tests, each logging what it was asked for.

- :class:`ForwardProxy`: HTTP requests in absolute form (``GET http://host/path``) are relayed
  to their origin and answered whole. Plain HTTP only (no CONNECT): the test servers are.
- :class:`Socks5Proxy`: SOCKS5 CONNECT without authentication, bytes relayed both ways.
"""

from __future__ import annotations

import contextlib
import http.client
import socket
import socketserver
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

HOP_BY_HOP = frozenset(
    {"connection", "keep-alive", "proxy-connection", "proxy-authorization", "te", "upgrade"}
)


@dataclass(frozen=True)
class ProxiedRequest:
    method: str
    url: str
    status: int
    at: float
    """time.monotonic() when the request arrived."""


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        self._relay()

    def do_HEAD(self) -> None:
        self._relay()

    def _relay(self) -> None:
        arrived = time.monotonic()
        target = urlsplit(self.path)
        if target.scheme != "http" or not target.hostname:
            self._answer(400, {}, b"absolute http URL expected", arrived)
            return
        path = target.path or "/"
        if target.query:
            path += "?" + target.query
        headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
        origin = http.client.HTTPConnection(target.hostname, target.port or 80, timeout=10)
        try:
            origin.request(self.command, path, headers=headers)
            response = origin.getresponse()
            body = response.read()
            relayed = {
                k: v
                for k, v in response.getheaders()
                if k.lower() not in HOP_BY_HOP | {"transfer-encoding", "content-length"}
            }
            status = response.status
        except OSError as exc:
            status, relayed, body = 502, {}, str(exc).encode()
        finally:
            origin.close()
        self._answer(status, relayed, body, arrived)

    def _answer(self, status: int, headers: dict[str, str], body: bytes, arrived: float) -> None:
        # Logged before answering: a client may act on the answer (and a test read the log)
        # before this thread would get past the write.
        with self.server.lock:
            self.server.log.append(ProxiedRequest(self.command, self.path, status, arrived))
        self.send_response(status)
        for key, value in headers.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)
        self.close_connection = True


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    log: list[ProxiedRequest]
    lock: threading.Lock


class ForwardProxy:
    """A forward proxy on ``host`` (default 127.0.0.1), on a free port."""

    def __init__(self, host: str = "127.0.0.1"):
        self.httpd = _Server((host, 0), _Handler)
        self.httpd.log = []
        self.httpd.lock = threading.Lock()
        self.url = f"http://{host}:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.02,), daemon=True)

    def __enter__(self) -> ForwardProxy:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    @property
    def requests(self) -> list[ProxiedRequest]:
        with self.httpd.lock:
            return list(self.httpd.log)


class _SocksHandler(socketserver.BaseRequestHandler):
    server: _SocksServer

    def handle(self) -> None:
        client: socket.socket = self.request
        client.settimeout(10)
        try:
            greeting = _read(client, 2)
            _read(client, greeting[1])  # the methods offered; "no authentication" is taken
            client.sendall(b"\x05\x00")
            version, command, _reserved, kind = _read(client, 4)
            if kind == 1:
                host = socket.inet_ntoa(_read(client, 4))
            elif kind == 3:
                host = _read(client, _read(client, 1)[0]).decode()
            else:
                client.sendall(b"\x05\x08\x00\x01" + bytes(6))
                return
            port = int.from_bytes(_read(client, 2), "big")
            with self.server.lock:
                self.server.log.append(f"{host}:{port}")
            if version != 5 or command != 1:
                client.sendall(b"\x05\x07\x00\x01" + bytes(6))
                return
            target = socket.create_connection((host, port), timeout=10)
        except OSError:
            return
        with target:
            client.sendall(b"\x05\x00\x00\x01" + bytes(6))
            pump = threading.Thread(target=_pipe, args=(target, client), daemon=True)
            pump.start()
            _pipe(client, target)
            pump.join(timeout=10)


def _read(sock: socket.socket, count: int) -> bytes:
    data = b""
    while len(data) < count:
        piece = sock.recv(count - len(data))
        if not piece:
            raise ConnectionError("closed mid-message")
        data += piece
    return data


def _pipe(source: socket.socket, sink: socket.socket) -> None:
    try:
        while piece := source.recv(65536):
            sink.sendall(piece)
    except OSError:
        pass
    finally:
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_WR)


class _SocksServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    log: list[str]
    lock: threading.Lock


class Socks5Proxy:
    """A SOCKS5 proxy (no authentication, CONNECT only) on ``host``, on a free port, logging
    the ``host:port`` of every connection it was asked for."""

    def __init__(self, host: str = "127.0.0.1"):
        self.server = _SocksServer((host, 0), _SocksHandler)
        self.server.log = []
        self.server.lock = threading.Lock()
        self.url = f"socks5://{host}:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.02,), daemon=True)

    def __enter__(self) -> Socks5Proxy:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    @property
    def connections(self) -> list[str]:
        with self.server.lock:
            return list(self.server.log)
