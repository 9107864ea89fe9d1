"""The producer API's contract, against a real Redis, real yt-dlp and the local HTTP server:

- the OpenAPI document: every route in it with a unique camelCase operation id, a known tag, a
  summary, a declared success response (a schema or a media type) and ``ErrorResponse`` for
  its refusals; it validates (openapi-spec-validator) and every ``$ref`` resolves;
- ``GET /v1/jobs``: an opaque keyset cursor, stable while jobs are added; a malformed one is a
  422 ``request.invalid`` (``cursor_invalid``); ``next_cursor`` null on the last page;
- ``POST /v1/jobs`` fetches nothing: it records the job and sends ``recast.expand`` to the
  ingest queue; the expansion (run here in-process, as the task runs it) makes a playlist's
  job the parent of one job per entry, or schedules a single video's stages; a failed one
  fails the job with the source's code and is retried by ``retry``; each host of a request is
  resolved once;
- Redis down: 503 ``service.unavailable`` at once with Retry-After, the store not retrying;
  /healthz and /readyz answer at once too;
- an event's cards without a published index come in the index's own shape.
"""

from __future__ import annotations

import base64
import json
import logging
import re
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import redis
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from openapi_spec_validator import validate

from pipeline.core.card import CardStatus
from pipeline.core.errors import ErrorCode, RecastError
from pipeline.core.job import JobSpec
from pipeline.core.settings import Settings
from pipeline.engine.distributed.coordinator import Coordinator
from pipeline.engine.distributed.expansion import Expander, ExpandOutcome
from pipeline.engine.distributed.jobstore import Effects, JobPosition, JobRecord, JobStore
from pipeline.publish.cardbuilder import build_card
from pipeline.publish.events import EventIndex
from tests.conftest import make_settings
from tests.support.httpserver import MediaServer
from tests.support.publishing import make_info
from tests.support.workers import InlineDispatcher, RedisServer, free_port
from workers.api import create_api
from workers.api import cursor as cursors
from workers.dispatch import EXPAND_TASK
from workers.producer import Producer

TOKEN = "contract-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
JOB = "j0123456789abcdef0123"
TAGS = {"jobs", "cards", "ops", "board", "docs"}
HTTP_METHODS = {"get", "put", "post", "delete", "patch", "head", "options", "trace"}


@dataclass
class Api:
    settings: Settings
    client: TestClient
    store: JobStore
    server: MediaServer
    broker: redis.Redis
    inline: InlineDispatcher
    expander: Expander

    def submit(self, *urls: str, **body: Any) -> list[dict[str, Any]]:
        payload = {"url": urls[0]} if len(urls) == 1 else {"urls": list(urls)}
        response = self.client.post("/v1/jobs", json=payload | body, headers=AUTH)
        assert response.status_code == 202, response.text
        jobs: list[dict[str, Any]] = response.json()["jobs"]
        return jobs

    def job(self, job_id: str) -> dict[str, Any]:
        response = self.client.get(f"/v1/jobs/{job_id}", headers=AUTH)
        assert response.status_code == 200, response.text
        view: dict[str, Any] = response.json()
        return view

    def expansions_sent(self) -> list[str]:
        """Job ids of the ``recast.expand`` messages waiting in the ingest queue (kombu keeps
        a Redis list per queue and priority: ``ingest``, ``ingest:4``...)."""
        found = []
        for key in self.broker.scan_iter(match="ingest*"):
            if self.broker.type(key) != b"list":
                continue
            for raw in self.broker.lrange(key, 0, -1):
                message = json.loads(raw)
                assert message["properties"]["delivery_info"]["routing_key"] == "ingest"
                if message["headers"]["task"] == EXPAND_TASK:
                    _args, kwargs, _embed = json.loads(base64.b64decode(message["body"]))
                    found.append(kwargs["job_id"])
        return found


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    tmp = tmp_path_factory.mktemp("contract")
    with RedisServer(tmp / "redis") as redis_server, MediaServer(tmp / "www") as server:
        url = redis_server.url
        settings = make_settings(
            tmp,
            cluster={"redis_url": url, "broker_url": url, "result_backend": url},
            api={"tokens": [TOKEN]},
        )
        store = JobStore(settings.cluster)
        inline = InlineDispatcher()
        expander = Expander(Coordinator(settings, store, inline))
        client = TestClient(create_api(settings))  # the production path: its own producer
        yield Api(settings, client, store, server, redis.Redis.from_url(url), inline, expander)


