"""Clips: a ready card cut into a card of its own, for real (ffmpeg, yt-dlp against the local
HTTP server, the local executor, Redis for the API).

The parent is a 30 s 160x90 10 fps recording whose frames carry their number as a row of
black and white blocks (bit i of frame n lights block i), with a tone and human captions
served beside it, processed once for the module (``recast process``'s executor). Its source
has a keyframe every 6.4 s and the ladder one every 1.6 s, so 12.0 s is a keyframe in
neither: a cut that snapped to keyframes would show in the frame numbers.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from pipeline.cli.main import main
from pipeline.core.card import Card, CardStatus
from pipeline.core.clip import ClipSpec, clip_card_id, parse_time
from pipeline.core.errors import ErrorCode, RecastError
from pipeline.core.job import JobSpec, JobStatus
from pipeline.core.settings import Settings
from pipeline.core.timedtext import TranscriptDocument
from pipeline.engine.distributed.coordinator import Coordinator
from pipeline.engine.distributed.jobstore import JobStore
from pipeline.engine.distributed.stagerun import StageRunner
from pipeline.engine.local import LocalExecutor
from pipeline.media.clips import cut_transcript, snap_cut, word_spans
from pipeline.publish.assemble import validate_card
from pipeline.publish.cardbuilder import build_card
from pipeline.publish.clips import ClipRequest, plan_clip
from pipeline.publish.keys import card_key
from pipeline.publish.publisher import CardPublisher
from pipeline.storage import open_storage
from tests.conftest import make_settings
from tests.support.httpserver import MediaServer
from tests.support.media import run_ffmpeg
from tests.support.publishing import make_info
from tests.support.webvtt_strict import check_webvtt
from tests.support.workers import (
    FINAL,
    InlineDispatcher,
    RedisServer,
    tiny_sections,
    write_config,
)
from tests.test_cli_contract import served
from workers.api import create_api

WIDTH, HEIGHT, RATE, DURATION = 160, 90, 10, 30
BITS, BLOCK = 10, 16
TOKEN = "clip-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
CAPTIONS = """WEBVTT

00:00:01.000 --> 00:00:04.000
Good morning and welcome to the panel.

00:00:05.000 --> 00:00:09.000
We begin with energy security in Europe.

00:00:10.000 --> 00:00:11.600
Before the clip.

00:00:12.000 --> 00:00:14.800
The clip begins right here.

00:00:15.200 --> 00:00:17.600
Every frame carries its number.

00:00:18.000 --> 00:00:19.700
This ends the clip.

00:00:20.400 --> 00:00:23.000
After the clip, questions follow.

