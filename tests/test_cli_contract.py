"""The producer's command line agrees with the API: ``--version``, ``--json`` on every command
(errors as JSON on stdout with the same exit status), ``recast job`` exit statuses, and the
``--api URL --token`` mode against the real API (uvicorn in a thread) on a real Redis, which must
print what the Redis mode prints. No worker runs: jobs stay queued, or their state is set."""

from __future__ import annotations

import argparse
import contextlib
import importlib.metadata
import json
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from fastapi import FastAPI

from pipeline.cli.main import build_parser, main
from pipeline.core.job import ErrorInfo, JobSpec, JobStatus, StageStatus
from pipeline.core.settings import Settings
from pipeline.engine.distributed.jobstore import Effects, JobRecord, JobStore
from tests.conftest import make_settings
from tests.support.httpserver import MediaServer
from tests.support.workers import (
    RedisServer,
    cluster_test_settings,
    free_port,
    wait_for,
    write_config,
)
from workers import apiclient
from workers.api import create_api
from workers.producer import Producer

TOKEN = "cli-contract-token"
REFUSE_JSON = {"worker", "api"}
"""Commands that run until stopped: they refuse --json (their log lines are JSON)."""


@dataclass
class Cluster:
    settings: Settings
    config: Path
    store: JobStore
    producer: Producer
    api_url: str
    tmp: Path

    def job(self, name: str, **spec: Any) -> str:
        """A job submitted straight to the coordinator (stages known at once), left queued."""
        record, _ = self.producer.coordinator.submit(
            JobSpec(source=f"http://127.0.0.1:9/{name}.mp4", **spec)
        )
        return record.id

    def settle(self, job_id: str, status: JobStatus, code: str | None = None) -> None:
        """Set a job's outcome as a worker would have (every stage done, or ingest failed)."""

        def change(record: JobRecord) -> Effects:
            state = record.state
            if code is None:
                for stage in state.stages.values():
                    stage.status, stage.progress = StageStatus.DONE, 100.0
            else:
                error = ErrorInfo(code=code, message=f"it failed with {code}")
                state.stages["ingest"].status = StageStatus.FAILED
                state.stages["ingest"].error = error
                state.error = error
            state.status = status
            return Effects()

        self.store.transact(job_id, change)


@contextlib.contextmanager
def served(app: FastAPI) -> Iterator[str]:
    """The app under uvicorn in a thread on a free port; yields its base URL."""
    port = free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, lifespan="off")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        wait_for(lambda: server.started, 20, "uvicorn did not start")
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    tmp = tmp_path_factory.mktemp("cli-contract")
    with RedisServer(tmp / "redis") as redis_server:
        settings = make_settings(
            tmp, cluster=cluster_test_settings(redis_server.url), api={"tokens": [TOKEN]}
        )
        config = write_config(tmp / "recast.toml", settings)
        store = JobStore(settings.cluster)
        producer = Producer(settings, store=store)
        with served(create_api(settings, producer)) as url:
            yield Cluster(settings, config, store, producer, url, tmp)


@dataclass
class Ran:
    code: int
    out: str
    err: str

    @property
    def json(self) -> Any:
        return json.loads(self.out)  # one JSON document, nothing else on stdout


Recast = Callable[..., Ran]