# -- the OpenAPI document --------------------------------------------------------------------


def _resolve(spec: dict[str, Any], ref: str) -> Any:
    assert ref.startswith("#/"), ref
    node: Any = spec
    for part in ref[2:].split("/"):
        node = node[part]
    return node


def _refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                yield value
            else:
                yield from _refs(value)
    elif isinstance(node, list):
        for item in node:
            yield from _refs(item)


def _api_routes(routes: list[Any]) -> Iterator[APIRoute]:
    """The app's routes, those of included routers too (none is mounted under a prefix)."""
    for route in routes:
        if isinstance(route, APIRoute):
            yield route
        included = getattr(route, "original_router", None)
        if included is not None:
            yield from _api_routes(included.routes)


def test_every_route_is_documented_with_ids_tags_and_responses(api: Api) -> None:
    app = api.client.app
    spec = app.openapi()  # type: ignore[attr-defined]
    validate(spec)
    for ref in set(_refs(spec)):
        assert _resolve(spec, ref) is not None, ref

    operations = {
        (method, path): op
        for path, item in spec["paths"].items()
        for method, op in item.items()
        if method in HTTP_METHODS
    }
    routed = {
        (method.lower(), route.path)
        for route in _api_routes(app.routes)  # type: ignore[attr-defined]
        for method in route.methods or ()
    }
    assert routed == set(operations), "every route is in the document"

    ids = [op.get("operationId") for op in operations.values()]
    assert len(set(ids)) == len(ids), ids
    for (method, path), op in operations.items():
        where = f"{method.upper()} {path}"
        assert re.fullmatch(r"[a-z]+(?:[A-Z][a-z]*)*", op["operationId"]), where
        assert op.get("tags") and set(op["tags"]) <= TAGS, where
        assert op.get("summary"), where
        successes = {s: r for s, r in op["responses"].items() if s.startswith("2")}
        assert successes, where
        for status, response in successes.items():
            content = response.get("content") or {}
            assert content, f"{where} {status}: no content declared"
            for media_type, body in content.items():
                assert body.get("schema"), f"{where} {status} {media_type}"
        for status, response in op["responses"].items():
            json_body = (response.get("content") or {}).get("application/json", {})
            if status[0] in "45" and json_body:
                schema = json_body["schema"]
                names = {ref.rsplit("/", 1)[1] for ref in _refs(schema)}
                assert names & {"ErrorResponse", "Health", "Ready"}, f"{where} {status}"
        if path.startswith("/v1/"):
            assert {"401", "422"} <= set(op["responses"]), where
        assert "HTTPValidationError" not in json.dumps(op), f"{where}: refusals are ours"

    def success_schema(method: str, path: str, media_type: str = "application/json") -> Any:
        response = next(r for s, r in operations[method, path]["responses"].items() if s[0] == "2")
        return response["content"][media_type]["schema"]

    assert success_schema("get", "/v1/cards/{card_id}") == {"$ref": "#/components/schemas/Card"}
    events = success_schema("get", "/v1/events/{slug}/cards")
    assert events == {"$ref": "#/components/schemas/EventIndex"}
    assert "text/html" in operations["get", "/board"]["responses"]["200"]["content"]
    metrics = operations["get", "/metrics"]["responses"]["200"]["content"]
    assert [m.split(";")[0] for m in metrics] == ["text/plain"]
    assert {op["operationId"] for op in operations.values()} >= {
        "submitJobs",
        "listJobs",
        "getJob",
        "cancelJob",
        "retryJob",
        "retryFailedJobs",
        "getCard",
        "listEventCards",
        "oembed",
        "healthz",
        "readyz",
        "metrics",
    }


# -- the cursor ------------------------------------------------------------------------------


def _page(api: Api, **params: Any) -> tuple[list[str], str | None]:
    response = api.client.get("/v1/jobs", params=params, headers=AUTH)
    assert response.status_code == 200, response.text
    body = response.json()
    return [job["id"] for job in body["jobs"]], body["next_cursor"]


