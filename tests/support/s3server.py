"""An S3 server for tests: moto's server mode (the real S3 HTTP protocol) on a free local port.

Real S3 evaluates a conditional write (``If-Match``, ``If-None-Match``) and the write itself as
one step. moto checks the condition and then writes in separate steps, so two requests handled
by two of its threads at once could both pass; this server therefore hands one request at a
time to moto (connections are still served by threads), which gives S3's atomicity.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from typing import Any

import boto3
from moto.moto_server.werkzeug_app import (
    DomainDispatcherApplication,
    MotoRequestHandler,
    create_backend_app,
)
from werkzeug.serving import make_server

ACCESS_KEY = "testing"
SECRET_KEY = "testing"
REGION = "us-east-1"


class _OneAtATime:
    def __init__(self, app: Any):
        self.app = app
        self.lock = threading.Lock()

    def __call__(
        self, environ: dict[str, Any], start_response: Callable[..., Any]
    ) -> Iterable[bytes]:
        with self.lock:
            return list(self.app(environ, start_response))


class S3Server:
    """``with S3Server() as s3: s3.endpoint_url``; ``s3.client()``; ``s3.bucket("name")``."""

    def __init__(self, host: str = "127.0.0.1"):
        logging.getLogger("werkzeug").setLevel(logging.WARNING)  # no line per request
        app = _OneAtATime(DomainDispatcherApplication(create_backend_app))
        self.server = make_server(host, 0, app, threaded=True, request_handler=MotoRequestHandler)
        self.host = host
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.02,), daemon=True)

    @property
    def endpoint_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def __enter__(self) -> S3Server:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def client(self) -> Any:
        return boto3.client(
            "s3",
            endpoint_url=self.endpoint_url,
            region_name=REGION,
            aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=SECRET_KEY,
        )

    def bucket(self, name: str) -> str:
        self.client().create_bucket(Bucket=name)
        return name

    def publish_settings(self) -> dict[str, Any]:
        """The ``publish`` settings section pointing at this server."""
        return {
            "s3_endpoint_url": self.endpoint_url,
            "s3_region": REGION,
            "s3_access_key_id": ACCESS_KEY,
            "s3_secret_access_key": SECRET_KEY,
        }
