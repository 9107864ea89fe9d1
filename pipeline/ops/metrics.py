"""Measurements the workers make, kept in Redis so that one scrape of the API sees the cluster.

Workers are many processes on many machines; a per-process Prometheus registry would show
each scrape one process. Instead every finished stage run adds its figures to Redis hashes
(one round trip, no transaction needed: HINCRBY/HINCRBYFLOAT are atomic), and
``pipeline.ops.prometheus`` turns them into metric families when /metrics is scraped:

- ``<prefix>:metrics:hist:stage_seconds``   stage wall time, per stage, as histogram buckets;
- ``<prefix>:metrics:hist:transcode_speed`` media seconds per wall second of the stages on the
  transcode queue, per stage;
- ``<prefix>:metrics:counters``             bytes downloaded by ingest, media and wall seconds
  of transcode-queue stages.

A histogram hash holds, per label value, one field per bucket (``<label>|<le>``, counts that
are *not* cumulative: each observation adds one to the first bucket it fits), plus
``<label>|sum`` and ``<label>|count``.

Job counts, failures by code and stage completions are not recorded here: the job store
already counts them in ``<prefix>:stats`` (pipeline.engine.distributed.jobstore), in the
same transactions as the state changes.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import redis

from pipeline.core.dag import Dag
from pipeline.core.job import StageStatus
from pipeline.core.stage import Queue, StageResult
from pipeline.core.workspace import Workspace
from pipeline.engine.distributed.jobstore import JobRecord
from pipeline.stages.ingest import INFO_FILE

STAGE_SECONDS = "stage_seconds"
TRANSCODE_SPEED = "transcode_speed"

STAGE_BUCKETS: tuple[float, ...] = (
    0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200, 14400,
)  # fmt: skip
SPEED_BUCKETS: tuple[float, ...] = (0.25, 0.5, 1, 2, 4, 8, 16, 32, 64, 128)

BUCKETS = {STAGE_SECONDS: STAGE_BUCKETS, TRANSCODE_SPEED: SPEED_BUCKETS}

DOWNLOADED_BYTES = "downloaded_bytes"


def media_seconds_key(stage: str) -> str:
    return f"transcode_media_seconds|{stage}"


def wall_seconds_key(stage: str) -> str:
    return f"transcode_wall_seconds|{stage}"


def le_text(bound: float) -> str:
    """A bucket bound as Prometheus writes it (``0.5``, ``10.0``, ``+Inf``)."""
    return "+Inf" if math.isinf(bound) else repr(float(bound))


def bucket_for(value: float, bounds: Sequence[float]) -> str:
    for bound in bounds:
        if value <= bound:
            return le_text(bound)
    return "+Inf"


@dataclass
class Histogram:
    """One label value's histogram, read back: cumulative buckets, sum and count."""

    buckets: list[tuple[str, float]] = field(default_factory=list)
    sum: float = 0.0
    count: float = 0.0


class MetricsRecorder:
    """Adds workers' measurements to the cluster's figures in Redis."""

    def __init__(self, client: redis.Redis, prefix: str):
        self.client = client
        self.prefix = prefix

    def key(self, *parts: str) -> str:
        return ":".join((self.prefix, "metrics", *parts))

    def observe(self, pipe: Any, histogram: str, label: str, value: float) -> None:
        key = self.key("hist", histogram)
        pipe.hincrby(key, f"{label}|{bucket_for(value, BUCKETS[histogram])}", 1)
        pipe.hincrbyfloat(key, f"{label}|sum", value)
        pipe.hincrby(key, f"{label}|count", 1)

    def record_stage(
        self,
        stage: str,
        seconds: float,
        *,
        media_seconds: float | None = None,
        downloaded_bytes: int | None = None,
    ) -> None:
        """One finished stage run: its wall time, the media it went through (transcode
        speed), the bytes it downloaded. One round trip."""
        seconds = max(0.0, seconds)
        with self.client.pipeline(transaction=False) as pipe:
            self.observe(pipe, STAGE_SECONDS, stage, seconds)
            if media_seconds is not None and media_seconds > 0 and seconds > 0:
                self.observe(pipe, TRANSCODE_SPEED, stage, media_seconds / seconds)
                pipe.hincrbyfloat(self.key("counters"), media_seconds_key(stage), media_seconds)
                pipe.hincrbyfloat(self.key("counters"), wall_seconds_key(stage), seconds)
            if downloaded_bytes:
                pipe.hincrby(self.key("counters"), DOWNLOADED_BYTES, downloaded_bytes)
            pipe.execute()

    # -- reading -----------------------------------------------------------------------------

    def histograms(self, histogram: str) -> dict[str, Histogram]:
        """Per label value: cumulative buckets (every bound and +Inf), sum and count."""
        raw: dict[bytes, bytes] = self.client.hgetall(self.key("hist", histogram))  # type: ignore[assignment]
        counts: dict[str, dict[str, float]] = {}
        for name, value in raw.items():
            label, _, part = name.decode().rpartition("|")
            counts.setdefault(label, {})[part] = float(value)
        result: dict[str, Histogram] = {}
        for label, parts in sorted(counts.items()):
            running = 0.0
            buckets = []
            for bound in (*BUCKETS[histogram], math.inf):
                running += parts.get(le_text(bound), 0.0)
                buckets.append((le_text(bound), running))
            result[label] = Histogram(buckets, parts.get("sum", 0.0), parts.get("count", 0.0))
        return result

    def counters(self) -> dict[str, float]:
        raw: dict[bytes, bytes] = self.client.hgetall(self.key("counters"))  # type: ignore[assignment]
        return {name.decode(): float(value) for name, value in raw.items()}


def record_stage_run(
    recorder: MetricsRecorder, dag: Dag, record: JobRecord, stage: str, workspace: Workspace
) -> bool:
    """Record the figures of a stage run that has just finished (called once per run, by the
    executor, after the stage's outcome was stored). False when there was nothing to record:
    the stage did not finish, or found its work already done."""
    state = record.state.stages.get(stage)
    if state is None or stage not in dag.names:
        return False
    if state.status not in (StageStatus.DONE, StageStatus.SKIPPED):
        return False
    if state.started_at is None or state.finished_at is None:
        return False
    if state.detail.startswith("already done"):
        return False
    seconds = (state.finished_at - state.started_at).total_seconds()
    queue = dag[stage].queue
    media = record.media_duration if queue is Queue.TRANSCODE else None
    downloaded = _downloaded_bytes(workspace, stage) if queue is Queue.INGEST else None
    recorder.record_stage(stage, seconds, media_seconds=media, downloaded_bytes=downloaded)
    return True


def _downloaded_bytes(workspace: Workspace, stage: str) -> int | None:
    """The size of what an ingest stage fetched (media, captions, thumbnail): every file its
    result lists but the metadata it wrote itself."""
    path = workspace.result_file(stage)
    if not path.is_file():
        return None
    try:
        result = StageResult.model_validate_json(path.read_text(encoding="utf-8"))
    except ValueError:
        return None
    return sum(r.size for r in result.files if r.path != INFO_FILE)