00:00:24.000 --> 00:00:28.000
Thank you all for coming today.
"""


def numbered_recording(path: Path) -> Path:
    """Frame n shows n in binary: block i (16 px wide, top 60 rows) white when bit i is set."""
    pattern = (
        f"nullsrc=size={WIDTH}x{HEIGHT}:rate={RATE}:duration={DURATION},format=gray,"
        f"geq=lum='if(lt(Y,60),if(mod(floor(N/pow(2,floor(X/{BLOCK}))),2),235,16),128)'"
    )
    run_ffmpeg(
        *("-f", "lavfi", "-i", pattern),
        *("-f", "lavfi", "-i", f"sine=frequency=440:sample_rate=48000:duration={DURATION}"),
        *("-c:v", "libx264", "-preset", "ultrafast", "-g", "64", "-pix_fmt", "yuv420p"),
        *("-c:a", "aac", "-b:a", "64k", str(path)),
    )
    return path


def frame_numbers(video: Path) -> list[int]:
    """The number each decoded frame of ``video`` carries, read from its pixels."""
    raw = subprocess.run(
        ["ffmpeg", "-v", "error", "-i", str(video), "-f", "rawvideo", "-pix_fmt", "gray", "-"],
        capture_output=True,
        check=True,
    ).stdout
    frames = np.frombuffer(raw, np.uint8).reshape(-1, HEIGHT, WIDTH)
    numbers = []
    for frame in frames:
        lit = [frame[20:40, bit * BLOCK + 4 : bit * BLOCK + 12].mean() > 128 for bit in range(BITS)]
        numbers.append(sum(1 << bit for bit, on in enumerate(lit) if on))
    return numbers


def stream_duration(path: Path, kind: str) -> float:
    out = subprocess.run(
        [
            *("ffprobe", "-v", "error", "-select_streams", kind),
            *("-show_entries", "stream=duration", "-of", "csv=p=0", str(path)),
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return float(out.strip())


@dataclass
class Parent:
    settings: Settings
    card: Card
    transcript: TranscriptDocument
    output: Path
    tmp: Path

    def clip_settings(self, **sections: dict[str, Any]) -> Settings:
        merged = self.settings.model_dump()
        for section, values in sections.items():
            merged[section].update(values)
        return Settings(**merged)


def parent_sections() -> dict[str, dict[str, Any]]:
    sections = tiny_sections()
    sections["media"] |= {"keyframe_interval_s": 1.6, "segment_s": 3.2}
    return sections


@pytest.fixture(scope="module")
def parent(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Parent]:
    tmp = tmp_path_factory.mktemp("clips")
    with MediaServer(tmp / "www") as server:
        server.put_file("talk/video.mp4", numbered_recording(tmp / "numbered.mp4"))
        server.add("talk/video.en.vtt", CAPTIONS, "text/vtt")
        page = server.add(
            "talk/page.html",
            "<html><head><title>Energy panel</title></head><body><video controls>"
            f'<source src="{server.url("talk/video.mp4")}" type="video/mp4">'
            f'<track kind="captions" srclang="en" label="English" '
            f'src="{server.url("talk/video.en.vtt")}"></video></body></html>',
        )
        settings = make_settings(tmp, **parent_sections())
        state = LocalExecutor(settings, publisher=CardPublisher(settings)).run(
            JobSpec(source=page, event="Munich Security Conference")
        )
    assert state.status is JobStatus.SUCCEEDED, state.error
    assert state.card_id is not None
    output = Path(settings.storage.output)
    card = Card.model_validate_json((output / card_key(state.card_id)).read_text())
    transcript = TranscriptDocument.model_validate_json(
        (output / state.card_id / "captions" / "transcript.json").read_text()
    )
    yield Parent(settings, card, transcript, output, tmp)


def parent_words_in(document: TranscriptDocument, start: float, end: float) -> list[str]:
    return [
        word.word
        for segment in document.segments
        for word in segment.words
        if start <= (word.start + word.end) / 2 < end
    ]


def published(parent: Parent, card_id: str, key: str) -> Path:
    return parent.output / card_id / key


def clip_words(parent: Parent, card_id: str) -> list[str]:
    document = TranscriptDocument.model_validate_json(
        published(parent, card_id, "captions/transcript.json").read_text()
    )
    return [word.word for segment in document.segments for word in segment.words]


# -- acceptance ----------------------------------------------------------------------------------


def test_a_clip_is_frame_accurate_and_carries_its_parents_words(
    parent: Parent, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A clip from 12.0 s to 20.0 s: first and last frames are the requested ones (read from
    the pixels), captions start at 0 and are the parent's words of that span, and the card
    validates with its parent link. Made by ``recast clip`` here and now."""
    config = write_config(parent.tmp / "recast.toml", parent.settings)
    capsys.readouterr()
    code = main(
        [
            *("--config", str(config), "clip", parent.card.id),
            *("--from", "12", "--to", "0:20", "--title", "The clip begins", "--json"),
        ]
    )
    said = json.loads(capsys.readouterr().out)
    assert code == 0, said
    clip_id = said["clip"]["id"]
    assert (
        clip_id == clip_card_id(parent.card.id, 12.0, 20.0) == f"{parent.card.id}-clip-12000-20000"
    )
    assert said["job"]["status"] == "succeeded" and said["job"]["card_id"] == clip_id
    card = Card.model_validate_json(published(parent, clip_id, "card.json").read_text())
    assert card.status is CardStatus.READY
    assert "from the parent's ingest media" in ingest_detail(parent.settings, said["job"]["id"])

    # frames: every one from 120 (12.0 s) to 199 (19.9 s), in order, from the published MP4
    [mp4] = card.streams.mp4
    numbers = frame_numbers(published(parent, clip_id, mp4.src))
    assert (numbers[0], numbers[-1]) == (120, 199)
    assert numbers == list(range(120, 200))
    audio = published(parent, clip_id, str(card.streams.audio))
    assert stream_duration(audio, "a:0") == pytest.approx(8.0, abs=0.05), "audio cut the same"

    # captions and transcript: the parent's words of [12, 20), from 0, same language and flags
    cues = check_webvtt(published(parent, clip_id, "captions/en.vtt").read_text())
    assert cues[0].start == pytest.approx(0.0, abs=0.001)
    assert cues[-1].end <= 8.0
    expected = parent_words_in(parent.transcript, 12.0, 20.0)
    assert expected[0] == "The" and expected[-1] == "clip."
    assert clip_words(parent, clip_id) == expected
    assert " ".join(c.text for c in cues).split() == expected
    [track] = card.captions
    assert (track.lang, track.automatic) == ("en", False)
    document = json.loads(published(parent, clip_id, "captions/transcript.json").read_text())
    assert (document["engine"], document["language"], document["automatic"]) == (
        "captions",
        "en",
        False,
    )

    # the card: its parent link, its own excerpt, poster and storyboard; valid
    validate_card(card)
    assert card.parent is not None
    assert (card.parent.id, card.parent.start, card.parent.end) == (parent.card.id, 12.0, 20.0)
    assert card.parent.url == f"../{parent.card.id}/watch.html"
    assert card.parent.title == parent.card.title
    assert card.jsonld["isPartOf"]["url"] == card.parent.url
    assert card.title == "The clip begins" and card.duration is not None
    assert card.duration.seconds == pytest.approx(8.0, abs=0.05)
    assert card.excerpt.startswith("The clip begins right here.")
    assert card.event is not None and card.event == parent.card.event
    assert card.poster is not None and card.storyboard is not None
    assert card.source.url == parent.card.source.url


