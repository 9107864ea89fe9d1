"""A card belongs to its source: two sources never share a card id, and a job never replaces
a card that another source published (``card.conflict``) unless the producer forces it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipeline.core.dag import Dag
from pipeline.core.errors import ErrorCode
from pipeline.core.job import JobSpec, JobState, JobStatus
from pipeline.core.settings import Settings
from pipeline.core.source import card_id_for
from pipeline.engine.local import LocalExecutor
from pipeline.publish.ownership import FORCE_OPTION
from pipeline.publish.publisher import CardPublisher
from pipeline.stages.ingest import STAGE as INGEST_STAGE
from tests.support.httpserver import MediaServer
from tests.support.media import make_clip


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("ownership")
    return (
        make_clip(folder / "one.mp4", duration=1.0, title="First talk"),
        make_clip(folder / "two.mp4", duration=1.0, title="Second talk"),
    )


def ingest(settings: Settings, source: str, **options: object) -> JobState:
    executor = LocalExecutor(
        settings, dag=Dag.of([INGEST_STAGE]), publisher=CardPublisher(settings)
    )
    return executor.run(JobSpec(source=source, options=dict(options)))


def card_of(settings: Settings, state: JobState) -> dict[str, object]:
    assert state.card_id is not None
    path = Path(settings.storage.output) / state.card_id / "card.json"
    data: dict[str, object] = json.loads(path.read_text("utf-8"))
    return data


@pytest.mark.parametrize(
    ("one", "other"),
    [
        # YouTube ids are case-sensitive: these are two videos.
        (("youtube", "abcDEF12345", ""), ("youtube", "ABCdef12345", "")),
        # Characters a file name cannot keep must not fold two ids into one.
        (("vimeo", "123/456", ""), ("vimeo", "123_456", "")),
        (("vimeo", "a b", ""), ("vimeo", "a?b", "")),
        # A generic page's "id" is a name from its URL: two sites' video.mp4 differ.
        (
            ("generic", "video", "https://a.example/video.mp4"),
            ("generic", "video", "https://b.example/video.mp4"),
        ),
        (
            ("generic", "video", "https://a.example/x/video.mp4"),
            ("generic", "video", "https://a.example/y/video.mp4"),
        ),
    ],
)
def test_different_sources_never_share_a_card_id(
    one: tuple[str, str, str], other: tuple[str, str, str]
) -> None:
    assert card_id_for(*one) != card_id_for(*other)


def test_card_ids_stay_readable_and_stable() -> None:
    assert card_id_for("youtube", "dQw4w9WgXcQ", "https://www.youtube.com/watch?v=dQw4w9WgXcQ") == (
        "youtube-dQw4w9WgXcQ"
    )
    generic = card_id_for("generic", "video", "https://A.example/video.mp4")
    assert generic.startswith("generic-video-")
    assert generic == card_id_for("generic", "video", "https://a.example/video.mp4"), (
        "the host's case does not make another source"
    )


def test_two_sources_that_used_to_collide_get_two_cards(
    settings: Settings, server: MediaServer, clips: tuple[Path, Path]
) -> None:
    first_url = server.put_file("a/video.mp4", clips[0])
    second_url = server.put_file("b/video.mp4", clips[1])
    first = ingest(settings, first_url)
    assert first.status is JobStatus.SUCCEEDED, first.error
    first_card_path = Path(settings.storage.output) / str(first.card_id) / "card.json"
    before = first_card_path.read_bytes()

    second = ingest(settings, second_url)
    assert second.status is JobStatus.SUCCEEDED, second.error
    assert second.card_id != first.card_id
    assert first_card_path.read_bytes() == before, "the first card is unchanged"
    assert card_of(settings, first)["source"]["url"] == first_url  # type: ignore[index]
    assert card_of(settings, second)["source"]["url"] == second_url  # type: ignore[index]


def test_a_card_of_another_source_is_never_replaced_unless_forced(
    settings: Settings, server: MediaServer, clips: tuple[Path, Path]
) -> None:
    url = server.put_file("talk.mp4", clips[0])
    state = ingest(settings, url)
    assert state.status is JobStatus.SUCCEEDED, state.error
    card_path = Path(settings.storage.output) / str(state.card_id) / "card.json"
    # Another source's card under the same id (an older id scheme, a hand-made card).
    foreign = json.loads(card_path.read_text("utf-8"))
    foreign["source"]["id"] = "someone-else"
    foreign["title"] = "Another source's card"
    card_path.write_text(json.dumps(foreign), "utf-8")
    before = card_path.read_bytes()

    again = ingest(settings, url, note="second job")
    assert again.status is JobStatus.FAILED
    assert again.error is not None and again.error.code == ErrorCode.CARD_CONFLICT
    assert not again.error.transient
    assert card_path.read_bytes() == before, "the other source's card is left as it was"

    forced = ingest(settings, url, **{FORCE_OPTION: True})
    assert forced.status is JobStatus.SUCCEEDED, forced.error
    card = json.loads(card_path.read_text("utf-8"))
    assert card["source"]["id"] != "someone-else" and card["title"] != "Another source's card"
