"""The API's hardening, against a real Redis and a real ``recast api`` (uvicorn) process:

- the body limit holds for chunked bodies, before parsing and before the token check; a
  200 MB chunked upload without a token is refused at once and the server's memory stays put;
- the jobs board and job logs need a token (bearer header, or the board's login cookie) unless
  ``ops.public_board``; retry and cancel from the board always do;
- HTML answers carry a Content-Security-Policy with ``frame-ancestors``, X-Frame-Options and
  nosniff; /docs is Swagger UI from the API's own files (checked in Chromium too);
- ``pipeline.core.redact``: URLs shown on the board, by ``recast status`` / ``recast jobs`` and the
  API, and published in cards, carry no credentials or signatures.
"""

from __future__ import annotations

import asyncio
import contextlib
import html
import json
import os
import re
import select
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from fastapi.testclient import TestClient

from pipeline.cli import main as cli
from pipeline.core.card import Card, CardStatus
from pipeline.core.job import ErrorInfo, JobSpec, JobStatus, StageStatus
from pipeline.core.readers import read_source_info
from pipeline.core.redact import public_text, public_url
from pipeline.core.settings import CONFIG_FILE_ENV, Settings
from pipeline.engine.distributed.jobstore import Effects, JobRecord, JobStore
from pipeline.publish import webhooks
from pipeline.publish.cardbuilder import build_card
from pipeline.stages.publish import run_publish
from tests.conftest import make_settings
from tests.support.browser import chromium
from tests.support.httpserver import MediaServer
from tests.support.media import make_clip
from tests.support.publishing import JobMedia, make_info, make_job, stage_context
from tests.support.workers import RECAST, ROOT, RedisServer, free_port, wait_for, write_config
from tests.test_ingest import ingest, ingest_dir
from workers.api import create_api
from workers.api.auth import COOKIE, SESSION_S, Tokens
from workers.producer import Producer

TOKEN = "hardening-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
BOARD = {"X-Recast-Board": "1"}
LIMIT = 20_000
SECRET_SOURCE = (
    "https://editor:hunter2@cdn.example/talks/opening.mp4"
    "?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIAEXAMPLE%2F20260214"
    "&X-Amz-Signature=d3adb33fcafe&part=2#t=10"
)
SECRETS = ("hunter2", "editor:", "AKIAEXAMPLE", "d3adb33fcafe", "X-Amz")
PUBLIC_SOURCE = "https://cdn.example/talks/opening.mp4?part=2"
NOW = datetime(2026, 2, 14, 12, 0, tzinfo=UTC)


def assert_no_secrets(text: str) -> None:
    for secret in SECRETS:
        assert secret not in text, secret


# -- pipeline.core.redact -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "keep_query", "expected"),
    [
        (
            "https://www.youtube.com/watch?v=abc123&t=42",
            True,
            "https://www.youtube.com/watch?v=abc123&t=42",
        ),
        ("https://www.youtube.com/watch?v=abc123&t=42", False, "https://www.youtube.com/watch"),
        ("https://user:pw@example.org/a.mp4", True, "https://example.org/a.mp4"),
        ("https://user@example.org:8443/a.mp4", True, "https://example.org:8443/a.mp4"),
        ("https://us%40er:p%3Aw@example.org/a", True, "https://example.org/a"),
        ("http://a:b@[2001:db8::1]:8080/x?y=1", True, "http://[2001:db8::1]:8080/x?y=1"),
        ("https://example.org/a.mp4#secret-fragment", True, "https://example.org/a.mp4"),
        (SECRET_SOURCE, True, PUBLIC_SOURCE),
        (SECRET_SOURCE, False, "https://cdn.example/talks/opening.mp4"),
        (
            "https://storage.googleapis.com/b/o.mp4?X-Goog-Algorithm=GOOG4&x-goog-signature=ab&alt=media",
            True,
            "https://storage.googleapis.com/b/o.mp4?alt=media",
        ),
        (
            "https://d1.cloudfront.net/v.mp4?Expires=1&Signature=abc&Key-Pair-Id=K2&quality=hd",
            True,
            "https://d1.cloudfront.net/v.mp4?quality=hd",
        ),
        (
            "https://x.blob.core.windows.net/c/v.mp4?sv=2024&se=2026&sp=r&sig=abc%3D",
            True,
            "https://x.blob.core.windows.net/c/v.mp4?sv=2024&se=2026&sp=r",
        ),
        (
            "https://s3.amazonaws.com/b/v.mp4?AWSAccessKeyId=AKIA&Expires=1&Signature=x",
            True,
            "https://s3.amazonaws.com/b/v.mp4",
        ),
        (
            "https://api.example/v?id=7&token=t&apikey=k&API_KEY=k&access_token=a&auth=x"
            "&Password=p&client_secret=s&upload_token=u&session=s&sessionid=s&key=k&id2=8",
            True,
            "https://api.example/v?id=7&id2=8",
        ),
        (
            "https://api.example/v?X%2DAmz%2DSignature=abc&keep=1",
            True,
            "https://api.example/v?keep=1",
        ),
        (
            "https://api.example/v?flag&token&author=me&keywords=a",
            True,
            "https://api.example/v?flag&author=me&keywords=a",
        ),
        ("https://example.org/?", True, "https://example.org/"),
        ("/srv/media/talk.mp4", True, "/srv/media/talk.mp4"),
        ("file:///srv/media/talk.mp4?token=x", True, "file:///srv/media/talk.mp4"),
        ("http://u:p@[::1/x?token=1", True, "http://[::1/x"),
        ("", True, ""),
    ],
)
def test_public_url(url: str, keep_query: bool, expected: str) -> None:
    assert public_url(url, keep_query=keep_query) == expected