def ingest_detail(settings: Settings, job_id: str) -> str:
    """What the clip job's ingest said it did (where it cut the media from)."""
    result = Path(settings.storage.workspace) / job_id / "ingest" / "_stage.json"
    detail: str = json.loads(result.read_text())["detail"]
    return detail


def test_without_the_parents_workspace_the_clip_is_cut_from_its_published_mp4(
    parent: Parent,
) -> None:
    """The parent's workspace gone (another machine, pruned): the clip is cut from the
    parent's published MP4, as accurately."""
    settings = parent.clip_settings(storage={"workspace": str(parent.tmp / "other-work")})
    plan = plan_clip(
        open_storage(settings),
        settings,
        ClipRequest(parent=parent.card.id, start="0:03.5", end="5.5", title="Short"),
    )
    state = LocalExecutor(settings, publisher=CardPublisher(settings)).run(plan.spec.job_spec())
    assert state.status is JobStatus.SUCCEEDED, state.error
    detail = ingest_detail(settings, state.id)
    assert detail.endswith(f"cut from the published {parent.card.id}/mp4/90p.mp4"), detail
    card = Card.model_validate_json(published(parent, plan.card_id, "card.json").read_text())
    numbers = frame_numbers(published(parent, plan.card_id, card.streams.mp4[0].src))
    assert numbers == list(range(35, 55))


# -- snapping --------------------------------------------------------------------------------------


def test_snap_moves_each_cut_into_the_nearest_pause(parent: Parent) -> None:
    storage = open_storage(parent.settings)
    request = ClipRequest(
        parent=parent.card.id, start="12.5", end="20.2", title="Snapped", snap=True
    )
    plan = plan_clip(storage, parent.settings, request)
    # 12.5 is inside "The clip begins"; the nearest pause is 11.6-12.0 (its start 0.15 s
    # before the word after it); 20.2 falls in the pause 19.7-20.4 (0.15 s after the word).
    assert (plan.spec.start, plan.spec.end) == (11.85, 19.85)
    assert (plan.snapped_start, plan.snapped_end) == (True, True)
    assert plan.describe()["requested"] == {"start": 12.5, "end": 20.2}
    unsnapped = plan_clip(
        storage, parent.settings, ClipRequest(**{**request.__dict__, "snap": False})
    )
    assert (unsnapped.spec.start, unsnapped.spec.end) == (12.5, 20.2)


def test_a_cut_with_no_pause_within_the_tolerance_stays_put() -> None:
    spans = [(float(i) * 0.5, float(i) * 0.5 + 0.5) for i in range(40)]  # 20 s of speech
    kept = snap_cut(10.2, spans, kind="start", pause_s=0.3, tolerance_s=2.0, duration=30.0)
    assert (kept.time, kept.snapped) == (10.2, False)
    end = snap_cut(19.0, spans, kind="end", pause_s=0.3, tolerance_s=2.0, duration=30.0)
    assert (end.time, end.snapped) == (20.15, True), "the silence after the last word"
    start = snap_cut(1.0, spans, kind="start", pause_s=0.3, tolerance_s=2.0, duration=30.0)
    assert (start.time, start.snapped) == (0.0, True), "the start of the recording"


