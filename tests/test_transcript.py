"""The transcript stage choosing its engine: the source's captions (human before automatic,
rolling automatic ones cleaned), recognition when the captions are unusable, and the engine
settings. Recognition is observed through pipeline.tools.asr's counters, never mocked."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipeline.core.job import JobSpec, JobState, JobStatus, StageStatus
from pipeline.core.readers import INFO_FILE
from pipeline.core.settings import Settings
from pipeline.core.source import SourceInfo, SubtitleTrack
from pipeline.core.stage import AssetRole, Queue, Stage, StageContext, StageResult
from pipeline.core.workspace import Workspace
from pipeline.engine.local import LocalExecutor
from pipeline.engine.runner import run_stage
from pipeline.tools import asr
from tests.support.httpserver import MediaServer
from tests.support.media import make_clip, make_speech_clip
from tests.support.speech import (
    SHORT_EN,
    TRANSCRIPT_DAG,
    run_transcript_job,
    shared_model_cache,
    stage_result,
    transcript_settings,
    wer,
)
from tests.support.webvtt_strict import check_rules, check_webvtt

pytestmark = pytest.mark.slow  # end to end with real tools: not in the fast set

DATA = Path(__file__).parent / "data" / "captions"
HUMAN_EN = """WEBVTT

00:00:00.500 --> 00:00:02.500
Welcome to the Munich Security Conference.

00:00:02.600 --> 00:00:05.000
Today: energy, defence and alliances.
"""
AUTOMATIC_EN = """WEBVTT

00:00:00.500 --> 00:00:05.000
welcome to the munich security conference
"""
HUMAN_DE = """WEBVTT

