"""English for every talk: speech not in English gets, beside its own captions, an English
subtitle track from Whisper's translate task, labelled machine-translated, on the card and the
watch page. Real speech (espeak-ng), real recognition and translation (the offline model),
real ingest, probe, transcript and publish stages; translation is observed through
pipeline.tools.asr's counters, never mocked."""

from __future__ import annotations

import json
import shutil
from html.parser import HTMLParser
from pathlib import Path

import jsonschema
import pytest

from pipeline.core import readers
from pipeline.core.card import Card, CardStatus
from pipeline.core.dag import Dag
from pipeline.core.job import JobSpec, JobState, JobStatus, utcnow
from pipeline.core.readers import INFO_FILE
from pipeline.core.settings import Settings
from pipeline.core.source import SourceInfo, SubtitleTrack
from pipeline.core.stage import (
    AssetRole,
    OutputAsset,
    Queue,
    Stage,
    StageContext,
    StageResult,
)
from pipeline.core.timedtext import Cue
from pipeline.core.workspace import Workspace
from pipeline.engine.local import LocalExecutor
from pipeline.engine.runner import run_stage
from pipeline.media.subtitles import build_cues
from pipeline.publish.assemble import StageOutput, assemble
from pipeline.publish.publisher import CardPublisher
from pipeline.publish.static import static_files
from pipeline.stages import default_dag
from pipeline.stages.transcript_outputs import (
    Track,
    TranscriptOutcome,
    finish,
    rules,
    segments_from_cues,
)
from pipeline.storage import LocalStorage
from pipeline.tools import asr
from tests.conftest import make_settings
from tests.support.media import make_speech_clip
from tests.support.publishing import make_info
from tests.support.speech import (
    GERMAN,
    SHORT_EN,
    TRANSCRIPT_DAG,
    run_transcript_job,
    shared_model_cache,
    stage_result,
    transcript_settings,
    words_of,
)
from tests.support.webvtt_strict import check_rules, check_webvtt

ROOT = Path(__file__).resolve().parent.parent
SCHEMA = json.loads((ROOT / "docs" / "card.schema.json").read_text())
LEAD_S = 0.5
MACHINE_TRANSLATED = "English (machine-translated)"
HUMAN_DE = """WEBVTT

00:00:00.500 --> 00:00:03.800
Guten Morgen und herzlich willkommen zur Konferenz.

00:00:04.200 --> 00:00:08.800
Heute sprechen wir über Energie, Sicherheit und die Zukunft Europas.
"""
HUMAN_EN = """WEBVTT

00:00:00.500 --> 00:00:03.800
Good morning and welcome to the conference.

00:00:04.200 --> 00:00:08.800
Today we speak about energy, security and the future of Europe.
"""
# What the offline base model makes of GERMAN (beam 1, temperature 0): "Good morning and
# welcome to the conference. Today we talk about energy, security and the future of Europe."
ENGLISH_WORDS = {"morning", "welcome", "conference", "energy", "europe"}
GERMAN_WORDS = {"morgen", "willkommen", "konferenz", "energie", "europas"}


@pytest.fixture(scope="session")
def model_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return shared_model_cache(tmp_path_factory)


@pytest.fixture(scope="session")
def german_clip(media_dir: Path) -> Path:
    return make_speech_clip(media_dir / "translate-de.mp4", GERMAN, voice="de", lead_silence=LEAD_S)


def translations() -> tuple[float, float]:
    stats = asr.STATS.snapshot()
    return stats["transcriptions"], stats["translations"]


def captions_dir(workspace: Workspace) -> Path:
    return workspace.stage_dir("transcript") / "captions"


def vtt_words(path: Path) -> set[str]:
    cues = check_webvtt(path.read_text("utf-8"))
    check_rules(cues)
    return set(words_of(" ".join(cue.text for cue in cues)))


# -- the whole way to the card, with a stand-in for the encoders ---------------------------------


def mp4_as_is(ctx: StageContext) -> StageResult:
    """The transcode stage's place: the downloaded MP4 as the one rendition, so the card is
    playable and has a watch page without encoding anything (not what is tested here)."""
    target = ctx.out / "mp4" / "180p.mp4"
    target.parent.mkdir(parents=True)
    shutil.copyfile(readers.source_media(ctx), target)
    asset = OutputAsset(
        file="mp4/180p.mp4", key="mp4/180p.mp4", role=AssetRole.MP4, width=320, height=180
    )
    return StageResult.done(ctx.out, assets=[asset])