def test_public_text_redacts_every_url_in_a_message() -> None:
    message = f"ERROR: [generic] Unable to download {SECRET_SOURCE}: HTTP Error 403 (see https://a:b@x.example/?token=1)"
    assert public_text(message) == (
        f"ERROR: [generic] Unable to download {PUBLIC_SOURCE}: HTTP Error 403 "
        "(see https://x.example/)"
    )
    line = json.dumps({"message": f'fetching "{SECRET_SOURCE}"\nagain', "level": "INFO"})
    redacted = public_text(line)
    assert json.loads(redacted)["message"] == f'fetching "{PUBLIC_SOURCE}"\nagain'
    assert public_text("no links here") == "no links here"


# -- the API, in process (TestClient) against a real Redis --------------------------------


@dataclass
class Api:
    settings: Settings
    store: JobStore
    producer: Producer
    private: Any
    public: Any
    job: JobRecord
    config: Path

    def client(self, public: bool = False) -> TestClient:
        """A client with its own cookie jar."""
        return TestClient(self.public if public else self.private)


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    tmp = tmp_path_factory.mktemp("hardening")
    with RedisServer(tmp / "redis") as redis_server:
        url = redis_server.url
        settings = make_settings(
            tmp,
            cluster={"redis_url": url, "broker_url": url, "result_backend": url},
            api={"tokens": [TOKEN], "max_body_bytes": LIMIT},
            ops={"board_refresh_s": 0.3},
        )
        public = settings.model_copy(
            update={"ops": settings.ops.model_copy(update={"public_board": True})}
        )
        store = JobStore(settings.cluster)
        producer = Producer(settings, store=store)
        record, _ = producer.coordinator.submit(JobSpec(source=SECRET_SOURCE))
        yield Api(
            settings,
            store,
            producer,
            create_api(settings, producer),
            create_api(public, producer),
            record,
            write_config(tmp / "recast.toml", settings),
        )


def _board_paths(job_id: str) -> list[str]:
    return ["/board", "/board/fragments", f"/board/jobs/{job_id}/log"]


def test_board_and_job_log_need_a_token_unless_the_board_is_public(api: Api) -> None:
    client = api.client()
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN}):
        for path in _board_paths(api.job.id):
            response = client.get(path, headers=headers)
            assert response.status_code == 401, (path, headers)
    page = client.get("/board")
    assert page.headers["content-type"].startswith("text/html")
    assert 'name="token"' in page.text and 'action="/board/login"' in page.text
    refused = client.get("/board/fragments")
    assert refused.json()["error"]["code"] == "request.unauthorized"

    for path in _board_paths(api.job.id):
        assert client.get(path, headers=AUTH).status_code == 200, path
    log = client.get(f"/board/jobs/{api.job.id}/log", headers=AUTH).json()
    assert log["job_id"] == api.job.id and "ingest" in log["stages"]

    public = api.client(public=True)
    for path in _board_paths(api.job.id):
        assert public.get(path).status_code == 200, path
    # Acting from a public board still needs a token.
    assert public.post(f"/board/jobs/{api.job.id}/retry", headers=BOARD).status_code == 401
    assert public.get("/v1/jobs").status_code == 401


