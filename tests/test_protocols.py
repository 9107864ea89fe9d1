"""No stringly protocols: a re-run marks stages ``reused`` (a flag, not a ``detail`` text) and
the metrics count them as such; every Redis key is spelled by one module
(pipeline.engine.distributed.keys) and every counter name built and parsed by one
(pipeline.engine.distributed.counters); language tags go through langcodes.

The Redis tests run against a real redis-server; the distributed executor's store, coordinator
and stage runner are the production ones, with the broker replaced by a list the test drains.
"""

from __future__ import annotations

import ast
import itertools
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from pipeline.core import languages
from pipeline.core.dag import Dag
from pipeline.core.errors import ErrorCode
from pipeline.core.job import JobSpec, JobStatus
from pipeline.core.settings import Settings
from pipeline.core.stage import Queue, Stage, StageContext, StageResult
from pipeline.core.workspace import Workspace
from pipeline.engine.distributed import counters, keys
from pipeline.engine.distributed.coordinator import Coordinator
from pipeline.engine.distributed.counters import (
    Counter,
    CounterKind,
    HistogramName,
    JobCounter,
    Measure,
    Stats,
)
from pipeline.engine.distributed.hostgate import RedisHostGate
from pipeline.engine.distributed.jobstore import Effects, JobRecord, JobStore
from pipeline.engine.distributed.keys import LAYOUT, RedisKeys
from pipeline.engine.distributed.stagerun import StageRunner
from pipeline.ops.joblog import JobLogHandler
from pipeline.ops.metrics import MetricsRecorder, record_stage_run
from pipeline.ops.opsview import OpsView
from pipeline.ops.prometheus import render
from tests.conftest import make_settings
from tests.support.workers import (
    ROOT,
    InlineDispatcher,
    RedisServer,
    cluster_test_settings,
    run_inline,
)


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    with RedisServer(tmp_path_factory.mktemp("redis")) as server:
        yield server


def _settings(tmp: Path, redis_url: str, prefix: str) -> Settings:
    return make_settings(tmp, cluster=cluster_test_settings(redis_url, key_prefix=prefix))


# -- the reuse flag ------------------------------------------------------------------------------


def _writer(name: str, detail: str) -> Stage:
    def run(ctx: StageContext) -> StageResult:
        (ctx.out / f"{name}.txt").write_text(f"made by {name}")
        return StageResult.done(ctx.out, detail=detail)

    queue = Queue.INGEST if name == "fetch" else Queue.TRANSCODE
    return Stage(name=name, queue=queue, run=run, requires=() if name == "fetch" else ("fetch",))


def _run_job(coordinator: Coordinator, runner: StageRunner, spec: JobSpec) -> JobRecord:
    record, _ = run_inline(coordinator, runner, spec, timeout=20)
    assert record is not None and record.state.status is JobStatus.SUCCEEDED, record
    return record