00:00:00.500 --> 00:00:05.000
Willkommen zur Münchner Sicherheitskonferenz.
"""


@pytest.fixture(scope="session")
def model_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return shared_model_cache(tmp_path_factory)


@pytest.fixture(scope="session")
def short_clip(media_dir: Path) -> Path:
    return make_speech_clip(media_dir / "short-speech.mp4", SHORT_EN, lead_silence=0.5)


@pytest.fixture(scope="session")
def tone_clip(media_dir: Path) -> Path:
    return make_clip(media_dir / "tone-5s.mp4", duration=5.0)


def counters() -> tuple[float, float]:
    stats = asr.STATS.snapshot()
    return stats["model_loads"], stats["transcriptions"]


def outputs(workspace: Workspace) -> Path:
    return workspace.stage_dir("transcript") / "captions"


def prepared_ingest(
    settings: Settings, media: Path, captions: dict[str, tuple[str, bool]], spec: JobSpec
) -> None:
    """An ingest stage output as ingest leaves it for a source offering these caption files
    (name -> (content, automatic)), e.g. YouTube's human and automatic tracks for one language,
    which the local server cannot offer through yt-dlp. The executor finds it done."""
    workspace = Workspace.for_job(settings.storage.workspace, spec.job_id)
    tracks = [
        SubtitleTrack(
            lang=name.split(".")[0], ext="vtt", automatic=automatic, file=f"captions/{name}"
        )
        for name, (_, automatic) in captions.items()
    ]

    def write(ctx: StageContext) -> StageResult:
        (ctx.out / "media.mp4").write_bytes(media.read_bytes())
        (ctx.out / "captions").mkdir()
        for name, (content, _) in captions.items():
            (ctx.out / "captions" / name).write_text(content, encoding="utf-8")
        info = SourceInfo(
            extractor="youtube",
            source_id="abc123",
            title="Quick Take",
            webpage_url="https://www.youtube.com/watch?v=abc123",
            subtitles=tracks,
            media_file="media.mp4",
            media_duration=5.0,
        )
        (ctx.out / INFO_FILE).write_text(info.model_dump_json(), encoding="utf-8")
        return StageResult.done(ctx.out, card_id=info.card_id)

    stage = Stage(name="ingest", queue=Queue.INGEST, run=write)
    ctx = StageContext(
        job_id=spec.job_id,
        stage="ingest",
        spec=spec,
        settings=settings,
        workspace=workspace,
        out=workspace.partial_dir("ingest"),
    )
    run_stage(stage, ctx)


def run_prepared(settings: Settings, spec: JobSpec) -> tuple[JobState, Workspace]:
    state = LocalExecutor(settings, dag=TRANSCRIPT_DAG).run(spec)
    assert state.stages["ingest"].reused, "ingest was prepared"
    return state, Workspace.for_job(settings.storage.workspace, state.id)


def test_human_captions_from_the_page_are_used_and_recognition_does_not_run(
    tmp_path: Path, server: MediaServer, short_clip: Path, model_cache: Path
) -> None:
    server.put_file("talk/video.mp4", short_clip)
    server.add("talk/video.en.vtt", HUMAN_EN, "text/vtt")
    page = (
        "<html><body><video controls>"
        f'<source src="{server.url("talk/video.mp4")}" type="video/mp4">'
        f'<track kind="captions" srclang="en" label="English" '
        f'src="{server.url("talk/video.en.vtt")}">'
        "</video></body></html>"
    )
    before = counters()
    settings = transcript_settings(tmp_path, model_cache)
    state, workspace = run_transcript_job(settings, server.add("talk/page.html", page))
    assert state.status is JobStatus.SUCCEEDED, state.error
    assert counters() == before, "no model loaded, nothing recognised"
    result = stage_result(workspace)
    assert (result.data["engine"], result.data["language"]) == ("captions", "en")
    assert result.data["automatic"] is False and result.data["model"] is None
    cues = check_webvtt((outputs(workspace) / "en.vtt").read_text())
    check_rules(cues)
    assert [c.text for c in cues] == [
        "Welcome to the Munich Security Conference.",
        "Today: energy, defence and alliances.",
    ]
    assert (outputs(workspace) / "transcript.txt").read_text() == (
        "Welcome to the Munich Security Conference. Today: energy, defence and alliances.\n"
    )
    document = json.loads((outputs(workspace) / "transcript.json").read_text())
    assert (document["engine"], document["word_timing"]) == ("captions", "interpolated")
    assert document["caption_track"] == "captions/en.vtt"
    vtt = next(a for a in result.assets if a.key == "captions/en.vtt")
    assert (vtt.role, vtt.automatic, vtt.label) == (AssetRole.CAPTIONS, False, "English")


def test_human_captions_win_over_automatic_ones(
    tmp_path: Path, tone_clip: Path, model_cache: Path
) -> None:
    settings = transcript_settings(tmp_path, model_cache)
    spec = JobSpec(source="https://www.youtube.com/watch?v=abc123")
    prepared_ingest(
        settings,
        tone_clip,
        {
            "en.auto.vtt": (AUTOMATIC_EN, True),
            "en.vtt": (HUMAN_EN, False),
            "de.vtt": (HUMAN_DE, False),
        },
        spec,
    )
    before = counters()
    state, workspace = run_prepared(settings, spec)
    assert state.status is JobStatus.SUCCEEDED, state.error
    assert counters() == before, "recognition did not run"
    result = stage_result(workspace)
    assert result.data["automatic"] is False
    document = json.loads((outputs(workspace) / "transcript.json").read_text())
    assert document["caption_track"] == "captions/en.vtt"
    assert document["text"].startswith("Welcome to the Munich Security Conference.")
    tracks = {(t["lang"], t["automatic"], t["kind"]) for t in result.data["tracks"]}
    assert tracks == {("en", False, "captions"), ("de", False, "subtitles")}
    for lang in ("en", "de"):
        check_rules(check_webvtt((outputs(workspace) / f"{lang}.vtt").read_text()))


def test_rolling_automatic_captions_are_cleaned(
    tmp_path: Path, tone_clip: Path, model_cache: Path
) -> None:
    settings = transcript_settings(tmp_path, model_cache)
    spec = JobSpec(source="https://www.youtube.com/watch?v=abc123")
    rolling = (DATA / "youtube-rolling.en.vtt").read_text(encoding="utf-8")
    prepared_ingest(settings, tone_clip, {"en.vtt": (rolling, True)}, spec)
    before = counters()
    state, workspace = run_prepared(settings, spec)
    assert state.status is JobStatus.SUCCEEDED, state.error
    assert counters() == before
    cues = check_webvtt((outputs(workspace) / "en.vtt").read_text())
    check_rules(cues)
    lines = [line for cue in cues for line in cue.lines]
    assert len(lines) == len(set(lines)), lines
    document = json.loads((outputs(workspace) / "transcript.json").read_text())
    assert document["text"] == (
        "good morning and welcome to the conference today we will talk about energy & security"
    ), "no [Music] and no repetition in the transcript"
    assert (document["automatic"], document["word_timing"]) == (True, "source")
    assert stage_result(workspace).data["automatic"] is True


def test_bad_captions_fall_back_to_recognition_with_a_warning(
    tmp_path: Path, server: MediaServer, short_clip: Path, model_cache: Path
) -> None:
    server.put_file("bad/video.mp4", short_clip)
    server.add("bad/video.en.vtt", "WEBVTT\n\n00:00:01.000 --> later\nhello\n", "text/vtt")
    page = (
        "<html><body><video controls>"
        f'<source src="{server.url("bad/video.mp4")}" type="video/mp4">'
        f'<track kind="subtitles" srclang="en" src="{server.url("bad/video.en.vtt")}">'
        "</video></body></html>"
    )
    _, transcriptions = counters()
    settings = transcript_settings(tmp_path, model_cache)
    state, workspace = run_transcript_job(settings, server.add("bad/page.html", page))
    assert state.status is JobStatus.SUCCEEDED, state.error
    assert counters()[1] == transcriptions + 1, "recognition ran instead"
    warnings = state.stages["transcript"].warnings
    assert any("captions/en.vtt" in w and "unusable" in w for w in warnings), warnings
    result = stage_result(workspace)
    assert result.data["engine"] == "asr" and result.data["warnings"] == warnings
    assert (
        wer(SHORT_EN, json.loads((outputs(workspace) / "transcript.json").read_text())["text"])
        <= 0.25
    )


@pytest.mark.parametrize(
    ("engine", "detail"),
    [
        ("none", "transcripts are turned off (transcript.engine = none)"),
        ("captions", "the source has no usable captions"),
    ],
)
def test_engine_setting(
    tmp_path: Path, short_clip: Path, model_cache: Path, engine: str, detail: str
) -> None:
    settings = transcript_settings(tmp_path, model_cache, engine=engine)
    before = counters()
    state, _ = run_transcript_job(settings, str(short_clip))
    assert state.status is JobStatus.SUCCEEDED, state.error
    stage = state.stages["transcript"]
    assert (stage.status, stage.detail) == (StageStatus.SKIPPED, detail)
    assert counters() == before


def test_engine_asr_ignores_the_source_captions(
    tmp_path: Path, short_clip: Path, model_cache: Path
) -> None:
    settings = transcript_settings(tmp_path, model_cache, engine="asr")
    spec = JobSpec(source="https://www.youtube.com/watch?v=abc123")
    prepared_ingest(settings, short_clip, {"en.vtt": (HUMAN_EN, False)}, spec)
    state, workspace = run_prepared(settings, spec)
    assert state.status is JobStatus.SUCCEEDED, state.error
    assert stage_result(workspace).data["engine"] == "asr"


def test_captions_in_another_language_than_the_job_says_are_subtitles(
    tmp_path: Path, short_clip: Path, model_cache: Path
) -> None:
    """The job says the talk is in German; the source only has English captions (a
    translation): the transcript is recognised in German, the English track is published as
    subtitles beside it."""
    settings = transcript_settings(tmp_path, model_cache)
    spec = JobSpec(source="https://www.youtube.com/watch?v=abc123", options={"language": "de"})
    prepared_ingest(settings, short_clip, {"en.vtt": (HUMAN_EN, False)}, spec)
    _, transcriptions = counters()
    state, workspace = run_prepared(settings, spec)
    assert state.status is JobStatus.SUCCEEDED, state.error
    assert counters()[1] == transcriptions + 1
    result = stage_result(workspace)
    assert (result.data["engine"], result.data["language"]) == ("asr", "de")
    assert result.data["language_source"] == "job"
    tracks = {(t["lang"], t["automatic"], t["kind"]) for t in result.data["tracks"]}
    assert tracks == {("de", True, "captions"), ("en", False, "subtitles")}
    for lang in ("de", "en"):
        check_rules(check_webvtt((outputs(workspace) / f"{lang}.vtt").read_text()))