def test_the_cursor_stays_put_while_jobs_are_added(api: Api) -> None:
    event = "cursor-event"
    older = [
        job["id"]
        for job in api.submit(*[api.server.url(f"c/{i}.mp4") for i in range(7)], event=event)
    ]
    first, cursor = _page(api, event=event, limit=3)
    assert first == older[::-1][:3]
    assert cursor is not None and re.fullmatch(r"[A-Za-z0-9_-]+", cursor), "opaque, URL-safe"

    newer = [
        job["id"]
        for job in api.submit(*[api.server.url(f"c/new-{i}.mp4") for i in range(4)], event=event)
    ]
    second, cursor = _page(api, event=event, limit=3, cursor=cursor)
    assert second == older[::-1][3:6], "exactly the next older jobs: no repeat, no gap"
    third, cursor = _page(api, event=event, limit=3, cursor=cursor)
    assert third == older[:1] and cursor is None, "the last page has no next cursor"

    everything, cursor = _page(api, event=event, limit=11)
    assert everything == (older + newer)[::-1] and cursor is None, "an exact fit ends too"


def test_jobs_created_at_the_same_instant_are_each_listed_once(api: Api) -> None:
    moment = datetime(2026, 2, 14, 12, 0, tzinfo=UTC)

    def created_then(record: JobRecord) -> Effects:
        record.state.created_at = moment
        return Effects()

    ids = []
    for i in range(5):
        spec = JobSpec(source=f"https://example.org/tie/{i}.mp4", event="tie-event")
        ids.append(api.store.create(spec, [], created_then)[0].id)
    listed: list[str] = []
    cursor = None
    while True:
        page, cursor = _page(
            api, event="tie-event", limit=2, **({"cursor": cursor} if cursor else {})
        )
        listed += page
        if cursor is None:
            break
    assert listed == sorted(ids, reverse=True)
    position = cursors.decode(cursors.encode(JobPosition(moment.timestamp(), ids[0])))
    assert position == JobPosition(moment.timestamp(), ids[0])


@pytest.mark.parametrize(
    "cursor",
    [
        "3",  # an offset, as cursors were before
        "-1",
        "not base64!",
        base64.urlsafe_b64encode(b"[1.5]").decode(),
        base64.urlsafe_b64encode(b'{"a": 1, "b": 2}').decode(),
        base64.urlsafe_b64encode(b'[1e999, "j0123456789abcdef0123"]').decode(),
        base64.urlsafe_b64encode(b'[true, "j0123456789abcdef0123"]').decode(),
        base64.urlsafe_b64encode(b'[1.5, "../../etc"]').decode(),
        base64.urlsafe_b64encode(b"\xff\xfe").decode(),
        "A" * 150,
        "x" * 201,
    ],
)
def test_a_malformed_cursor_is_422_with_a_stable_code(api: Api, cursor: str) -> None:
    response = api.client.get("/v1/jobs", params={"cursor": cursor}, headers=AUTH)
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "request.invalid"
    assert error["details"][0]["loc"] == ["query", "cursor"]
    if len(cursor) <= cursors.MAX_CURSOR_CHARS:
        assert error["details"][0]["type"] == "cursor_invalid"


# -- submitting: nothing fetched in the request, the expansion on a worker --------------------


def _fetched(api: Api, prefix: str) -> list[str]:
    return [r.path for r in api.server.requests if r.path.startswith(prefix)]


def _playlist(server: MediaServer, name: str, entries: list[str]) -> str:
    videos = "".join(
        f'<video controls><source src="{server.url(e)}" type="video/mp4"></video>' for e in entries
    )
    return server.add(f"{name}/recordings.html", f"<html><body>{videos}</body></html>")