def test_words_belong_to_the_clip_by_their_middle_and_are_retimed() -> None:
    document = TranscriptDocument.model_validate(
        {
            "language": "de",
            "language_source": "detected",
            "engine": "asr",
            "model": "whisper-base",
            "automatic": True,
            "word_timing": "recognised",
            "text": "a b c d",
            "segments": [
                {
                    "id": 0,
                    "start": 9.0,
                    "end": 13.0,
                    "text": "a b c d",
                    "words": [
                        {"word": "a", "start": 9.0, "end": 9.8, "confidence": 0.9},
                        {"word": "b", "start": 9.9, "end": 10.3, "confidence": 0.8},
                        {"word": "c", "start": 10.4, "end": 12.4, "confidence": 0.7},
                        {"word": "d", "start": 12.5, "end": 13.0, "confidence": 0.6},
                    ],
                }
            ],
        }
    )
    cut = cut_transcript(document, 10.0, 12.0)
    words = cut.segments[0].words
    assert [(w.word, w.start, w.end) for w in words] == [("b", 0.0, 0.3), ("c", 0.4, 2.0)]
    assert words[0].confidence == 0.8
    assert (cut.language, cut.engine, cut.automatic, cut.model) == (
        "de",
        "asr",
        True,
        "whisper-base",
    )
    assert cut.duration == 2.0 and cut.text == "b c"
    assert word_spans(cut) == [(0.0, 0.3), (0.4, 2.0)]


# -- refusals and times --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("12:30", 750.0), ("1:02:03.5", 3723.5), ("750", 750.0), ("750.25", 750.25), (12, 12.0)],
)
def test_times_are_read_as_seconds_or_clock_times(text: str | int, seconds: float) -> None:
    assert parse_time(text) == seconds


@pytest.mark.parametrize("text", ["", "-3", "1:75", "1:60:00", "12m", "1:2:3:4", "nan", True])
def test_a_time_that_cannot_be_read_is_refused(text: str | bool) -> None:
    with pytest.raises(RecastError) as refused:
        parse_time(text)
    assert refused.value.code is ErrorCode.CLIP_RANGE_INVALID


@pytest.mark.parametrize(
    ("start", "end", "says"),
    [
        ("20", "12", "before it starts"),
        ("12", "12", "before it starts"),
        ("25", "31", "outside the recording"),
        ("30", "31", "outside the recording"),
        ("12", "12.5", "at least 1 s"),
        ("1", "29", "over the limit of 20 s"),
    ],
)
def test_a_range_outside_too_short_too_long_or_reversed_is_refused(
    parent: Parent, start: str, end: str, says: str
) -> None:
    settings = parent.clip_settings(clips={"max_duration_s": 20.0})
    with pytest.raises(RecastError) as refused:
        plan_clip(
            open_storage(settings),
            settings,
            ClipRequest(parent=parent.card.id, start=start, end=end, title="No"),
        )
    assert refused.value.code is ErrorCode.CLIP_RANGE_INVALID
    assert says in refused.value.message


# -- the API, end to end ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def api(parent: Parent) -> Iterator[tuple[TestClient, Settings, JobStore]]:
    with RedisServer(parent.tmp / "redis") as redis_server:
        url = redis_server.url
        settings = parent.clip_settings(
            cluster={"redis_url": url, "broker_url": url, "result_backend": url},
            api={"tokens": [TOKEN]},
        )
        yield TestClient(create_api(settings)), settings, JobStore(settings.cluster)


def run_in_process(settings: Settings, store: JobStore, job_id: str) -> str:
    """The job's stages run here, as workers would run them (the production store,
    coordinator and stage runner; the broker's messages left alone)."""
    inline = InlineDispatcher()
    runner = StageRunner(Coordinator(settings, store, inline), publisher=CardPublisher(settings))
    runner.execute(job_id, "ingest", task_id="t", worker="test")
    for _ in range(200):
        record = store.get(job_id)
        assert record is not None
        if str(record.state.status) in FINAL:
            return str(record.state.status)
        runner.coordinator.dispatch_due()
        while inline.sent:
            sent_job, stage = inline.sent.pop(0)
            runner.execute(sent_job, stage, task_id="t", worker="test")
    raise AssertionError(f"job {job_id} did not finish")


