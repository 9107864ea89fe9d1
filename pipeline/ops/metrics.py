"""Measurements the workers make, kept in Redis so that one scrape of the API sees the cluster.

Workers are many processes on many machines; a per-process Prometheus registry would show
each scrape one process. Instead every stage run that did its work adds its figures to Redis
hashes (one round trip, no transaction needed: HINCRBY/HINCRBYFLOAT are atomic), and
``pipeline.ops.prometheus`` turns them into metric families when /metrics is scraped:

- the ``stage_seconds`` histogram: stage wall time, per stage;
- the ``transcode_speed`` histogram: media seconds per wall second of the stages on the
  transcode queue, per stage;
- the measured totals: bytes downloaded by ingest, media and wall seconds of transcode-queue
  stages.

The keys are :class:`~pipeline.engine.distributed.keys.RedisKeys`' ``histogram`` and
``measurements``; the fields in them are built and parsed by
:mod:`pipeline.engine.distributed.counters`. A histogram's bucket counts are *not* cumulative:
each observation adds one to the first bucket it fits.

Job counts, failures by code and stage completions (and reuses) are not recorded here: the job
store already counts them in its ``stats`` hash, in the same transactions as the state changes.
A stage that found its outputs in place (``StageState.reused``) did no work: it adds no figures.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import redis

from pipeline.core.dag import Dag
from pipeline.core.job import StageStatus
from pipeline.core.readers import INFO_FILE
from pipeline.core.stage import Queue, StageResult
from pipeline.core.workspace import Workspace
from pipeline.engine.distributed.counters import (
    HistogramName,
    HistogramPart,
    Measure,
    histogram_field,
    measure_field,
    parse_histogram_field,
    parse_measure_field,
)
from pipeline.engine.distributed.jobstore import JobRecord
from pipeline.engine.distributed.keys import RedisKeys

STAGE_BUCKETS: tuple[float, ...] = (
    0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200, 14400,
)  # fmt: skip
SPEED_BUCKETS: tuple[float, ...] = (0.25, 0.5, 1, 2, 4, 8, 16, 32, 64, 128)

BUCKETS = {HistogramName.STAGE_SECONDS: STAGE_BUCKETS, HistogramName.TRANSCODE_SPEED: SPEED_BUCKETS}


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
        self.keys = RedisKeys(prefix)

    def observe(self, pipe: Any, histogram: HistogramName, label: str, value: float) -> None:
        key = self.keys.histogram(histogram)
        pipe.hincrby(key, histogram_field(label, bucket_for(value, BUCKETS[histogram])), 1)
        pipe.hincrbyfloat(key, histogram_field(label, HistogramPart.SUM), value)
        pipe.hincrby(key, histogram_field(label, HistogramPart.COUNT), 1)

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
        totals = self.keys.measurements
        with self.client.pipeline(transaction=False) as pipe:
            self.observe(pipe, HistogramName.STAGE_SECONDS, stage, seconds)
            if media_seconds is not None and media_seconds > 0 and seconds > 0:
                self.observe(pipe, HistogramName.TRANSCODE_SPEED, stage, media_seconds / seconds)
                media_field = measure_field(Measure.TRANSCODE_MEDIA_SECONDS, stage)
                pipe.hincrbyfloat(totals, media_field, media_seconds)
                wall_field = measure_field(Measure.TRANSCODE_WALL_SECONDS, stage)
                pipe.hincrbyfloat(totals, wall_field, seconds)
            if downloaded_bytes:
                pipe.hincrby(totals, measure_field(Measure.DOWNLOADED_BYTES), downloaded_bytes)
            pipe.execute()

    # -- reading -----------------------------------------------------------------------------

    def histograms(self, histogram: HistogramName) -> dict[str, Histogram]:
        """Per label value: cumulative buckets (every bound and +Inf), sum and count."""
        raw: dict[bytes, bytes] = self.client.hgetall(self.keys.histogram(histogram))  # type: ignore[assignment]
        counts: dict[str, dict[str, float]] = {}
        for name, value in raw.items():
            label, part = parse_histogram_field(name.decode())
            counts.setdefault(label, {})[part] = float(value)
        result: dict[str, Histogram] = {}
        for label, parts in sorted(counts.items()):
            running = 0.0
            buckets = []
            for bound in (*BUCKETS[histogram], math.inf):
                running += parts.get(le_text(bound), 0.0)
                buckets.append((le_text(bound), running))
            result[label] = Histogram(
                buckets, parts.get(HistogramPart.SUM, 0.0), parts.get(HistogramPart.COUNT, 0.0)
            )
        return result

    def totals(self) -> Totals:
        """The measured totals, read back."""
        raw: dict[bytes, bytes] = self.client.hgetall(self.keys.measurements)  # type: ignore[assignment]
        totals = Totals()
        for name, value in raw.items():
            parsed = parse_measure_field(name.decode())
            if parsed is None:
                continue
            measure, stage = parsed
            if stage is None:
                totals.overall[measure] = float(value)
            else:
                totals.per_stage.setdefault(measure, {})[stage] = float(value)
        return totals


@dataclass
class Totals:
    """The measured totals: overall (downloaded bytes) and per stage (transcode seconds)."""

    overall: dict[Measure, float] = field(default_factory=dict)
    per_stage: dict[Measure, dict[str, float]] = field(default_factory=dict)

    def of(self, measure: Measure) -> float:
        return self.overall.get(measure, 0.0)

    def by_stage(self, measure: Measure) -> dict[str, float]:
        return dict(sorted(self.per_stage.get(measure, {}).items()))


def record_stage_run(
    recorder: MetricsRecorder, dag: Dag, record: JobRecord, stage: str, workspace: Workspace
) -> bool:
    """Record the figures of a stage run that has just finished (called once per run, by the
    executor, after the stage's outcome was stored). False when there was nothing to record:
    the stage did not finish, or was reused (its outputs were already in place)."""
    state = record.state.stages.get(stage)
    if state is None or stage not in dag.names:
        return False
    if state.status not in (StageStatus.DONE, StageStatus.SKIPPED):
        return False
    if state.started_at is None or state.finished_at is None:
        return False
    if state.reused:
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
