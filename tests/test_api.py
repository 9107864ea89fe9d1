"""The producer API's refusals, reads and health, against a real Redis (no workers needed):
tokens (401), the URL policy (422 source.forbidden), malformed input (422 request.invalid),
and a property-based test that no request gets a 500."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from pipeline.core.stage import Queue
from pipeline.engine.distributed.counters import JobCounter
from pipeline.engine.distributed.jobstore import JobStore
from tests.conftest import make_settings
from tests.support.workers import ROOT, RedisServer, free_port, wait_for, write_config
from workers.api import create_api
from workers.producer import Producer

TOKEN = "test-token-1"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
JOB = "j0123456789abcdef0123"


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[TestClient, JobStore, Path]]:
    tmp = tmp_path_factory.mktemp("api")
    with RedisServer(tmp / "redis") as redis_server:
        url = redis_server.url
        settings = make_settings(
            tmp,
            cluster={
                "redis_url": url,
                "broker_url": url,
                "result_backend": url,
                "redis_outage_s": 2,
            },
            ingest={"allowed_private_networks": []},
            api={"tokens": [TOKEN, "second-token"], "max_body_bytes": 20_000},
        )
        store = JobStore(settings.cluster)
        client = TestClient(create_api(settings, Producer(settings, store=store)))
        yield client, store, Path(settings.storage.output)


PROTECTED = [
    ("GET", "/v1/jobs"),
    ("POST", "/v1/jobs"),
    ("GET", f"/v1/jobs/{JOB}"),
    ("POST", f"/v1/jobs/{JOB}/cancel"),
    ("POST", f"/v1/jobs/{JOB}/retry"),
    ("POST", "/v1/jobs/retry?error=worker.lost"),
    ("GET", "/v1/cards/file-abc"),
    ("GET", "/v1/events/msc-2026/cards"),
]


@pytest.mark.parametrize(
    "headers", [{}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN}]
)
def test_missing_or_wrong_token_is_401(api: Any, headers: dict[str, str]) -> None:
    client = api[0]
    for method, path in PROTECTED:
        response = client.request(method, path, headers=headers, json={"url": "http://x.invalid"})
        assert response.status_code == 401, (method, path, response.text)
        assert response.json()["error"]["code"] == "request.unauthorized"
        assert response.headers["www-authenticate"] == "Bearer"


@pytest.mark.parametrize(
    "url",
    [
        "file:///etc/passwd",
        "/etc/passwd",
        "ftp://example.invalid/talk.mp4",
        "http://127.0.0.1:8080/talk.mp4",
        "http://localhost/talk.mp4",
        "http://10.1.2.3/talk.mp4",
        "http://192.168.0.10/talk.mp4",
        "http://169.254.169.254/latest/meta-data",
        "http://[::1]/talk.mp4",
        "http://user:pw@127.0.0.1/talk.mp4",
    ],
)
def test_file_and_private_urls_are_422_source_forbidden(api: Any, url: str) -> None:
    client, store, _ = api
    before = store.stats().get(JobCounter.SUBMITTED, 0)
    for body in ({"url": url}, {"urls": ["file:///tmp/x.mp4", url]}):
        response = client.post("/v1/jobs", json=body, headers=AUTH)
        assert response.status_code == 422, response.text
        error = response.json()["error"]
        assert error["code"] == "source.forbidden"
        assert error["message"] and error["hint"]
    assert store.stats().get(JobCounter.SUBMITTED, 0) == before  # nothing was created


@pytest.mark.parametrize(
    "body",
    [
        b"{not json",
        b"[]",
        b'"http://example.invalid/a.mp4"',
        b"{}",
        b'{"url": "http://a.invalid/x.mp4", "urls": ["http://a.invalid/y.mp4"]}',
        b'{"urls": []}',
        b'{"url": "http://a.invalid/x.mp4", "priority": 10}',
        b'{"url": "http://a.invalid/x.mp4", "priority": "high"}',
        b'{"url": "http://a.invalid/x.mp4", "event": "Not A Slug"}',
        b'{"url": "http://a.invalid/x.mp4", "colour": "red"}',
        b'{"url": "http://a.invalid/x.mp4", "options": {"a": {"nested": 1}}}',
        b'{"url": ""}',
        b'{"url": 42}',
    ],
)
def test_malformed_bodies_are_422(api: Any, body: bytes) -> None:
    response = api[0].post(
        "/v1/jobs", content=body, headers=AUTH | {"Content-Type": "application/json"}
    )
    assert response.status_code == 422, response.text
    assert response.json()["error"]["code"] == "request.invalid"


def test_oversized_body_is_413(api: Any) -> None:
    urls = [f"http://a.invalid/{i:05}-{'x' * 200}.mp4" for i in range(200)]
    response = api[0].post("/v1/jobs", json={"urls": urls}, headers=AUTH)
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "request.too_large"


def test_unknown_ids_and_bad_parameters(api: Any) -> None:
    client = api[0]
    for method, path in [
        ("GET", f"/v1/jobs/{JOB}"),
        ("POST", f"/v1/jobs/{JOB}/cancel"),
        ("POST", f"/v1/jobs/{JOB}/retry"),
        ("GET", "/v1/cards/youtube-abc123"),
        ("GET", "/v1/events/no-such-event/cards"),
        ("GET", "/v1/nothing-here"),
    ]:
        response = client.request(method, path, headers=AUTH)
        assert response.status_code == 404, (path, response.text)
        assert response.json()["error"]["code"] == "request.not_found"
    for path in [
        "/v1/jobs/not-a-job-id",
        "/v1/cards/..%2F..%2Fetc",
        "/v1/jobs?state=exploded",
        "/v1/jobs?limit=0",
        "/v1/jobs?cursor=-1",
        "/v1/jobs?since=yesterday",
        "/v1/jobs?event=Bad%20Slug",
    ]:
        response = client.get(path, headers=AUTH)
        assert response.status_code in (404, 422), (path, response.text)
    response = client.post("/v1/jobs/retry?error=not.a.code", headers=AUTH)
    assert response.status_code == 422
    response = client.post("/v1/jobs/retry?error=worker.lost", headers=AUTH)
    assert response.status_code == 200 and response.json() == {"retried": []}
    response = client.get("/oembed", params={"url": "http://cms.invalid/nothing/watch.html"})
    assert response.status_code == 404
    response = client.get("/oembed", params={"url": "http://x.invalid/a", "format": "xml"})
    assert response.status_code == 501


def test_cards_are_read_from_storage(api: Any) -> None:
    client, _, output = api
    card_dir = output / "file-0123abcd"
    card_dir.mkdir(parents=True, exist_ok=True)
    (card_dir / "card.json").write_text(json.dumps({"id": "file-0123abcd", "status": "ready"}))
    response = client.get("/v1/cards/file-0123abcd", headers=AUTH)
    assert response.status_code == 200
    assert response.json() == {"id": "file-0123abcd", "status": "ready"}
    events = output / "events"
    events.mkdir(exist_ok=True)
    (events / "msc-2026.json").write_text(json.dumps({"event": "msc-2026", "cards": []}))
    response = client.get("/v1/events/msc-2026/cards", headers=AUTH)
    assert response.status_code == 200 and response.json()["event"] == "msc-2026"


def test_health_needs_redis_and_a_worker_per_queue(api: Any) -> None:
    client, store, _ = api
    assert client.get("/readyz").status_code == 200
    response = client.get("/healthz")
    assert response.status_code == 503
    assert response.json()["redis"] is True
    assert response.json()["queues"]["transcode"] == []
    store.worker_alive("media@h", ["ingest", "publish", "transcode", "media"], ttl_s=30)
    assert client.get("/healthz").status_code == 503  # nobody consumes asr
    store.worker_alive("asr@h", ["asr"], ttl_s=30)
    response = client.get("/healthz")
    assert response.status_code == 200, response.text
    assert response.json()["queues"] == {
        q.value: ["asr@h"] if q is Queue.ASR else ["media@h"] for q in Queue
    }
    store.worker_gone("asr@h")
    store.worker_gone("media@h")


def test_openapi_lists_the_endpoints(api: Any) -> None:
    client = api[0]
    assert client.get("/docs").status_code == 200
    paths = client.get("/openapi.json").json()["paths"]
    assert {
        "/v1/jobs",
        "/v1/jobs/{job_id}",
        "/v1/jobs/{job_id}/cancel",
        "/v1/jobs/{job_id}/retry",
        "/v1/jobs/retry",
        "/v1/cards/{card_id}",
        "/v1/events/{slug}/cards",
        "/oembed",
        "/healthz",
        "/readyz",
    } <= set(paths)


# -- property: no input gets a 500 ------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=30),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=12,
)
url_like = st.one_of(
    st.text(max_size=60),
    st.builds(
        lambda scheme, host, path: f"{scheme}://{host}/{path}",
        st.sampled_from(["http", "https", "file", "ftp", "HTTP", "javascript", ""]),
        st.sampled_from(["127.0.0.1", "10.0.0.1", "[::1]", "a.invalid", "", "x" * 300, "%00"]),
        st.text(max_size=20),
    ),
)
submit_bodies = st.one_of(
    json_values,
    st.fixed_dictionaries(
        {},
        optional={
            "url": url_like | json_values,
            "urls": st.lists(url_like, max_size=3) | json_values,
            "event": st.text(max_size=20) | json_values,
            "priority": st.integers(-5, 20) | json_values,
            "options": st.dictionaries(st.text(max_size=8), json_values, max_size=3) | json_values,
            "callback_url": url_like,
            "force": json_values,
        },
    ),
)
segments = st.one_of(
    st.just(JOB), st.text(max_size=25), st.sampled_from(["..", "%2e%2e", "j" + "0" * 20])
)
requests = st.one_of(
    st.tuples(st.just("POST"), st.just("/v1/jobs"), st.just({}), submit_bodies),
    st.tuples(
        st.sampled_from(["GET", "POST", "DELETE", "PUT"]),
        st.builds(
            lambda template, segment: template.format(quote(segment, safe="")),
            st.sampled_from(
                [
                    "/v1/jobs/{}",
                    "/v1/jobs/{}/cancel",
                    "/v1/jobs/{}/retry",
                    "/v1/cards/{}",
                    "/v1/events/{}/cards",
                    "/v1/{}",
                ]
            ),
            segments,
        ),
        st.just({}),
        st.none(),
    ),
    st.tuples(
        st.just("GET"),
        st.sampled_from(["/v1/jobs", "/oembed", "/healthz", "/readyz"]),
        st.dictionaries(
            st.sampled_from(
                ["state", "event", "since", "cursor", "limit", "url", "format", "maxwidth"]
            ),
            st.text(max_size=30) | st.integers(-(10**20), 10**20).map(str),
            max_size=4,
        ),
        st.none(),
    ),
    st.tuples(
        st.just("POST"),
        st.just("/v1/jobs/retry"),
        st.dictionaries(st.just("error"), st.text(max_size=20), max_size=1),
        st.none(),
    ),
)


@hsettings(
    max_examples=250,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@pytest.mark.slow
@given(request=requests, authorised=st.booleans())
def test_no_request_gets_a_500(api: Any, request: Any, authorised: bool) -> None:
    method, path, params, body = request
    headers = AUTH if authorised else {}
    kwargs: dict[str, Any] = {"params": params, "headers": headers}
    if body is not None:
        kwargs["content"] = json.dumps(body).encode()
        kwargs["headers"] = headers | {"Content-Type": "application/json"}
    response = api[0].request(method, path, **kwargs)
    assert response.status_code != 500, (method, path, params, body, response.text)
    assert response.status_code < 500 or response.status_code in (501, 503)
    assert response.headers["content-type"].startswith(("application/json", "text/html"))


@pytest.mark.slow
def test_recast_api_serves_and_refuses_to_start_without_tokens(tmp_path: Path, api: Any) -> None:
    store: JobStore = api[1]
    recast = str(Path(sys.executable).parent / "recast")
    settings = make_settings(tmp_path, cluster={"redis_url": store.settings.redis_url})
    config = write_config(tmp_path / "recast.toml", settings)
    env = {k: v for k, v in os.environ.items() if not k.startswith("RECAST_")}
    refused = subprocess.run(
        [recast, "--config", str(config), "api"], env=env, capture_output=True, timeout=60
    )
    assert refused.returncode == 2 and b"api.tokens" in refused.stderr
    port = free_port()
    env["RECAST_API__TOKENS"] = '["from-env"]'
    server = subprocess.Popen(
        [recast, "--config", str(config), "api", "--port", str(port)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        base = f"http://127.0.0.1:{port}"

        def ready() -> bool:
            try:
                return httpx.get(f"{base}/readyz", timeout=2).status_code == 200
            except httpx.HTTPError:
                return server.poll() is not None

        wait_for(ready, 60, "recast api did not come up")
        assert server.poll() is None
        jobs = httpx.get(f"{base}/v1/jobs", headers={"Authorization": "Bearer from-env"})
        assert jobs.status_code == 200 and "jobs" in jobs.json()
        assert httpx.get(f"{base}/v1/jobs").status_code == 401
        assert httpx.get(f"{base}/docs").status_code == 200
    finally:
        server.terminate()
        server.wait(timeout=20)