def test_the_api_cuts_a_clip_and_the_same_request_gives_the_same_clip(
    parent: Parent, api: tuple[TestClient, Settings, JobStore]
) -> None:
    client, settings, store = api
    body = {"from": "0:06", "to": 9.5, "title": "Energy", "snap": True}
    response = client.post(f"/v1/cards/{parent.card.id}/clips", json=body, headers=AUTH)
    assert response.status_code == 202, response.text
    answer = response.json()
    clip = answer["clip"]
    # 6.0 is inside a sentence: back to the pause before it (4.0-5.0); 9.5 is in 9.0-10.0
    assert (clip["start"], clip["end"]) == (4.85, 9.15)
    assert clip["snapped"] == {"start": True, "end": True}
    assert clip["id"] == clip_card_id(parent.card.id, 4.85, 9.15)
    assert answer["job"]["new"] is True
    assert run_in_process(settings, store, answer["job"]["id"]) == "succeeded"
    card = client.get(clip["card_url"], headers=AUTH)
    assert card.status_code == 200
    published_card = Card.model_validate(card.json())
    assert published_card.status is CardStatus.READY and published_card.parent is not None
    assert published_card.excerpt.startswith("We begin with energy security in Europe.")

    again = client.post(f"/v1/cards/{parent.card.id}/clips", json=body, headers=AUTH).json()
    assert again["clip"]["id"] == clip["id"]
    assert (again["job"]["id"], again["job"]["new"]) == (answer["job"]["id"], False)


def test_the_api_refuses_with_stable_codes(
    parent: Parent, api: tuple[TestClient, Settings, JobStore]
) -> None:
    client, settings, _store = api
    body = {"from": 12, "to": 20, "title": "X"}

    def post(card_id: str, **changes: Any) -> tuple[int, str]:
        response = client.post(f"/v1/cards/{card_id}/clips", json=body | changes, headers=AUTH)
        return response.status_code, response.json()["error"]["code"]

    assert post("no-such-card") == (404, "clip.parent_not_found")
    not_ready = build_card(
        make_info(source_id="not-ready"),
        settings,
        status=CardStatus.PREVIEW,
        event=None,
        poster=None,
        updated=parent.card.updated,
    )
    open_storage(settings).put_bytes(card_key(not_ready.id), not_ready.to_json().encode())
    assert post(not_ready.id) == (409, "clip.parent_not_ready")
    assert post(parent.card.id, to=40) == (422, "clip.range_invalid")
    assert post(parent.card.id, to="12.4") == (422, "clip.range_invalid")
    assert post(parent.card.id, to="11") == (422, "clip.range_invalid")
    assert post(parent.card.id, to="soon") == (422, "clip.range_invalid")
    assert post(parent.card.id, title="") == (422, "request.invalid")
    assert client.post(f"/v1/cards/{parent.card.id}/clips", json=body).status_code == 401


def test_recast_clip_submits_through_redis_and_through_the_api_alike(
    parent: Parent,
    api: tuple[TestClient, Settings, JobStore],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _client, settings, store = api
    config = write_config(parent.tmp / "cluster.toml", settings)
    monkeypatch.setenv("RECAST_CONFIG", str(config))
    for name in ("RECAST_API_URL", "RECAST_API_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    clip = ["clip", parent.card.id, "--from", "21", "--to", "0:23.5", "--title", "Questions"]

    def recast(*argv: str) -> tuple[int, Any]:
        capsys.readouterr()
        code = main(list(argv))
        return code, json.loads(capsys.readouterr().out)

    code, queued = recast("--config", str(config), *clip, "--submit", "--social", "--json")
    assert code == 0, queued
    assert queued["clip"]["id"] == clip_card_id(parent.card.id, 21.0, 23.5)
    assert (queued["job"]["status"], queued["job"]["new"]) == ("queued", True)
    record = store.get(queued["job"]["id"])
    assert record is not None
    assert record.state.spec.options["social"] == {"crop_x": None, "captions": False}
    with served(create_api(settings)) as url:
        code, again = recast("--api", url, "--token", TOKEN, *clip, "--social", "--json")
        assert code == 0, again
        assert again["clip"] == queued["clip"]
        assert (again["job"]["id"], again["job"]["new"]) == (queued["job"]["id"], False)
        code, refused = recast("--api", url, "--token", TOKEN, "clip", "nope", *clip[2:], "--json")
    assert code == 2 and refused["error"]["code"] == "clip.parent_not_found"


def test_a_clip_spec_makes_the_same_job_for_the_same_clip() -> None:
    spec = ClipSpec(parent="youtube-abc", start=12.0, end=20.0, title="T")
    assert spec.job_spec().job_id == ClipSpec.model_validate(spec.model_dump()).job_spec().job_id
    assert spec.job_spec().job_id != spec.model_copy(update={"title": "U"}).job_spec().job_id
    long_parent = "x" * 113
    long_id = clip_card_id(long_parent, 1.0, 2.5)
    assert len(long_id) <= 120 and long_id.endswith("-clip-1000-2500")
    assert long_id != clip_card_id("x" * 112 + "y", 1.0, 2.5)