@pytest.fixture
def recast(
    cluster: Cluster, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> Recast:
    """``recast ARGS`` in this process; ``api=True`` goes through the API (--api, --token)."""
    monkeypatch.setenv("RECAST_CONFIG", str(cluster.config))
    for name in ("RECAST_API_URL", "RECAST_API_TOKEN"):
        monkeypatch.delenv(name, raising=False)

    def run(*args: str, api: bool = False) -> Ran:
        capsys.readouterr()
        through = ["--api", cluster.api_url, "--token", TOKEN] if api else []
        code = main([*through, *args])
        said = capsys.readouterr()
        return Ran(code, said.out, said.err)

    return run


def _leaves(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()) -> Iterator[Any]:
    """Every runnable command: (its words, its parser)."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                yield from _leaves(child, (*path, name))
            return
    yield path, parser


# -- --version and --json everywhere ------------------------------------------------------------


def test_version_is_one_line_with_recast_yt_dlp_and_ffmpeg(
    capsys: pytest.CaptureFixture[str],
) -> None:
    recast, ytdlp = importlib.metadata.version("recast"), importlib.metadata.version("yt-dlp")
    for argv in (["--version"], ["--json", "--version"]):
        with pytest.raises(SystemExit) as exited:
            main(argv)
        assert exited.value.code == 0
    line, *found = capsys.readouterr().out.splitlines()
    assert line.startswith(f"recast {recast} (yt-dlp {ytdlp}, ffmpeg "), line
    assert "not found" not in line
    versions = json.loads("\n".join(found))
    assert set(versions) == {"recast", "yt_dlp", "ffmpeg", "python"}
    assert (versions["recast"], versions["yt_dlp"]) == (recast, ytdlp)
    assert f"ffmpeg {versions['ffmpeg']}, " in line


def test_every_command_offers_json_and_worker_and_api_refuse_it(
    recast: Recast, monkeypatch: pytest.MonkeyPatch
) -> None:
    leaves = dict(_leaves(build_parser()))
    assert ("jobs",) in leaves and ("models", "path") in leaves  # the walk finds them
    for words, parser in leaves.items():
        assert "--json" in parser._option_string_actions, f"recast {' '.join(words)} lacks --json"
    # Were the refusal broken, both would stop at once on a setting instead of running on.
    monkeypatch.setenv("RECAST_API__TOKENS", "[]")
    for command in REFUSE_JSON:
        argv = [command, "-Q", "no-such-queue"] if command == "worker" else [command]
        for ran in (recast("--json", *argv), recast(*argv, "--json")):
            assert ran.code == 2
            error = ran.json["error"]
            assert error["code"] == "request.invalid"
            assert f"recast {command} has no JSON output" in error["message"]
            assert "runs until stopped" in error["message"]


@pytest.mark.parametrize(
    "argv",
    [
        ["schema"],
        ["models", "path"],
        ["webhooks", "status"],
        ["webhooks", "deliver"],
        ["jobs"],
        ["health"],
        ["status"],
    ],
)
def test_global_json_prints_one_document(recast: Recast, argv: list[str]) -> None:
    before = recast("--json", *argv)
    after = recast(*argv, "--json")
    assert before.code == after.code == 0, before.err
    assert isinstance(before.json, dict)
    if argv not in (["status"], ["webhooks", "status"]):  # those carry the time
        assert before.out == after.out


def test_errors_are_json_on_stdout_with_the_same_exit_status(recast: Recast) -> None:
    missing = "j" + "0" * 20
    for api in (False, True):
        quiet = recast("job", missing, "--json", api=api)
        assert (quiet.code, quiet.err) == (1, "")
        assert quiet.json["error"]["code"] == "request.not_found"
        assert missing in quiet.json["error"]["message"] and quiet.json["error"]["hint"]
        said = recast("job", missing, api=api)
        assert (said.code, said.out) == (1, "")
        assert said.err.startswith(f"error request.not_found: There is no job {missing}")
    usage = recast("--json", "jobs", "--state", "bogus")
    assert usage.code == 2 and usage.json["error"]["code"] == "request.invalid"
    assert "invalid choice: 'bogus'" in usage.json["error"]["message"]
    plain = recast("jobs", "--state", "bogus")
    assert plain.code == 2 and plain.out == "" and "invalid choice: 'bogus'" in plain.err


# -- recast job: exit statuses --------------------------------------------------------------------


@pytest.mark.parametrize("api", [False, True], ids=["redis", "api"])
def test_job_exit_status_follows_the_outcome(recast: Recast, cluster: Cluster, api: bool) -> None:
    mode = "api" if api else "redis"
    queued = cluster.job(f"exit-queued-{mode}")
    assert recast("job", queued, "--json", api=api).code == 3
    outcomes = {
        (JobStatus.SUCCEEDED, None): 0,
        (JobStatus.FAILED, "source.unavailable"): 2,  # the input's fault
        (JobStatus.FAILED, "network.timeout"): 1,
    }
    for (status, code), expected in outcomes.items():
        job_id = cluster.job(f"exit-{status}-{code}-{mode}")
        cluster.settle(job_id, status, code)
        ran = recast("job", job_id, "--json", api=api)
        assert (ran.code, ran.json["status"]) == (expected, status), ran.out
        assert (ran.json["error"] or {}).get("code") == code
        human = recast("job", job_id, api=api)
        assert human.code == expected and f"{job_id}  {status}" in human.out
    cancelled = recast("cancel", queued, "--json", api=api)
    assert cancelled.code == 0 and cancelled.json["status"] == "cancelled"
    assert recast("job", queued, api=api).code == 1
    again = recast("cancel", queued, "--json", api=api)
    assert again.code == 1 and again.json["error"]["code"] == "request.conflict"


def test_submit_wait_through_the_api_polls_until_the_job_ends(
    recast: Recast, cluster: Cluster
) -> None:
    url = "http://127.0.0.1:9/followed.mp4"
    job_id = JobSpec(source=url, event="followed").job_id
    stop = threading.Timer(1.0, cluster.producer.cancel, [job_id])
    stop.start()
    try:
        ran = recast("submit", url, "--event", "followed", "--wait", "--json", api=True)
    finally:
        stop.cancel()
    assert ran.code == 1, ran.out + ran.err
    [job] = ran.json["jobs"]
    assert (job["id"], job["status"], job["new"]) == (job_id, "cancelled", True)
    assert job["error"]["code"] == "job.cancelled"


def test_a_playlist_job_answers_for_its_entries(recast: Recast, cluster: Cluster) -> None:
    [submitted] = cluster.producer.submit(["http://127.0.0.1:9/playlist"])
    parent = submitted.record.id
    entries = [cluster.job(f"entry-{n}") for n in range(2)]

    def expanded(record: JobRecord) -> Effects:  # what a worker's expansion leaves
        assert record.expansion is not None
        record.expansion.playlist, record.expansion.children = True, list(entries)
        record.state.status = JobStatus.SUCCEEDED
        return Effects()

    cluster.store.transact(parent, expanded)
    redis, api = recast("job", parent, "--json"), recast("job", parent, "--json", api=True)
    assert redis.out == api.out
    assert redis.code == api.code == 3, "the parent succeeded, its entries have not"
    assert redis.json["expansion"]["children"] == entries
    assert [e["id"] for e in redis.json["entries"]] == entries
    cluster.settle(entries[0], JobStatus.SUCCEEDED)
    cluster.settle(entries[1], JobStatus.FAILED, "source.unavailable")
    for through_api in (False, True):
        followed = recast("job", parent, "--follow", "--json", api=through_api)
        assert followed.code == 2, "an entry failed on its input"
        statuses = [e["status"] for e in followed.json["entries"]]
        assert statuses == ["succeeded", "failed"]


# -- --api mode agrees with Redis -----------------------------------------------------------------


def test_jobs_through_the_api_are_the_jobs_in_redis(
    recast: Recast, cluster: Cluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("a", "b", "c"):
        cluster.job(f"listed-{name}", event="listed")
    cluster.settle(cluster.job("listed-failed", event="listed"), JobStatus.FAILED, "worker.lost")
    for argv in (
        ["jobs", "--json"],
        ["jobs", "--json", "--event", "listed"],
        ["jobs", "--json", "--state", "failed"],
        ["jobs", "--json", "--limit", "2"],
        ["jobs", "--event", "listed"],  # the table too
    ):
        redis, api = recast(*argv), recast(*argv, api=True)
        assert redis.code == api.code == 0, api.err
        assert redis.out == api.out, argv
    listed = recast("jobs", "--json", "--event", "listed").json["jobs"]
    assert len(listed) == 4 and all(j["event"] == "listed" for j in listed)
    # Pages of one job: the cursor the API hands out is passed back as it came.
    monkeypatch.setattr(apiclient, "MAX_PAGE", 1)
    paged = recast("jobs", "--json", "--event", "listed", "--limit", "3", api=True).json["jobs"]
    assert [j["id"] for j in paged] == [j["id"] for j in listed[:3]]


def test_submit_through_the_api_makes_the_job_redis_mode_finds(
    recast: Recast, cluster: Cluster
) -> None:
    url = "http://127.0.0.1:9/submitted.mp4"
    through_api = recast("submit", url, "--event", "submitted", "--json", api=True)
    assert through_api.code == 0, through_api.out + through_api.err
    [job] = through_api.json["jobs"]
    assert job["new"] is True and job["status"] == "queued" and job["event"] == "submitted"
    assert cluster.store.get(job["id"]) is not None
    direct = recast("submit", url, "--event", "submitted", "--json")
    assert direct.json["jobs"] == [job | {"new": False}]
    said = recast("submit", url, "--event", "submitted", api=True)
    assert said.out.startswith(f"{job['id']}  queued  {url}") and "(submitted before)" in said.out
    local = recast("submit", str(cluster.tmp / "talk.mp4"), "--json", api=True)
    assert local.code == 2 and local.json["error"]["code"] == "source.forbidden"
    slug = recast("submit", url, "--event", "Not A Slug", "--json", api=True)
    assert slug.code == 2 and slug.json["error"]["code"] == "request.invalid"


def test_retry_through_the_api(recast: Recast, cluster: Cluster) -> None:
    lost = [cluster.job(f"lost-{n}") for n in range(2)]
    for job_id in lost:
        cluster.settle(job_id, JobStatus.FAILED, "stage.stalled")
    batch = recast("retry", "--error", "stage.stalled", "--json", api=True)
    assert batch.code == 0 and sorted(batch.json["retried"]) == sorted(lost)
    assert {recast("job", j, "--json").json["status"] for j in lost} == {"queued"}
    one = cluster.job("retried-one")
    cluster.settle(one, JobStatus.FAILED, "network.timeout")
    retried = recast("retry", one, "--json", api=True)
    assert retried.code == 0 and retried.json["status"] == "queued"
    neither = recast("retry", "--json", api=True)
    assert neither.code == 2 and neither.json["error"]["code"] == "request.invalid"


def test_health_through_the_api_and_redis(recast: Recast) -> None:
    redis, api = recast("health", "--json"), recast("health", "--json", api=True)
    assert redis.code == api.code == 0
    assert redis.json == api.json == {"redis": True, "workers": {}}
    for through_api in (False, True):
        absent = recast("health", "--worker", "nobody@host", "--json", api=through_api)
        assert absent.code == 1 and absent.json["error"]["code"] == "service.unavailable"


def test_api_mode_reads_the_environment(
    recast: Recast, cluster: Cluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RECAST_API_URL", cluster.api_url)
    monkeypatch.setenv("RECAST_API_TOKEN", TOKEN)
    monkeypatch.setenv("RECAST_CONFIG", str(cluster.tmp / "missing.toml"))  # no Redis settings
    ran = recast("jobs", "--json")
    assert ran.code == 0 and isinstance(ran.json["jobs"], list), ran.err
    # Commands that have no API mode are not turned away by the variables, only by --api.
    assert recast("--api", cluster.api_url, "status").code == 2


def test_api_failures_have_stable_codes_and_exit_1(
    recast: Recast, cluster: Cluster, tmp_path: Path
) -> None:
    def via(url: str, *token: str) -> Ran:
        return recast("--api", url, *token, "jobs", "--json")

    wrong = via(cluster.api_url, "--token", "wrong")
    assert (wrong.code, wrong.json["error"]["code"]) == (1, "request.unauthorized")
    assert "refused the token" in wrong.json["error"]["message"]
    missing = via(cluster.api_url)
    assert (missing.code, missing.json["error"]["code"]) == (1, "request.unauthorized")
    closed = via(f"http://127.0.0.1:{free_port()}", "--token", TOKEN)
    assert (closed.code, closed.json["error"]["code"]) == (1, "api.unreachable")
    said = recast("--api", f"http://127.0.0.1:{free_port()}", "--token", TOKEN, "jobs")
    assert said.code == 1 and said.err.startswith("error api.unreachable: The API at")
    with MediaServer(tmp_path / "www") as server:
        server.add("v1/jobs", "<html>a proxy's page</html>")
        stranger = via(server.url(""), "--token", TOKEN)
    assert (stranger.code, stranger.json["error"]["code"]) == (1, "api.unreachable")
    redis_down = make_settings(
        tmp_path,
        cluster=cluster_test_settings(f"redis://127.0.0.1:{free_port()}/0", redis_outage_s=0.0),
        api={"tokens": [TOKEN]},
    )
    with served(create_api(redis_down)) as url:
        down = via(url, "--token", TOKEN)
    assert (down.code, down.json["error"]["code"]) == (1, "service.unavailable")
