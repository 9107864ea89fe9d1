"""The publish stages on a finished job's real media: the ready card from the stages' assets,
the playable card on the stream copy, the preview, what replaces what, and clean-up."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path

import jsonschema
import pytest

from pipeline.core.card import Card, CardStatus
from pipeline.core.job import JobSpec, JobState, JobStatus, StageStatus
from pipeline.core.manifest import Manifest
from pipeline.core.settings import Settings
from pipeline.engine.local import LocalExecutor
from pipeline.publish import events, webhooks
from pipeline.publish.publisher import CardPublisher
from pipeline.stages.publish import run_publish, run_publish_playable
from pipeline.storage import LocalStorage
from tests.conftest import make_settings
from tests.support.publishing import (
    JobMedia,
    ingest_context,
    make_info,
    make_job,
    publish_dag,
    stage_context,
)

ROOT = Path(__file__).resolve().parent.parent
SCHEMA = json.loads((ROOT / "docs" / "card.schema.json").read_text())


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> JobMedia:
    return JobMedia(tmp_path_factory.mktemp("publish-media"))


@pytest.fixture
def settings(tmp_path: Path) -> Iterator[Settings]:
    yield make_settings(tmp_path, publish={"gc_grace_s": 0})
    webhooks.stop_dispatchers()


def read_json(root: Path, key: str) -> dict:  # type: ignore[type-arg]
    return json.loads((root / key).read_text())


def card_links(card: Card) -> list[str]:
    """Every link in the card to a file beside it."""
    links = [card.link.href]
    if card.poster:
        links += [card.poster.src, *(s.src for s in card.poster.sources)]
    links += [u for u in (card.streams.hls, card.streams.audio) if u]
    links += [s.src for s in card.streams.mp4]
    for track in card.captions:
        links += [track.src] + ([track.srt] if track.srt else [])
    if card.transcript:
        links += [card.transcript.txt, card.transcript.json_url]
    links += [u for u in (card.storyboard, card.preview_clip) if u]
    if card.pages:
        links += [u for u in (card.pages.card_html, card.pages.watch_html, card.pages.oembed) if u]
    return links


def test_ready_card_from_the_stages_assets(media: JobMedia, settings: Settings) -> None:
    job = make_job(media, settings)
    state = LocalExecutor(settings, dag=publish_dag(), publisher=CardPublisher(settings)).run(
        job.spec
    )
    assert state.status is JobStatus.SUCCEEDED, state.error
    assert state.stages["publish_playable"].status is StageStatus.DONE
    out = Path(settings.storage.output)
    data = read_json(out, f"{job.card_id}/card.json")
    jsonschema.Draft202012Validator(SCHEMA).validate(data)
    card = Card.model_validate(data)
    assert card.status is CardStatus.READY
    assert card.schema_version == "1.2"
    assert card.streams.hls == "hls/master.m3u8"
    assert [(s.src, s.width, s.height) for s in card.streams.mp4] == [("mp4/180p.mp4", 320, 180)]
    assert card.streams.audio == "mp4/audio.m4a"
    assert card.poster is not None
    assert (card.poster.src, card.poster.width, card.poster.height) == (
        "thumbs/poster-320.jpg",
        320,
        180,
    )
    assert card.poster.srcset == "thumbs/poster-160.jpg 160w, thumbs/poster-320.jpg 320w"
    assert {s.type for s in card.poster.sources} == {"image/jpeg", "image/webp"}
    assert card.poster.placeholder and card.poster.alt
    assert [(c.lang, c.src, c.srt, c.automatic) for c in card.captions] == [
        ("en", "captions/en.vtt", "captions/en.srt", False)
    ]
    assert card.transcript is not None and card.transcript.txt == "captions/transcript.txt"
    assert card.storyboard == "thumbs/storyboard.vtt"
    assert card.preview_clip == "thumbs/preview.mp4"
    assert card.link.label == "Watch recording" and card.link.href == "watch.html"
    assert card.pages is not None and card.pages.oembed == "oembed.json"
    assert card.source.platform == "YouTube"
    assert card.excerpt.endswith(" [...]")
    assert card.duration is not None and card.duration.iso8601 == "PT4S"
    for link in card_links(card):
        assert (out / job.card_id / link).is_file(), link
    assert not (out / job.card_id / "hls-copy").exists(), "the stream copy went with the ready card"


def test_manifest_lists_every_file_with_checksums(media: JobMedia, settings: Settings) -> None:
    job = make_job(media, settings)
    LocalExecutor(settings, dag=publish_dag()).run(job.spec)
    out = Path(settings.storage.output)
    manifest = Manifest.model_validate(read_json(out, f"{job.card_id}/manifest.json"))
    on_disk = {
        p.relative_to(out / job.card_id).as_posix()
        for p in (out / job.card_id).rglob("*")
        if p.is_file()
    }
    listed = {a.path for a in manifest.assets if not a.path.startswith("../")}
    assert listed == on_disk - {"card.json", "manifest.json"}
    for asset in manifest.assets:
        data = (out / job.card_id / asset.path).resolve().read_bytes()
        assert asset.size == len(data) and asset.sha256 == hashlib.sha256(data).hexdigest()
    by_path = {a.path: a for a in manifest.assets}
    mp4 = by_path["mp4/180p.mp4"]
    assert (mp4.type, mp4.width, mp4.height, mp4.duration) == ("video/mp4", 320, 180, 4.0)
    assert by_path["hls/master.m3u8"].type == "application/vnd.apple.mpegurl"
    static = [a.path for a in manifest.assets if a.role == "static"]
    assert any("hls." in p and p.endswith(".min.js") for p in static), "hls.js is published"
    assert all((out / job.card_id / p).resolve().is_file() for p in static)


def test_playable_card_points_at_the_stream_copy(media: JobMedia, settings: Settings) -> None:
    job = make_job(media, settings)
    result = run_publish_playable(stage_context(job, settings, "publish_playable"))
    assert result.data["card_status"] == "playable"
    out = Path(settings.storage.output)
    card = Card.model_validate(read_json(out, f"{job.card_id}/card.json"))
    assert card.status is CardStatus.PLAYABLE
    assert card.streams.hls == "hls-copy/master.m3u8"
    assert card.pages is not None and card.pages.watch_html == "watch.html"
    for link in card_links(card):
        assert (out / job.card_id / link).is_file(), link
    master = (out / job.card_id / "hls-copy" / "master.m3u8").read_text()
    assert "stream/index.m3u8" in master
    index = events.read_index(LocalStorage(out), "munich-security-conference-2026")
    assert index is not None and index.cards[0].status is CardStatus.PLAYABLE


def test_a_playable_card_never_replaces_a_ready_one(media: JobMedia, settings: Settings) -> None:
    job = make_job(media, settings)
    run_publish(stage_context(job, settings, "publish"))
    late = run_publish_playable(stage_context(job, settings, "publish_playable"))
    assert late.data["published"] is False
    out = Path(settings.storage.output)
    card = Card.model_validate(read_json(out, f"{job.card_id}/card.json"))
    assert card.status is CardStatus.READY and card.streams.hls == "hls/master.m3u8"
    assert not (out / job.card_id / "hls-copy").exists()


def test_publish_playable_is_skipped_without_a_stream_copy(
    media: JobMedia, settings: Settings
) -> None:
    job = make_job(media, settings, stages=("ingest", "transcode", "thumbnails", "transcript"))
    result = run_publish_playable(stage_context(job, settings, "publish_playable"))
    assert result.status is StageStatus.SKIPPED


def test_without_a_stream_the_card_stays_an_improved_preview(
    media: JobMedia, settings: Settings
) -> None:
    job = make_job(media, settings, stages=("ingest", "transcript"))
    state = LocalExecutor(settings, dag=publish_dag(("ingest", "transcript"))).run(job.spec)
    assert state.status is JobStatus.SUCCEEDED, state.error
    card = Card.model_validate(read_json(Path(settings.storage.output), f"{job.card_id}/card.json"))
    assert card.status is CardStatus.PREVIEW
    assert card.transcript is not None and card.captions
    assert card.pages is not None and card.pages.watch_html is None
    assert card.link.href == "https://www.youtube.com/watch?v=msc2026qt1"


def test_excerpt_falls_back_to_the_transcript_opening(media: JobMedia, settings: Settings) -> None:
    job = make_job(media, settings, info=make_info(description="#msc2026 https://example.org"))
    run_publish(stage_context(job, settings))
    card = Card.model_validate(read_json(Path(settings.storage.output), f"{job.card_id}/card.json"))
    assert card.excerpt.startswith("Welcome to the Munich Security Conference.")


def test_public_base_url_makes_every_link_absolute(media: JobMedia, tmp_path: Path) -> None:
    base = "https://cdn.example.org/recast"
    settings = make_settings(tmp_path, storage={"public_base_url": base}, publish={"gc_grace_s": 0})
    job = make_job(media, settings)
    run_publish(stage_context(job, settings))
    out = Path(settings.storage.output)
    card = Card.model_validate(read_json(out, f"{job.card_id}/card.json"))
    for link in card_links(card):
        assert link.startswith(f"{base}/{job.card_id}/"), link
    assert card.jsonld["embedUrl"] == f"{base}/{job.card_id}/watch.html"
    watch = (out / job.card_id / "watch.html").read_text()
    assert f'<link rel="canonical" href="{base}/{job.card_id}/watch.html">' in watch
    assert f'src="{base}/_static/watch.' in watch
    oembed = read_json(out, f"{job.card_id}/oembed.json")
    assert f'src="{base}/{job.card_id}/watch.html"' in oembed["html"]
    index = read_json(out, "events/munich-security-conference-2026.json")
    assert index["cards"][0]["card"] == f"{base}/{job.card_id}/card.json"
    assert index["cards"][0]["poster"]["src"].startswith(f"{base}/{job.card_id}/thumbs/")


def test_preview_is_published_then_replaced_never_downgraded(
    media: JobMedia, settings: Settings
) -> None:
    job = make_job(media, settings)
    publisher = CardPublisher(settings)
    ctx = ingest_context(job.spec, settings)
    publisher.preview(ctx)
    out = Path(settings.storage.output)
    card = Card.model_validate(read_json(out, f"{job.card_id}/card.json"))
    assert card.status is CardStatus.PREVIEW
    assert card.poster is not None and card.poster.src.startswith("thumbs/source-")
    assert (out / job.card_id / "card.html").is_file()
    assert not (out / job.card_id / "watch.html").exists()
    assert sorted(p.name for p in (out / job.card_id).iterdir()) == [
        "card.html",
        "card.json",
        "manifest.json",
        "source.json",
        "thumbs",
    ]
    run_publish(stage_context(job, settings))
    publisher.preview(ctx)  # a late preview (a re-run of ingest, say)
    card = Card.model_validate(read_json(out, f"{job.card_id}/card.json"))
    assert card.status is CardStatus.READY
    assert not list((out / job.card_id / "thumbs").glob("source-*")), "preview poster removed"
    publisher.job_failed(JobState.new(job.spec))
    assert (out / job.card_id / "card.json").is_file(), "a failed job never removes a ready card"


def test_a_failed_jobs_preview_is_withdrawn(media: JobMedia, settings: Settings) -> None:
    job = make_job(media, settings)
    publisher = CardPublisher(settings)
    publisher.preview(ingest_context(job.spec, settings))
    out = Path(settings.storage.output)
    slug = "munich-security-conference-2026"
    assert [e.id for e in events.read_index(LocalStorage(out), slug).cards] == [job.card_id]  # type: ignore[union-attr]
    publisher.job_failed(JobState.new(job.spec))
    assert not (out / job.card_id).exists()
    assert events.read_index(LocalStorage(out), slug).cards == []  # type: ignore[union-attr]


def test_republishing_uploads_only_what_changed(media: JobMedia, settings: Settings) -> None:
    job = make_job(media, settings)
    first = run_publish(stage_context(job, settings))
    again = run_publish(stage_context(job, settings))
    assert first.data["uploaded"] > 10
    assert again.data["uploaded"] <= 3, "pages may change (times), media does not"


@pytest.mark.slow
def test_the_real_dag_end_to_end(tmp_path: Path) -> None:
    """``recast process``'s path with the real stages of the default DAG, whichever are built:
    the card is schema-valid, lists only files that exist, and is as good as the stages allow."""
    from pipeline.stages import default_dag
    from tests.support.media import make_speech_clip

    clip = make_speech_clip(
        tmp_path / "Panel on Europe.mp4", "Welcome to the Munich Security Conference."
    )
    settings = make_settings(
        tmp_path, publish={"gc_grace_s": 0}, transcript={"language": "en", "engine": "auto"}
    )
    spec = JobSpec(source=str(clip), event="Munich Security Conference 2026")
    state = LocalExecutor(settings, publisher=CardPublisher(settings)).run(spec)
    assert state.status is JobStatus.SUCCEEDED, state.error
    names = default_dag().names
    assert {"publish", "publish_playable"} <= set(names)
    out = Path(settings.storage.output)
    assert state.card_id is not None
    data = read_json(out, f"{state.card_id}/card.json")
    jsonschema.Draft202012Validator(SCHEMA).validate(data)
    card = Card.model_validate(data)
    for link in card_links(card):
        if "://" not in link:
            assert (out / card.id / link).is_file(), link
    manifest = Manifest.model_validate(read_json(out, f"{card.id}/manifest.json"))
    for asset in manifest.assets:
        assert (out / card.id / asset.path).resolve().is_file(), asset.path
    assert not (out / card.id / "hls-copy").exists()
    index = events.read_index(LocalStorage(out), "munich-security-conference-2026")
    assert index is not None and [e.id for e in index.cards] == [card.id]
    if "transcode" in names:
        assert card.status is CardStatus.READY and card.streams.hls
        assert (out / card.id / "watch.html").is_file()
    else:
        assert card.status is CardStatus.PREVIEW, "nothing to play without the transcode stage"
    if "transcript" in names:
        assert card.transcript is not None and card.captions
        assert "munich" in (out / card.id / card.transcript.txt).read_text().lower()


def test_committed_schema_is_the_generated_one() -> None:
    from pipeline.core.card import card_json_schema_text

    assert (ROOT / "docs" / "card.schema.json").read_text() == card_json_schema_text(), (
        "regenerate with: recast schema > docs/card.schema.json"
    )
