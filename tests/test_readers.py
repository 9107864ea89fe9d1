"""The typed readers of finished stage outputs: they read what a stage declared, and refuse
what it did not (a bug in Recast), through the production runner and local executor."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.core import readers
from pipeline.core.dag import Dag
from pipeline.core.errors import ErrorCode, RecastError
from pipeline.core.fsutil import atomic_write_json
from pipeline.core.job import JobSpec, JobState, JobStatus, StageStatus
from pipeline.core.mediainfo import MediaInfo
from pipeline.core.settings import Settings
from pipeline.core.source import SourceInfo
from pipeline.core.stage import Queue, Stage, StageContext, StageResult
from pipeline.core.workspace import Workspace
from pipeline.engine.local import LocalExecutor

INFO = SourceInfo(
    extractor="youtube",
    source_id="abc123",
    title="Quick Take",
    webpage_url="https://www.youtube.com/watch?v=abc123",
    media_file="media.mp4",
)
MEDIA = MediaInfo(container="mov,mp4,m4a,3gp,3g2,mj2", duration=4.0)


def _ingest(ctx: StageContext) -> StageResult:
    (ctx.out / "media.mp4").write_bytes(b"not really media")
    atomic_write_json(ctx.out / readers.INFO_FILE, INFO.model_dump(mode="json"))
    return StageResult.done(ctx.out)


def _probe(ctx: StageContext) -> StageResult:
    assert readers.source_media(ctx).read_bytes() == b"not really media"
    atomic_write_json(ctx.out / readers.MEDIA_INFO_FILE, MEDIA.model_dump(mode="json"))
    return StageResult.done(ctx.out)


def _reads_both(ctx: StageContext) -> StageResult:
    info, media = readers.source_info(ctx), readers.media_info(ctx)
    assert readers.source_thumbnail(ctx) is None, "ingest saved no thumbnail"
    return StageResult.done(ctx.out, detail=f"{info.title}, {media.duration:g} s")


def _run(settings: Settings, *stages: Stage) -> JobState:
    return LocalExecutor(settings, dag=Dag.of([*stages])).run(JobSpec(source="job-source"))


INGEST = Stage("ingest", Queue.INGEST, _ingest)
PROBE = Stage("probe", Queue.MEDIA, _probe, ("ingest",))


def test_a_stage_reads_what_it_declares(settings: Settings) -> None:
    reader = Stage("reader", Queue.MEDIA, _reads_both, ("ingest", "probe"))
    state = _run(settings, INGEST, PROBE, reader)
    assert state.status is JobStatus.SUCCEEDED, state.error
    assert state.stages["reader"].detail == "Quick Take, 4 s"


def test_reading_a_stage_not_declared_fails_as_a_bug_even_an_ancestor(
    settings: Settings,
) -> None:
    reader = Stage("reader", Queue.MEDIA, _reads_both, ("probe",))  # ingest only by way of probe
    state = _run(settings, INGEST, PROBE, reader)
    assert state.status is JobStatus.FAILED
    assert state.stages["probe"].status is StageStatus.DONE
    assert state.stages["reader"].status is StageStatus.FAILED
    assert state.error is not None and state.error.code == ErrorCode.INTERNAL
    assert state.error.message == (
        "The reader stage reads the outputs of the ingest stage, which it does not declare in "
        "its requires (probe): a bug in Recast."
    )


def test_a_context_declaring_nothing_reads_nothing(settings: Settings, tmp_path: Path) -> None:
    workspace = Workspace(tmp_path / "job")
    ctx = StageContext(
        job_id="job",
        stage="thumbnails",
        spec=JobSpec(source="job-source"),
        settings=settings,
        workspace=workspace,
        out=workspace.partial_dir("thumbnails"),
    )
    for read in (readers.media_info, readers.source_info, readers.source_media):
        with pytest.raises(RecastError, match="does not declare in its requires") as caught:
            read(ctx)
        assert caught.value.code is ErrorCode.INTERNAL
    with pytest.raises(RecastError, match="does not declare"):
        ctx.input_result("probe")
    with pytest.raises(RecastError, match="only the ingest stage itself may"):
        readers.recorded_source_info(ctx)