def test_a_playlist_is_expanded_by_a_worker_into_one_job_per_entry(api: Api) -> None:
    entries = ["pl/one.mp4", "pl/two.mp4", "pl/three.mp4"]
    page = _playlist(api.server, "pl", entries)
    body = {
        "event": "msc-2026",
        "priority": 7,
        "options": {"lang": "en"},
        "callback_url": api.server.url("hook"),
    }
    [submitted] = api.submit(page, **body)
    assert _fetched(api, "/pl/") == [], "the request fetched nothing"
    parent_id = submitted["id"]
    assert parent_id == JobSpec(source=page, **body).job_id
    assert submitted["status"] == "queued" and submitted["new"] is True
    assert api.expansions_sent().count(parent_id) == 1, "recast.expand on the ingest queue"
    waiting = api.job(parent_id)
    assert waiting["expansion"] == {"state": "expanding", "playlist": None, "children": []}
    assert waiting["stages"] == {}

    result = api.expander.expand(parent_id)
    assert result.outcome is ExpandOutcome.PLAYLIST and result.children == 3
    assert len(api.server.hits("pl/recordings.html")) == 1
    parent = api.job(parent_id)
    children = [JobSpec(source=api.server.url(e), **body).job_id for e in entries]
    assert parent["expansion"] == {"state": "succeeded", "playlist": True, "children": children}
    assert parent["status"] == "succeeded" and parent["progress"] == 100.0
    assert parent["stages"] == {}
    for child_id, entry in zip(children, entries, strict=True):
        child = api.job(child_id)
        assert child["source"] == api.server.url(entry) and child["expansion"] is None
        assert (child["status"], child["event"], child["priority"]) == ("queued", "msc-2026", 7)
        assert (child_id, "ingest") in api.inline.sent, "the entry's first stage was handed out"
    assert api.expander.expand(parent_id).outcome is ExpandOutcome.SKIPPED, "done once"

    [again] = api.submit(page, **body)
    assert again["id"] == parent_id and again["new"] is False
    assert api.expansions_sent().count(parent_id) == 1, "an expanded job is not sent again"
    [entry_job] = api.submit(api.server.url(entries[0]), **body)
    assert entry_job["id"] == children[0] and entry_job["new"] is False, "de-duplicated"


def test_a_single_video_url_runs_under_the_id_it_was_given(api: Api) -> None:
    url = api.server.add("single/talk.mp4", b"\0" * 2048, "video/mp4")
    [submitted] = api.submit(url)
    assert submitted["id"] == JobSpec(source=url).job_id
    assert _fetched(api, "/single/") == [], "the request fetched nothing"
    assert api.expander.expand(submitted["id"]).outcome is ExpandOutcome.SINGLE
    view = api.job(submitted["id"])
    assert view["expansion"] == {"state": "succeeded", "playlist": False, "children": []}
    assert view["status"] == "queued" and "ingest" in view["stages"]
    assert (submitted["id"], "ingest") in api.inline.sent


def test_a_failed_expansion_fails_the_job_with_the_sources_code_and_retries(api: Api) -> None:
    url = api.server.status("later/talk.mp4", 404)
    [submitted] = api.submit(url)
    job_id = submitted["id"]
    assert api.expander.expand(job_id).outcome is ExpandOutcome.FAILED
    failed = api.job(job_id)
    assert failed["status"] == "failed" and failed["error"]["code"] == "source.unavailable"
    assert failed["expansion"]["state"] == "failed"

    retried = api.client.post(f"/v1/jobs/{job_id}/retry", headers=AUTH)
    assert retried.status_code == 202, retried.text
    assert retried.json()["expansion"]["state"] == "expanding"
    assert api.expansions_sent().count(job_id) == 2, "the expansion was sent again"
    api.server.add("later/talk.mp4", b"\0" * 2048, "video/mp4")
    assert api.expander.expand(job_id).outcome is ExpandOutcome.SINGLE
    assert api.job(job_id)["expansion"]["state"] == "succeeded"


def test_cancelling_a_job_waiting_for_its_expansion_stops_it(api: Api) -> None:
    url = api.server.add("cancelled/talk.mp4", b"\0" * 2048, "video/mp4")
    [submitted] = api.submit(url)
    cancelled = api.client.post(f"/v1/jobs/{submitted['id']}/cancel", headers=AUTH)
    assert cancelled.status_code == 202, cancelled.text
    assert cancelled.json()["expansion"]["state"] == "cancelled"
    assert api.expander.expand(submitted["id"]).outcome is ExpandOutcome.SKIPPED
    assert _fetched(api, "/cancelled/") == []