def not_in_this_test(ctx: StageContext) -> StageResult:
    return StageResult.skipped("not in this test's job")


REAL_STAGES = frozenset({"ingest", "probe", "transcript", "publish_playable", "publish"})


def transcript_to_card_dag() -> Dag:
    """The default DAG with the encoders left out: ``transcode`` replaced by :func:`mp4_as_is`,
    the other media stages skipped."""
    stages = []
    for stage in default_dag():
        if stage.name in REAL_STAGES:
            stages.append(stage)
        else:
            run = mp4_as_is if stage.name == "transcode" else not_in_this_test
            stages.append(Stage(stage.name, Queue.MEDIA, run, stage.requires))
    return Dag.of(stages)


class TrackElements(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tracks: list[dict[str, str | None]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "track":
            self.tracks.append(dict(attrs))


@pytest.mark.slow  # real recognition and translation
def test_a_german_talk_gets_german_captions_and_a_machine_translated_english_track(
    tmp_path: Path, model_cache: Path, german_clip: Path
) -> None:
    settings = transcript_settings(tmp_path, model_cache)
    before = translations()
    state = LocalExecutor(
        settings, dag=transcript_to_card_dag(), publisher=CardPublisher(settings)
    ).run(JobSpec(source=str(german_clip)))
    assert state.status is JobStatus.SUCCEEDED, state.error
    assert translations() == (before[0] + 1, before[1] + 1), "recognised once, translated once"
    workspace = Workspace.for_job(settings.storage.workspace, state.id)

    result = stage_result(workspace)
    assert (result.data["engine"], result.data["language"]) == ("asr", "de")
    document = json.loads((captions_dir(workspace) / "transcript.json").read_text())
    assert document["language"] == "de", "the transcript stays in the words spoken"
    assert {"konferenz", "energie"} <= set(words_of(document["text"]))

    german = vtt_words(captions_dir(workspace) / "de.vtt")
    english = vtt_words(captions_dir(workspace) / "en.vtt")
    assert len(GERMAN_WORDS & german) >= 4, german
    assert english >= ENGLISH_WORDS, english
    assert not GERMAN_WORDS & english, "translated, not transcribed"
    cues = check_webvtt((captions_dir(workspace) / "en.vtt").read_text("utf-8"))
    speech_end = check_webvtt((captions_dir(workspace) / "de.vtt").read_text("utf-8"))[-1].end
    assert all(LEAD_S - 0.05 <= c.start < c.end <= speech_end + 0.5 for c in cues), cues
    assert (captions_dir(workspace) / "en.srt").read_text("utf-8").startswith("1\n")

    vtt = {a.lang: a for a in result.assets if a.role is AssetRole.CAPTIONS and a.key[-3:] == "vtt"}
    assert set(vtt) == {"de", "en"}
    assert (vtt["de"].label, vtt["de"].extra.get("translated_from")) == ("German", None)
    assert (vtt["en"].key, vtt["en"].label, vtt["en"].automatic) == (
        "captions/en.vtt",
        MACHINE_TRANSLATED,
        True,
    )
    assert vtt["en"].extra == {
        "format": "vtt",
        "srt": "captions/en.srt",
        "kind": "subtitles",
        "translated_from": "de",
    }

    out = Path(settings.storage.output) / str(state.card_id)
    data = json.loads((out / "card.json").read_text())
    jsonschema.Draft202012Validator(SCHEMA).validate(data)
    card = Card.model_validate(data)
    assert card.language == "de" and card.pages is not None and card.pages.watch_html
    assert [(t.lang, t.kind, t.label, t.automatic, t.translated_from) for t in card.captions] == [
        ("de", "captions", "German", True, None),
        ("en", "subtitles", MACHINE_TRANSLATED, True, "de"),
    ]
    assert all((out / t.src).is_file() and t.srt and (out / t.srt).is_file() for t in card.captions)

    page = TrackElements()
    page.feed((out / card.pages.watch_html).read_text("utf-8"))
    assert [(t["srclang"], t["kind"], t["label"], "default" in t) for t in page.tracks] == [
        ("de", "captions", "German", True),
        ("en", "subtitles", MACHINE_TRANSLATED, False),
    ], "the words spoken are the default track, the translation is offered beside them"


@pytest.mark.slow  # real recognition and translation
def test_english_speech_gets_no_translation(
    tmp_path: Path, model_cache: Path, media_dir: Path
) -> None:
    clip = make_speech_clip(media_dir / "translate-en.mp4", SHORT_EN, lead_silence=0.5)
    before = translations()
    state, workspace = run_transcript_job(transcript_settings(tmp_path, model_cache), str(clip))
    assert state.status is JobStatus.SUCCEEDED, state.error
    assert translations() == (before[0] + 1, before[1]), "recognised, not translated"
    result = stage_result(workspace)
    assert result.data["language"] == "en"
    assert [(t["lang"], t["label"], t.get("translated_from")) for t in result.data["tracks"]] == [
        ("en", "English", None)
    ]


# -- the source's captions: translated from the audio unless a human English track exists -------


def prepared_ingest(
    settings: Settings, spec: JobSpec, media: Path, captions: dict[str, str]
) -> None:
    """The ingest stage's output for a source offering human caption files (lang -> WebVTT),
    which the local server cannot offer through yt-dlp; the executor finds it done."""
    workspace = Workspace.for_job(settings.storage.workspace, spec.job_id)

    def write(ctx: StageContext) -> StageResult:
        shutil.copyfile(media, ctx.out / "media.mp4")
        (ctx.out / "captions").mkdir()
        for lang, content in captions.items():
            (ctx.out / "captions" / f"{lang}.vtt").write_text(content, encoding="utf-8")
        info = SourceInfo(
            extractor="youtube",
            source_id="abc123",
            title="Quick Take",
            webpage_url="https://www.youtube.com/watch?v=abc123",
            subtitles=[
                SubtitleTrack(lang=lang, ext="vtt", automatic=False, file=f"captions/{lang}.vtt")
                for lang in captions
            ],
            language="de",
            media_file="media.mp4",
            media_duration=10.0,
        )
        (ctx.out / INFO_FILE).write_text(info.model_dump_json(), encoding="utf-8")
        return StageResult.done(ctx.out, card_id=info.card_id)

    ctx = StageContext(
        job_id=spec.job_id,
        stage="ingest",
        spec=spec,
        settings=settings,
        workspace=workspace,
        out=workspace.partial_dir("ingest"),
    )
    run_stage(Stage(name="ingest", queue=Queue.INGEST, run=write), ctx)


def run_prepared(settings: Settings, spec: JobSpec) -> tuple[JobState, Workspace]:
    state = LocalExecutor(settings, dag=TRANSCRIPT_DAG).run(spec)
    assert state.stages["ingest"].reused, "ingest was prepared"
    return state, Workspace.for_job(settings.storage.workspace, state.id)


@pytest.mark.slow  # real translation
@pytest.mark.parametrize(
    ("captions", "transcript", "expected"),
    [
        (
            {"de": HUMAN_DE},
            {},
            {("de", "captions", False, None), ("en", "subtitles", True, "de")},
        ),
        ({"de": HUMAN_DE}, {"translate_to_english": False}, {("de", "captions", False, None)}),
        ({"de": HUMAN_DE}, {"engine": "captions"}, {("de", "captions", False, None)}),
        (
            {"de": HUMAN_DE, "en": HUMAN_EN},
            {},
            {("de", "captions", False, None), ("en", "subtitles", False, None)},
        ),
    ],
    ids=["german-captions", "translation-off", "engine-captions", "human-english-captions"],
)
def test_german_source_captions_get_a_translation_unless_off_or_english_is_there(
    tmp_path: Path,
    model_cache: Path,
    german_clip: Path,
    captions: dict[str, str],
    transcript: dict[str, object],
    expected: set[tuple[str, str, bool, str | None]],
) -> None:
    settings = transcript_settings(tmp_path, model_cache, **transcript)
    spec = JobSpec(source="https://www.youtube.com/watch?v=abc123")
    prepared_ingest(settings, spec, german_clip, captions)
    before = translations()
    state, workspace = run_prepared(settings, spec)
    assert state.status is JobStatus.SUCCEEDED, state.error
    result = stage_result(workspace)
    assert (result.data["engine"], result.data["language"]) == ("captions", "de")
    tracks = {
        (t["lang"], t["kind"], t["automatic"], t.get("translated_from"))
        for t in result.data["tracks"]
    }
    assert tracks == expected
    translated = ("en", "subtitles", True, "de") in expected
    assert translations() == (before[0], before[1] + translated), "nothing recognised"
    if translated:
        english = vtt_words(captions_dir(workspace) / "en.vtt")
        assert english >= ENGLISH_WORDS, english
        label = next(t["label"] for t in result.data["tracks"] if t["lang"] == "en")
        assert label == MACHINE_TRANSLATED
    elif "en" not in captions:
        assert not (captions_dir(workspace) / "en.vtt").exists()


def test_a_model_that_cannot_load_costs_the_translation_not_the_captions(
    tmp_path: Path, german_clip: Path
) -> None:
    not_a_model = tmp_path / "not-a-model"
    not_a_model.mkdir()
    settings = make_settings(tmp_path, transcript={"model": str(not_a_model)})
    spec = JobSpec(source="https://www.youtube.com/watch?v=abc123")
    prepared_ingest(settings, spec, german_clip, {"de": HUMAN_DE})
    state, workspace = run_prepared(settings, spec)
    assert state.status is JobStatus.SUCCEEDED, state.error
    result = stage_result(workspace)
    assert [(t["lang"], t["automatic"]) for t in result.data["tracks"]] == [("de", False)]
    assert any(w.startswith("No English translation: ") for w in result.data["warnings"])


# -- the card and the watch page: the words spoken first, whatever the languages' order ----------


def test_the_translation_follows_the_spoken_track_on_the_card_and_the_watch_page(
    tmp_path: Path,
) -> None:
    """A Spanish talk: "en" sorts before "es", yet the Spanish track comes first and is the
    default, the machine translation after it (the stage's real outputs, assembled)."""
    settings = make_settings(tmp_path)
    spec = JobSpec(source="https://www.youtube.com/watch?v=msc2026qt1")
    workspace = Workspace.for_job(settings.storage.workspace, spec.job_id)
    ctx = StageContext(
        job_id=spec.job_id,
        stage="transcript",
        spec=spec,
        settings=settings,
        workspace=workspace,
        out=workspace.partial_dir("transcript"),
    )

    def cues(text: str) -> list[Cue]:
        return build_cues(asr.spread_words(text, 0.5, 3.5), rules(settings.transcript))

    spoken = cues("Buenos días y bienvenidos a la conferencia.")
    outcome = TranscriptOutcome(
        engine="asr",
        language="es",
        language_source="detected",
        automatic=True,
        word_timing="recognised",
        segments=segments_from_cues(spoken, recognised=True),
        tracks=[
            Track(lang="es", automatic=True, cues=spoken),
            Track(
                lang="en",
                automatic=True,
                cues=cues("Good morning and welcome to the conference."),
                kind="subtitles",
                translated_from="es",
            ),
        ],
    )
    transcript = finish(ctx, outcome)
    encoded = tmp_path / "transcode"
    (encoded / "mp4").mkdir(parents=True)
    (encoded / "mp4" / "180p.mp4").write_bytes(b"\0" * 64)  # published, never played here
    mp4 = OutputAsset(
        file="mp4/180p.mp4", key="mp4/180p.mp4", role=AssetRole.MP4, width=320, height=180
    )
    publication = assemble(
        meta=make_info(),
        outputs=[
            StageOutput("transcode", encoded, StageResult.done(encoded, assets=[mp4])),
            StageOutput("transcript", ctx.out, transcript),
        ],
        status=CardStatus.READY,
        event=None,
        settings=settings,
        storage=LocalStorage(settings.storage.output),
        static=static_files(settings),
        now=utcnow(),
        work=tmp_path / "work-publish",
    )
    card = publication.card
    assert card.language == "es"
    assert [(t.lang, t.kind, t.label, t.translated_from) for t in card.captions] == [
        ("es", "captions", "Spanish", None),
        ("en", "subtitles", MACHINE_TRANSLATED, "es"),
    ]
    jsonschema.Draft202012Validator(SCHEMA).validate(card.model_dump(mode="json", by_alias=True))
    watch = next(f for f in publication.files if f.key == "watch.html")
    page = TrackElements()
    page.feed(watch.content().decode("utf-8"))
    assert [(t["srclang"], t["label"], "default" in t) for t in page.tracks] == [
        ("es", "Spanish", True),
        ("en", MACHINE_TRANSLATED, False),
    ]