def test_board_login_cookie_opens_the_board_and_nothing_else(api: Api) -> None:
    client = api.client()
    wrong = client.post("/board/login", data={"token": "nope"}, follow_redirects=False)
    assert wrong.status_code == 401 and "set-cookie" not in wrong.headers
    assert "not valid" in wrong.text

    login = client.post("/board/login", data={"token": TOKEN}, follow_redirects=False)
    assert login.status_code == 303 and login.headers["location"] == "/board"
    cookie = login.headers["set-cookie"]
    attributes = {part.strip().split("=")[0].lower() for part in cookie.split(";")}
    assert {"httponly", "samesite", "path", "max-age"} <= attributes
    assert "SameSite=strict" in cookie and "Path=/board" in cookie
    assert f"Max-Age={SESSION_S}" in cookie
    value = client.cookies[COOKIE]
    assert TOKEN not in value

    for path in _board_paths(api.job.id):
        assert client.get(path).status_code == 200, path
    # The cookie is no API credential.
    assert client.get("/v1/jobs", headers={"Cookie": f"{COOKIE}={value}"}).status_code == 401
    # Acting with the cookie needs the board's header too (another site's form cannot add it).
    action = f"/board/jobs/{api.job.id}/cancel"
    assert client.post(action).status_code == 401
    assert api.store.get(api.job.id).state.status is JobStatus.QUEUED  # type: ignore[union-attr]
    cancelled = client.post(action, headers=BOARD)
    assert cancelled.status_code == 202, cancelled.text
    assert cancelled.json()["status"] == "cancelled"
    retried = client.post(f"/board/jobs/{api.job.id}/retry", headers=BOARD)
    assert retried.status_code == 202, retried.text
    assert client.post("/board/jobs/j0123456789abcdef0123/retry", headers=BOARD).status_code == 404

    # The board's own script logs in with JSON answers.
    scripted = api.client()
    ok = scripted.post("/board/login", data={"token": TOKEN}, headers=BOARD)
    assert ok.status_code == 200 and ok.json() == {"logged_in": True}
    assert scripted.post("/board/login", data={"token": "x"}, headers=BOARD).status_code == 401

    logout = client.post("/board/logout", follow_redirects=False)
    assert logout.status_code == 303 and COOKIE not in client.cookies
    assert client.get("/board").status_code == 401


def test_board_sessions_expire_and_cannot_be_forged(api: Api) -> None:
    tokens = Tokens([TOKEN])
    issued = time.time()
    value = tokens.session(TOKEN, now=issued)
    assert tokens.valid_session(value, now=issued + SESSION_S - 1)
    assert not tokens.valid_session(value, now=issued + SESSION_S + 1)
    assert not Tokens(["another-token"]).valid_session(value, now=issued)
    stamp, mac = value.split(".")
    forged = [f"{int(stamp) + 1}.{mac}", f"{stamp}.{'0' * len(mac)}", stamp, "", TOKEN]
    client = api.client()
    for cookie in forged:
        response = client.get("/board/fragments", headers={"Cookie": f"{COOKIE}={cookie}"})
        assert response.status_code == 401, cookie
    fresh = tokens.session(TOKEN)
    assert (
        client.get("/board/fragments", headers={"Cookie": f"{COOKIE}={fresh}"}).status_code == 200
    )


def _fail_with_secrets(api: Api) -> str:
    """A job that failed in ingest with the signed URL in its message and its log."""
    record, _ = api.producer.coordinator.submit(
        JobSpec(source=SECRET_SOURCE.replace("#", "&try=2#"))
    )
    message = f"Unable to download {SECRET_SOURCE}: HTTP Error 403"

    def fail(job: JobRecord) -> Effects:
        error = ErrorInfo(code="source.blocked", message=message)
        job.state.stages["ingest"].status = StageStatus.FAILED
        job.state.stages["ingest"].error = error
        job.state.status, job.state.error = JobStatus.FAILED, error
        return Effects()

    api.store.transact(record.id, fail)
    line = {"level": "INFO", "logger": "recast.tool.ytdlp", "message": message}
    api.store.redis.rpush(api.store.keys.job_log(record.id, "ingest"), json.dumps(line))
    return record.id