def test_a_rerun_marks_stages_reused_and_metrics_count_them_so(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    settings = _settings(tmp_path, redis_server.url, "reuse")
    # A stage's human text that reads like the old protocol changes nothing.
    dag = Dag.of([_writer("fetch", "already done elsewhere"), _writer("encode", "")])
    store = JobStore(settings.cluster)
    coordinator = Coordinator(settings, store, InlineDispatcher(), dag=dag)
    runner = StageRunner(coordinator)
    recorder = MetricsRecorder(store.redis, store.prefix)
    spec = JobSpec(source="https://example.org/talk")
    workspace = Workspace.for_job(settings.storage.workspace, spec.job_id)

    first = _run_job(coordinator, runner, spec)
    assert not any(s.reused for s in first.state.stages.values())
    assert all(record_stage_run(recorder, dag, first, n, workspace) for n in dag.names)

    store.forget(spec.job_id)  # the store forgot the job; its workspace is still there
    again = _run_job(coordinator, runner, spec)
    assert all(again.stage(n).reused for n in dag.names), again.state.stages
    assert not any(record_stage_run(recorder, dag, again, n, workspace) for n in dag.names)

    stats = Stats(store.stats())
    assert stats.stage_reuses() == {"fetch": 1, "encode": 1}
    assert stats.stage_completions() == {"fetch": 1, "encode": 1}, "reuse is no completion"
    timings = recorder.histograms(HistogramName.STAGE_SECONDS)
    assert {stage: h.count for stage, h in timings.items()} == {"fetch": 1.0, "encode": 1.0}

    text = render(OpsView(settings, store, dag)).decode()
    reuses = {
        sample.labels["stage"]: sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "recast_stage_reuses_total"
    }
    assert reuses == {"fetch": 1.0, "encode": 1.0}


# -- one owner for counter names -----------------------------------------------------------------


def test_counter_names_round_trip_through_their_owner() -> None:
    made = [
        *(Counter(CounterKind.JOBS, job=c) for c in JobCounter),
        Counter(CounterKind.FAILURES, code=ErrorCode.SOURCE_BLOCKED),
        Counter(CounterKind.STAGE_COMPLETED, stage="transcode"),
        Counter(CounterKind.STAGE_REUSED, stage="probe"),
        Counter(CounterKind.STAGE_ERRORS, stage="ingest", code=ErrorCode.SOURCE_BLOCKED),
        Counter(CounterKind.WORKER_LOST),
    ]
    for counter in made:
        assert Counter.parse(counter.name) == counter, counter.name
    assert counters.stage_errors("ingest", "source.blocked") == made[-2].name
    for stranger in ("jobs", "stages.x", "stages.x.errors", "errors.", "metrics|x", ""):
        assert Counter.parse(stranger) is None, stranger
    with pytest.raises(ValueError, match="stage name"):
        counters.stage_completed("a.b")

    stats = Stats({c.name: i + 1 for i, c in enumerate(made)})
    assert stats.jobs(JobCounter.RETRIED) == 5
    assert stats.failures_by_code() == {"source.blocked": 6}
    assert stats.stage_reuses() == {"probe": 8}
    assert stats.stage_errors() == {("ingest", "source.blocked"): 9}
    assert stats.attempts_failed_with(ErrorCode.SOURCE_BLOCKED) == 9
    assert stats.worker_lost() == 10
    for status in counters.FINISHED_JOB_STATUSES:
        assert counters.job_finished(status).value == f"jobs.{status}"

    for measure, stage in ((Measure.DOWNLOADED_BYTES, None), (Measure.TRANSCODE_WALL_SECONDS, "t")):
        assert counters.parse_measure_field(counters.measure_field(measure, stage)) == (
            measure,
            stage,
        )
    assert counters.parse_histogram_field(counters.histogram_field("probe", "+Inf")) == (
        "probe",
        "+Inf",
    )


# -- one owner for Redis keys --------------------------------------------------------------------

KEY_OWNER = ROOT / "pipeline" / "engine" / "distributed" / "keys.py"
REDIS_COMMANDS = frozenset(
    {
        *("get", "set", "delete", "exists", "expire", "pexpire", "ttl", "mget", "keys"),
        *("hget", "hgetall", "hincrby", "hincrbyfloat", "xadd", "xrevrange", "scan_iter"),
        *("zadd", "zrem", "zcard", "zscore", "zrange", "zrevrange", "zrangebyscore"),
        *("zrevrangebyscore", "rpush", "lrange", "ltrim"),
    }
)


def _names_a_prefix(node: ast.expr) -> bool:
    name = node.attr if isinstance(node, ast.Attribute) else getattr(node, "id", "")
    return str(name).endswith("prefix")


def _spelled_keys(path: Path, *, check_calls: bool) -> list[str]:
    """Places in ``path`` that spell a Redis key: ``f"{prefix}:..."``, ``":".join(...)``, or
    (with ``check_calls``) a Redis command on a literal or f-string key."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        where = f"{path}:{getattr(node, 'lineno', 0)}"
        if isinstance(node, ast.JoinedStr):
            parts = node.values
            for value, after in itertools.pairwise(parts):
                if (
                    isinstance(value, ast.FormattedValue)
                    and _names_a_prefix(value.value)
                    and isinstance(after, ast.Constant)
                    and str(after.value).startswith(":")
                ):
                    found.append(f"{where}: f-string key")
        if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Attribute):
            continue
        func = node.func
        if func.attr == "join" and isinstance(func.value, ast.Constant) and func.value.value == ":":
            found.append(f"{where}: ':'.join key")
        receiver = ast.unparse(func.value)
        if (
            check_calls
            and func.attr in REDIS_COMMANDS
            and receiver.endswith(("redis", "client", "pipe"))
            and node.args
            and isinstance(node.args[0], ast.JoinedStr | ast.Constant)
        ):
            found.append(f"{where}: {receiver}.{func.attr} on a spelled key")
    return found


def test_no_redis_key_is_spelled_outside_the_key_module() -> None:
    problems = []
    for top in ("pipeline", "workers", "bench", "tests"):
        for path in sorted((ROOT / top).rglob("*.py")):
            if path != KEY_OWNER:
                # tests also read the broker's own keys (kombu's), which are not Recast's
                problems += _spelled_keys(path, check_calls=top != "tests")
    assert problems == []


def test_the_checker_finds_a_spelled_key(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text(
        'def f(redis, prefix, job):\n    redis.get(f"{prefix}:job:{job}")\n'
        '    return ":".join((prefix, "x"))\n'
    )
    assert len(_spelled_keys(sample, check_calls=True)) == 3


def test_every_key_in_redis_belongs_to_the_documented_layout(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    prefix = "layout"
    settings = _settings(tmp_path, redis_server.url, prefix)
    store = JobStore(settings.cluster)
    spec = JobSpec(source="https://example.org/a", event="msc-2026")
    record, _ = store.create(spec, ["ingest"], lambda r: Effects(dispatch={"ingest": 0.0}))
    assert store.acquire(record.id, "ingest", "token")
    assert store.renew(record.id, "ingest", "token")
    store.set_cancelled(record.id)
    store.worker_alive("w1@host", ["ingest"], ttl_s=30)
    assert store.lease("reaper", "me", ttl_s=30)
    MetricsRecorder(store.redis, prefix).record_stage(
        "transcode", 2.0, media_seconds=4.0, downloaded_bytes=10
    )
    view = OpsView(settings, store)
    view.report_worker("w1@host", ["ingest"], 2)
    RedisHostGate(store, settings.sources.backoff).refuse("example.org", record.id, "HTTP 429", 60)
    view.snapshot()
    handler = JobLogHandler(store.redis, prefix, settings.ops)
    line = {"name": "recast.stage.ingest", "msg": "hello", "levelno": 20, "levelname": "INFO"}
    handler.handle(logging.makeLogRecord({**line, "job_id": record.id, "stage": "ingest"}))
    handler.flush()

    found = {k.decode() for k in store.redis.scan_iter(match=f"{prefix}*")}
    owner = RedisKeys(prefix)
    assert {k for k in found if owner.kind_of(k) is None} == set()
    assert {owner.kind_of(k) for k in found} == {kind for kind, _ in LAYOUT}
    assert all(f"    {kind} " in (keys.__doc__ or "") for kind, _ in LAYOUT), "documented once"
    assert owner.event_of(owner.jobs_by_event("msc-2026")) == "msc-2026"
    assert owner.event_of(owner.jobs) is None


# -- one language table --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("tag", "normal", "base", "label"),
    [
        ("en-US", "en-US", "en", "English (US)"),
        ("pt-BR", "pt-BR", "pt", "Portuguese (BR)"),
        ("pt_br", "pt-BR", "pt", "Portuguese (BR)"),
        ("zh-Hant", "zh-Hant", "zh", "Chinese (Hant)"),
        ("zh-hant-tw", "zh-Hant-TW", "zh", "Chinese (Hant-TW)"),
        ("iw", "he", "he", "Hebrew"),
        ("in", "id", "id", "Indonesian"),
        ("en-orig", "en", "en", "English"),
        ("de", "de", "de", "German"),
        ("yue", "yue", "yue", "Cantonese"),
    ],
)
def test_language_tags_through_langcodes(tag: str, normal: str, base: str, label: str) -> None:
    assert languages.normalise(tag) == normal
    assert languages.base(tag) == base
    assert languages.label(tag) == label


def test_what_is_not_a_language_tag() -> None:
    for text in ("live_chat", "english", "not a tag", "", "e"):
        assert languages.normalise(text) is None, text
        assert languages.label(text) == text
    assert languages.label("qx") == "qx", "a well-formed but unknown code is shown as it is"
