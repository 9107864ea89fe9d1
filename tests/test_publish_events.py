"""The event index: newest first, updated on publish and removal, and no card lost when cards
are published at the same moment (threads and processes, local disk and S3)."""

from __future__ import annotations

import multiprocessing
import threading
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from pipeline.core.card import Card, CardStatus
from pipeline.core.job import utcnow
from pipeline.core.settings import Settings
from pipeline.publish import events, webhooks, writer
from pipeline.stages.publish import run_publish
from pipeline.storage import Storage, open_storage
from tests.conftest import make_settings
from tests.support.publishing import JobMedia, make_info, make_job, stage_context
from tests.support.s3server import S3Server

SLUG = "munich-security-conference-2026"


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> JobMedia:
    return JobMedia(tmp_path_factory.mktemp("event-media"))


@pytest.fixture(scope="module")
def s3() -> Iterator[S3Server]:
    with S3Server() as server:
        yield server


_buckets = iter(range(1000))


@pytest.fixture(params=["local", "s3"])
def settings(request: pytest.FixtureRequest, tmp_path: Path, s3: S3Server) -> Iterator[Settings]:
    publish = {"gc_grace_s": 0} | s3.publish_settings()
    storage = {}
    if request.param == "s3":
        storage = {"output": f"s3://{s3.bucket(f'events-{next(_buckets)}')}/site"}
    yield make_settings(tmp_path, publish=publish, storage=storage)
    webhooks.stop_dispatchers()


def publish_card(media: JobMedia, settings: Settings, number: int, published: str | None) -> str:
    info = make_info(source_id=f"talk{number}", title=f"Talk {number}", published=published)
    job = make_job(media, settings, info=info)
    run_publish(stage_context(job, settings))
    return job.card_id


def index_ids(storage: Storage) -> list[str]:
    index = events.read_index(storage, SLUG)
    assert index is not None
    return [entry.id for entry in index.cards]


def test_cards_are_listed_newest_first(media: JobMedia, settings: Settings) -> None:
    storage = open_storage(settings)
    publish_card(media, settings, 1, "2026-02-13")
    publish_card(media, settings, 2, "2026-02-15")
    publish_card(media, settings, 3, "2026-02-14")
    publish_card(media, settings, 1, "2026-02-13")  # republished: keeps its place
    assert index_ids(storage) == ["youtube-talk2", "youtube-talk3", "youtube-talk1"]
    index = events.read_index(storage, SLUG)
    assert index is not None and index.event.name == "Munich Security Conference 2026"
    entry = index.cards[0]
    assert (entry.title, entry.status, entry.duration, entry.platform) == (
        "Talk 2",
        CardStatus.READY,
        "0:04",
        "YouTube",
    )
    assert entry.card == "../youtube-talk2/card.json"
    assert entry.watch == "../youtube-talk2/watch.html"
    assert entry.poster is not None and entry.poster.src == "../youtube-talk2/thumbs/poster-320.jpg"
    assert storage.exists("youtube-talk2/card.json")


def test_two_publishes_at_once_lose_neither(media: JobMedia, settings: Settings) -> None:
    jobs = [
        make_job(media, settings, info=make_info(source_id=f"same{n}", title=f"Same {n}"))
        for n in range(2)
    ]
    contexts = [stage_context(job, settings) for job in jobs]
    start = threading.Barrier(len(contexts))
    errors: list[BaseException] = []

    def publish(index: int) -> None:
        try:
            start.wait()
            run_publish(contexts[index])
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=publish, args=(i,)) for i in range(len(contexts))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert sorted(index_ids(open_storage(settings))) == ["youtube-same0", "youtube-same1"]


def test_many_concurrent_index_updates_keep_every_card(media: JobMedia, settings: Settings) -> None:
    storage = open_storage(settings)
    job = make_job(media, settings)
    run_publish(stage_context(job, settings))
    card = Card.model_validate_json(storage.get_bytes(f"{job.card_id}/card.json") or b"")
    now = utcnow()
    clones = [card.model_copy(update={"id": f"clone-{n}"}) for n in range(8)]
    start = threading.Barrier(len(clones))

    def upsert(clone: Card) -> None:
        start.wait()
        events.upsert(storage, clone, now)

    threads = [threading.Thread(target=upsert, args=(clone,)) for clone in clones]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(index_ids(storage)) == sorted([job.card_id] + [c.id for c in clones])


def test_withdrawn_card_leaves_the_index(media: JobMedia, settings: Settings) -> None:
    storage = open_storage(settings)
    first = publish_card(media, settings, 1, "2026-02-13")
    second = publish_card(media, settings, 2, "2026-02-14")
    assert writer.withdraw(storage, settings, first, utcnow())
    assert index_ids(storage) == [second]
    assert storage.list(f"{first}/") == []


def test_a_card_moved_to_another_event_leaves_the_first(
    media: JobMedia, settings: Settings
) -> None:
    storage = open_storage(settings)
    info = make_info(source_id="mover")
    run_publish(stage_context(make_job(media, settings, info=info), settings))
    moved = make_job(media, settings, info=info, event="Munich Security Conference 2027")
    run_publish(stage_context(moved, settings))
    assert index_ids(storage) == []
    assert [e.id for e in events.read_index(storage, "munich-security-conference-2027").cards] == [  # type: ignore[union-attr]
        "youtube-mover"
    ]


def test_undated_cards_order_by_when_they_joined(media: JobMedia, settings: Settings) -> None:
    storage = open_storage(settings)
    card_id = publish_card(media, settings, 1, None)
    card = Card.model_validate_json(storage.get_bytes(f"{card_id}/card.json") or b"")
    later = utcnow() + timedelta(days=1)
    events.upsert(storage, card.model_copy(update={"id": "newer"}), later)
    events.upsert(storage, card.model_copy(update={"id": "older"}), later - timedelta(days=400))
    assert index_ids(storage) == ["newer", card_id, "older"]


def _publish_in_process(root: str, media: JobMedia, number: int) -> None:
    settings = make_settings(Path(root), publish={"gc_grace_s": 0})
    publish_card(media, settings, number, "2026-02-14")


def test_two_processes_publishing_at_once_lose_neither(media: JobMedia, tmp_path: Path) -> None:
    context = multiprocessing.get_context("fork")  # arguments are inherited, not pickled
    procs = [
        context.Process(target=_publish_in_process, args=(str(tmp_path), media, n)) for n in (7, 8)
    ]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(60)
    assert [proc.exitcode for proc in procs] == [0, 0]
    settings = make_settings(tmp_path)
    assert sorted(index_ids(open_storage(settings))) == ["youtube-talk7", "youtube-talk8"]