def test_board_api_and_cli_show_sources_without_credentials(
    api: Api, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    failed = _fail_with_secrets(api)
    client = api.client()
    board = client.get("/board", headers=AUTH)
    assert board.status_code == 200
    assert f'data-job="{api.job.id}"' in board.text and PUBLIC_SOURCE in board.text
    assert f"Unable to download {PUBLIC_SOURCE}: HTTP Error 403" in board.text  # message, tail
    assert board.text.count("Unable to download") == 2, "the error and the log tail"
    assert_no_secrets(board.text)
    log = client.get(f"/board/jobs/{failed}/log", headers=AUTH)
    assert PUBLIC_SOURCE in log.text
    assert_no_secrets(log.text)
    assert_no_secrets(client.get("/board/fragments", headers=AUTH).text)
    job = client.get(f"/v1/jobs/{api.job.id}", headers=AUTH).json()
    assert job["source"] == PUBLIC_SOURCE
    assert_no_secrets(client.get("/v1/jobs", headers=AUTH).text)
    assert api.store.get(api.job.id).state.spec.source == SECRET_SOURCE  # type: ignore[union-attr]

    monkeypatch.setenv(CONFIG_FILE_ENV, str(api.config))
    for command in (["jobs", "--json"], ["status", "--json"], ["jobs"]):
        capsys.readouterr()
        assert cli.main(["--config", str(api.config), *command]) == 0, command
        out = capsys.readouterr().out
        assert_no_secrets(out)
        if "--json" in command:
            assert PUBLIC_SOURCE in out, (command, out[:2000])


def _csp(response: httpx.Response) -> dict[str, str]:
    policy = response.headers["content-security-policy"]
    return {
        part.split(" ", 1)[0]: part.split(" ", 1)[1] if " " in part else ""
        for part in (p.strip() for p in policy.split(";"))
        if part
    }


def test_html_answers_carry_csp_and_frame_protection(api: Api) -> None:
    client = api.client()
    board = client.get("/board", headers=AUTH)
    policy = _csp(board)
    assert policy["frame-ancestors"] == "'none'"
    assert policy["default-src"] == "'none'"
    nonce = re.search(r"'nonce-([^']+)'", policy["script-src"])
    assert nonce and "unsafe" not in policy["script-src"] + policy["style-src"]
    assert re.findall(r"<script[^>]*>", board.text) == [f'<script nonce="{nonce.group(1)}">']
    assert f'<style nonce="{nonce.group(1)}">' in board.text
    assert (
        client.get("/board", headers=AUTH).headers["content-security-policy"]
        != (board.headers["content-security-policy"])
    ), "a fresh nonce per page"
    for response in (
        board,
        client.get("/board"),  # the login form
        client.get("/docs"),
        client.get("/readyz"),
        client.get("/v1/jobs"),
        client.post("/v1/jobs", content=b"x" * (LIMIT + 1)),
    ):
        assert response.headers["x-frame-options"] == "DENY", response.url
        assert response.headers["x-content-type-options"] == "nosniff", response.url
        assert _csp(response)["frame-ancestors"] == "'none'", response.url
    assert _csp(client.get("/readyz"))["default-src"] == "'none'"


class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.links: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.links += [v for k, v in attrs if k in ("src", "href") and v]


def test_docs_are_served_from_the_api_itself(api: Api) -> None:
    client = api.client()
    docs = client.get("/docs")
    assert docs.status_code == 200
    assert not re.search(r"https?://", docs.text), "the docs page names another host"
    parser = _Links()
    parser.feed(docs.text)
    assert len(parser.links) >= 4
    for link in parser.links:
        assert not urlsplit(link).netloc, link
        asset = client.get(link)
        assert asset.status_code == 200 and len(asset.content) > 100, link
    bundle = client.get("/docs/assets/swagger-ui-bundle.js")
    assert bundle.headers["content-type"].startswith("text/javascript")
    assert b"SwaggerUIBundle" in bundle.content
    assert client.get("/docs/assets/swagger-ui.css").headers["content-type"].startswith("text/css")
    policy = _csp(docs)
    assert policy["script-src"] == "'self'" and policy["connect-src"] == "'self'"
    assert client.get("/redoc").status_code == 404
    assert client.get("/docs/assets/..%2F..%2Fpyproject.toml").status_code == 404
    assert client.get("/openapi.json").status_code == 200


# -- the body limit --------------------------------------------------------------------------


def test_declared_oversized_bodies_are_refused_before_the_token_check(api: Api) -> None:
    client = api.client()
    for path in ("/v1/jobs", "/board/login", f"/v1/jobs/{api.job.id}/cancel"):
        response = client.post(path, content=b"{" + b" " * LIMIT + b"}")
        assert response.status_code == 413, path
        error = response.json()["error"]
        assert error["code"] == "request.too_large" and str(LIMIT) in error["message"]
        assert "max_body_bytes" in error["hint"]
        assert response.headers["connection"] == "close"


def _asgi_post(app: Any, path: str, headers: dict[str, str], chunks: int, size: int) -> Any:
    """POST ``chunks`` chunks of ``size`` bytes to the ASGI app (no Content-Length, as a
    chunked upload reaches it); returns (status, headers, body, chunks the app pulled)."""
    pulled = 0
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        nonlocal pulled
        if pulled >= chunks:
            await asyncio.sleep(3600)  # the client went quiet: nothing more comes
        pulled += 1
        return {"type": "http.request", "body": b" " * size, "more_body": pulled < chunks}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": [(b"host", b"testserver"), (b"transfer-encoding", b"chunked")]
        + [(k.lower().encode(), v.encode()) for k, v in headers.items()],
        "client": ("127.0.0.1", 50000),
        "server": ("testserver", 80),
    }
    asyncio.run(asyncio.wait_for(app(scope, receive, send), 30))
    start = next(m for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return start["status"], dict(start["headers"]), body, pulled


def test_chunked_bodies_are_counted_and_reading_stops_at_the_limit(api: Api) -> None:
    size = 1000
    for headers in ({}, AUTH, {"Content-Type": "application/json"} | AUTH):
        status, response_headers, body, pulled = _asgi_post(
            api.private, "/v1/jobs", headers, chunks=200_000, size=size
        )
        assert status == 413, body
        assert json.loads(body)["error"]["code"] == "request.too_large"
        assert pulled == LIMIT // size + 1, "read one chunk past the limit, then stopped"
        assert response_headers[b"connection"] == b"close"
    # Within the limit the body goes through whole: here to JSON parsing (not JSON: 422).
    status, _, body, pulled = _asgi_post(
        api.private, "/v1/jobs", AUTH | {"Content-Type": "application/json"}, chunks=5, size=size
    )
    assert status == 422 and pulled == 5
    assert json.loads(body)["error"]["code"] == "request.invalid"


# -- a real `recast api` process ---------------------------------------------------------------


@dataclass
class LiveApi:
    url: str
    port: int
    process: subprocess.Popen[bytes]


@pytest.fixture(scope="module")
def live_api(api: Api, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveApi]:
    """``recast api`` with the module's settings but the default body limit (1 MB)."""
    tmp = tmp_path_factory.mktemp("live-api")
    settings = api.settings.model_copy(
        update={"api": api.settings.api.model_copy(update={"max_body_bytes": 1_000_000})}
    )
    config = write_config(tmp / "recast.toml", settings)
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("RECAST_")}
    process = subprocess.Popen(
        [RECAST, "--config", str(config), "api", "--port", str(port)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    live = LiveApi(f"http://127.0.0.1:{port}", port, process)

    def ready() -> bool:
        assert process.poll() is None, "recast api exited"
        with contextlib.suppress(httpx.HTTPError):
            return httpx.get(f"{live.url}/readyz", timeout=2).status_code == 200
        return False

    try:
        wait_for(ready, 60, "recast api did not come up")
        yield live
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmRSS for {pid}")


@dataclass
class Upload:
    status: int
    seconds: float
    sent: int
    head: bytes


def _chunked_upload(port: int, path: str, total: int, chunk: int = 256 * 1024) -> Upload:
    """POST a chunked body of up to ``total`` bytes over a raw socket, sending until the
    response's head arrives (or the server hangs up); the time is until that answer."""
    payload = b"x" * chunk
    frame = f"{chunk:x}\r\n".encode() + payload + b"\r\n"
    head = (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
        "Transfer-Encoding: chunked\r\n\r\n"
    ).encode()
    answer = b""
    sent = 0
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(head)
        sock.setblocking(False)
        pending = b""
        while b"\r\n\r\n" not in answer and time.monotonic() - started < 30:
            wants_write = bool(pending) or sent < total
            readable, writable, _ = select.select([sock], [sock] if wants_write else [], [], 1)
            if readable:
                try:
                    data = sock.recv(65536)
                except ConnectionResetError:
                    break
                if not data:
                    break
                answer += data
                continue
            if writable:
                if not pending:
                    pending, sent = frame, sent + chunk
                try:
                    pending = pending[sock.send(pending) :]
                except (BrokenPipeError, ConnectionResetError):
                    break
        seconds = time.monotonic() - started
    match = re.match(rb"HTTP/1\.1 (\d{3})", answer)
    assert match, f"no answer after sending {sent} bytes: {answer[:200]!r}"
    return Upload(int(match.group(1)), seconds, sent, answer.split(b"\r\n\r\n")[0].lower())


def test_a_200_mb_chunked_upload_without_a_token_is_refused_at_once(
    api: Api, live_api: LiveApi
) -> None:
    total = 200 * 1024 * 1024
    before = _rss_bytes(live_api.process.pid)
    job = api.job.id
    for path in ("/v1/jobs", f"/v1/jobs/{job}/cancel", "/board/login", f"/board/jobs/{job}/retry"):
        upload = _chunked_upload(live_api.port, path, total)
        assert upload.status in (401, 413), (path, upload)
        assert upload.seconds < 1.0, (path, upload)
        assert upload.sent < total // 4, (path, upload)
        assert b"\r\nconnection: close" in upload.head, "the server hangs up on the rest"
    grown = _rss_bytes(live_api.process.pid) - before
    assert grown < 50 * 1024 * 1024, f"the API grew by {grown / 2**20:.1f} MB"
    assert live_api.process.poll() is None
    assert httpx.get(f"{live_api.url}/readyz").status_code == 200


@pytest.mark.slow
def test_board_login_and_docs_in_chromium(
    api: Api, live_api: LiveApi, tmp_path_factory: pytest.TempPathFactory
) -> None:
    record, _ = api.producer.coordinator.submit(
        JobSpec(source=SECRET_SOURCE.replace("#", "&copy=2#"))
    )
    with chromium(tmp_path_factory.mktemp("chromium-profile"), 1280, 900) as browser:
        page = browser.new_page()
        problems: list[str] = []
        refused: list[tuple[str, int]] = []
        page.on("pageerror", lambda e: problems.append(f"error: {e}"))
        page.on(
            "console",
            lambda m: (
                problems.append(m.text)
                if m.type == "error" and not m.text.startswith("Failed to load resource")
                else None
            ),
        )
        page.on(
            "response",
            lambda r: refused.append((urlsplit(r.url).path, r.status)) if r.status >= 400 else None,
        )
        page.on(
            "request",
            lambda r: (
                problems.append(f"elsewhere: {r.url}")
                if not r.url.startswith((live_api.url, "data:", "blob:"))
                else None
            ),
        )
        page.goto(f"{live_api.url}/docs")
        page.wait_for_selector(".opblock", timeout=15_000)
        assert page.locator(".opblock").count() >= 8
        assert problems == [] and refused == [], (problems, refused)

        page.goto(f"{live_api.url}/board")  # 401: the login form
        page.fill("#token", TOKEN)
        page.click("#login")
        page.wait_for_selector(f'tr.job[data-job="{record.id}"]', timeout=10_000)
        assert page.url == f"{live_api.url}/board"
        assert "recast_board" not in page.evaluate("document.cookie"), "the cookie is HttpOnly"
        source = page.locator(f'tr.job[data-job="{record.id}"] td.source').inner_text()
        assert source.startswith("https://cdn.example/talks/opening.mp4"), source
        assert_no_secrets(page.content())

        # The page's own script acts with the cookie; polling keeps working (CSP allows it).
        page.locator(f'tr.job[data-job="{record.id}"] button[data-action=cancel]').click()
        page.wait_for_function(
            "(id) => document.querySelector(`tr.job[data-job='${id}']`).dataset.status"
            " === 'cancelled'",
            arg=record.id,
            timeout=10_000,
        )
        # The notice is set when the POST answers, which a poll may overtake on a busy machine.
        page.wait_for_function(
            "() => document.querySelector('#notice').innerText.startsWith('cancel accepted')",
            timeout=10_000,
        )
        page.click("#token-forget")
        page.wait_for_function("() => document.getElementById('notice').className === 'refused'")
        assert problems == [], problems
        assert refused[0] == ("/board", 401)  # the login form
        assert set(refused[1:]) == {("/board/fragments", 401)}, refused


# -- published cards ---------------------------------------------------------------------------


def _published_text(out: Path, files: int) -> str:
    texts = [
        path.read_text(errors="replace")
        for path in sorted(out.rglob("*"))
        if path.is_file() and path.suffix in (".json", ".html", ".m3u8", ".vtt", ".txt")
    ]
    assert len(texts) >= files, "the card and its pages were published"
    return "\n".join(texts)


def test_a_card_from_a_credentialed_signed_url_publishes_neither(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, publish={"gc_grace_s": 0})
    info = make_info().model_copy(
        update={
            "extractor": "generic",
            "source_id": "opening",
            "webpage_url": SECRET_SOURCE,
            "uploader_url": "https://editor:hunter2@cdn.example/?token=d3adb33fcafe",
        }
    )
    job = make_job(JobMedia(tmp_path / "media", duration=2.0), settings, info=info)
    run_publish(stage_context(job, settings))
    webhooks.stop_dispatchers()
    out = Path(settings.storage.output)
    card = Card.model_validate_json((out / info.card_id / "card.json").read_text())
    assert card.source.url == "https://cdn.example/talks/opening.mp4"  # generic: no query
    assert card.source.uploader_url == "https://cdn.example/"
    assert card.pages is not None and card.pages.watch_html == card.link.href
    text = _published_text(out / info.card_id, files=6)  # card, pages, manifest, playlists
    assert_no_secrets(text)
    assert "opening.mp4" in text
    watch = (out / info.card_id / "watch.html").read_text()
    policy = re.search(r'<meta http-equiv="Content-Security-Policy" content="([^"]+)">', watch)
    assert policy and "default-src 'none'" in html.unescape(policy.group(1))
    assert watch.index("Content-Security-Policy") < watch.index("<link"), "before any load"

    # A recognised extractor keeps the query that names the video, not the credentials.
    youtube = make_info().model_copy(
        update={"webpage_url": "https://u:pw@www.youtube.com/watch?v=msc2026qt1&token=abc#t=1"}
    )
    preview = build_card(
        youtube, settings, status=CardStatus.PREVIEW, event=None, poster=None, updated=NOW
    )
    assert preview.source.url == "https://www.youtube.com/watch?v=msc2026qt1"
    assert preview.link.href == preview.source.url
    assert_no_secrets(preview.to_json())


def test_an_ingested_signed_url_is_fetched_whole_and_published_without_its_signature(
    tmp_path: Path,
) -> None:
    settings = make_settings(tmp_path)
    clip = make_clip(tmp_path / "clip.mp4", duration=1.0, size="160x90")
    with MediaServer(tmp_path / "www") as server:
        url = server.put_file("talks/opening.mp4", clip)
        signed = f"{url}?X-Amz-Credential=AKIAEXAMPLE&X-Amz-Signature=d3adb33fcafe&part=2"
        state = ingest(settings, signed)
    assert state.status is JobStatus.SUCCEEDED, state.error
    assert read_source_info(ingest_dir(settings, state)).webpage_url == signed, "fetched as given"
    card_dir = Path(settings.storage.output) / str(state.card_id)
    card = json.loads((card_dir / "card.json").read_text())
    assert card["source"]["url"] == url and card["link"]["href"] == url
    assert json.loads((card_dir / "source.json").read_text())["webpage_url"] == url
    assert_no_secrets(_published_text(card_dir, files=4))  # the preview card