def test_each_host_of_a_submission_is_resolved_once(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    looked_up: list[str] = []
    real = socket.getaddrinfo

    def counting(host: Any, *args: Any, **kwargs: Any) -> Any:
        looked_up.append(str(host))
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", counting)
    ingest = api.settings.ingest.model_copy(
        update={"allowed_private_networks": ["127.0.0.0/8", "::1/128"]}
    )
    producer = Producer(api.settings.model_copy(update={"ingest": ingest}), store=api.store)
    urls = [f"http://127.0.0.1:{api.server.port}/talk-{i}.mp4" for i in range(250)]
    urls += [f"http://localhost:{api.server.port}/talk-{i}.mp4" for i in range(250)]
    producer.check_all(urls, allow_local=False)
    assert sorted(looked_up) == ["127.0.0.1", "localhost"], "one look-up per host"

    looked_up.clear()
    refused = [*urls[:3], "http://10.0.0.1/a.mp4", "ftp://127.0.0.1/b.mp4"]
    with pytest.raises(RecastError) as raised:
        producer.check_all(refused, allow_local=False)
    assert raised.value.code is ErrorCode.SOURCE_FORBIDDEN
    assert "ftp" in str(raised.value), "what needs only the URL is refused before look-ups"
    assert looked_up == []


# -- Redis down --------------------------------------------------------------------------------


def test_redis_down_is_a_503_at_once_without_retrying(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    nowhere = f"redis://127.0.0.1:{free_port()}/0"
    settings = make_settings(
        tmp_path,
        cluster={
            "redis_url": nowhere,
            "broker_url": nowhere,
            "result_backend": nowhere,
            "redis_outage_s": 120,
        },
        api={"tokens": [TOKEN]},
    )
    client = TestClient(create_api(settings))
    caplog.set_level(logging.WARNING, logger="recast.jobstore")
    requests = [
        ("GET", f"/v1/jobs/{JOB}", None),
        ("GET", "/v1/jobs", None),
        ("POST", "/v1/jobs", {"url": "http://127.0.0.1:9/talk.mp4"}),
        ("POST", f"/v1/jobs/{JOB}/retry", None),
        ("POST", "/v1/jobs/retry?error=worker.lost", None),
    ]
    for method, path, body in requests:
        started = time.monotonic()
        response = client.request(method, path, json=body, headers=AUTH)
        took = time.monotonic() - started
        assert response.status_code == 503, (path, response.text)
        assert response.json()["error"]["code"] == "service.unavailable", path
        assert int(response.headers["retry-after"]) >= 1, path
        assert took < 5, f"{path} hung for {took:.1f} s"  # a hang guard: the outage is 120 s
    assert not [r for r in caplog.records if "retrying" in r.getMessage()], "no retry loop"

    for path, field in (("/healthz", "redis"), ("/readyz", "ready")):
        started = time.monotonic()
        response = client.get(path)
        assert response.status_code == 503 and response.json()[field] is False, path
        assert time.monotonic() - started < 5, path
    assert client.get("/healthz").json()["alerts"][0]["kind"] == "redis.down"


# -- an event's cards --------------------------------------------------------------------------


def test_an_events_cards_without_a_published_index_come_as_an_index(api: Api) -> None:
    card = build_card(
        make_info(source_id="contract1"),
        api.settings,
        status=CardStatus.PREVIEW,
        event="contract-event",
        poster=None,
        updated=datetime(2026, 2, 14, tzinfo=UTC),
    )
    card_dir = Path(api.settings.storage.output) / card.id
    card_dir.mkdir(parents=True, exist_ok=True)
    (card_dir / "card.json").write_text(card.to_json())

    def published(record: JobRecord) -> Effects:
        record.state.card_id = card.id
        return Effects()

    spec = JobSpec(source="https://www.youtube.com/watch?v=contract1", event="contract-event")
    api.store.create(spec, [], published)
    response = api.client.get("/v1/events/contract-event/cards", headers=AUTH)
    assert response.status_code == 200, response.text
    index = EventIndex.model_validate(response.json())
    assert [entry.id for entry in index.cards] == [card.id]
    assert index.event.slug == "contract-event"
    assert (
        api.client.get(f"/v1/cards/{card.id}", headers=AUTH).content
        == card_dir.joinpath("card.json").read_bytes()
    ), "a card's stored bytes, as they are"
