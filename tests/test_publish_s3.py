"""Publishing to S3 (moto's server, the real S3 HTTP protocol) gives the same tree as the local
back end; and a reader polling a card while it is republished never meets a missing file."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pytest

from pipeline.core.card import Card, CardStatus
from pipeline.core.settings import Settings
from pipeline.publish import webhooks
from pipeline.publish.publisher import publish_from_stages
from pipeline.stages.publish import PLAYABLE_INPUTS, READY_INPUTS
from pipeline.storage import LocalStorage, Storage, open_storage
from pipeline.storage.s3 import S3Storage
from tests.conftest import make_settings
from tests.support.publishing import JobMedia, make_job, stage_context
from tests.support.s3server import S3Server

FIXED = datetime(2026, 2, 14, 18, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> JobMedia:
    return JobMedia(tmp_path_factory.mktemp("s3-media"))


@pytest.fixture(scope="module")
def s3() -> Iterator[S3Server]:
    with S3Server() as server:
        yield server


@pytest.fixture(autouse=True)
def _stop_dispatchers() -> Iterator[None]:
    yield
    webhooks.stop_dispatchers()


_buckets = iter(range(1000))


def s3_settings(tmp_path: Path, s3: S3Server, **publish: object) -> Settings:
    bucket = s3.bucket(f"site-{next(_buckets)}")
    return make_settings(
        tmp_path,
        storage={"output": f"s3://{bucket}/recast"},
        publish={"gc_grace_s": 0, **s3.publish_settings(), **publish},
    )


def publish_job(settings: Settings, job_media: JobMedia, now: datetime | None = None) -> str:
    job = make_job(job_media, settings)
    storage = open_storage(settings)
    ctx = stage_context(job, settings, "publish_playable")
    publish_from_stages(ctx, CardStatus.PLAYABLE, PLAYABLE_INPUTS, storage=storage, now=now)
    ctx = stage_context(job, settings, "publish")
    publish_from_stages(ctx, CardStatus.READY, READY_INPUTS, storage=storage, now=now)
    return job.card_id


def tree(storage: Storage) -> dict[str, bytes]:
    return {key: storage.get_bytes(key) or b"" for key in storage.list("")}


def test_local_and_s3_publish_the_same_tree(media: JobMedia, s3: S3Server, tmp_path: Path) -> None:
    local_settings = make_settings(tmp_path / "local", publish={"gc_grace_s": 0})
    remote_settings = s3_settings(tmp_path / "s3", s3)
    card_id = publish_job(local_settings, media, FIXED)
    assert publish_job(remote_settings, media, FIXED) == card_id
    local = tree(open_storage(local_settings))
    remote_storage = open_storage(remote_settings)
    assert isinstance(remote_storage, S3Storage)
    remote = tree(remote_storage)
    assert sorted(remote) == sorted(local)
    assert f"{card_id}/hls/master.m3u8" in remote and f"{card_id}/card.json" in remote
    assert not any("/hls-copy/" in key for key in remote), "the stream copy was removed"
    differing = [key for key in local if local[key] != remote[key]]
    assert differing == []
    client = s3.client()
    bucket, prefix = remote_storage.bucket, remote_storage.prefix
    for key, expected in [
        ("card.json", "application/json"),
        ("hls/master.m3u8", "application/vnd.apple.mpegurl"),
        ("watch.html", "text/html"),
        ("captions/en.vtt", "text/vtt"),
        ("thumbs/poster-320.webp", "image/webp"),
        ("mp4/180p.mp4", "video/mp4"),
    ]:
        head = client.head_object(Bucket=bucket, Key=f"{prefix}{card_id}/{key}")
        assert head["ContentType"].startswith(expected), key


def _hls_links(storage: Storage, key: str, seen: set[str]) -> list[str]:
    """Keys a playlist refers to, recursively (variant playlists, segments, init sections)."""
    data = storage.get_bytes(key)
    if data is None:
        return [key]
    base = key.rsplit("/", 1)[0]
    found: list[str] = []
    for line in data.decode().splitlines():
        uris = [line.strip()] if line and not line.startswith("#") else []
        if 'URI="' in line:
            uris.append(line.split('URI="', 1)[1].split('"', 1)[0])
        for uri in uris:
            target = f"{base}/{uri}"
            if target in seen:
                continue
            seen.add(target)
            found.append(target)
            if uri.endswith(".m3u8"):
                found += _hls_links(storage, target, seen)
    return found


def missing_links(storage: Storage, card_id: str) -> tuple[CardStatus | None, list[str]]:
    """What a reader finds broken right now: links in card.json (and, through the playlists,
    every segment) to objects that are not there."""
    data = storage.get_bytes(f"{card_id}/card.json")
    if data is None:
        return None, []
    card = Card.model_validate_json(data)
    links = [card.link.href, card.streams.hls, card.streams.audio, card.storyboard]
    links += [s.src for s in card.streams.mp4] + [c.src for c in card.captions]
    links += [c.srt for c in card.captions]
    if card.poster:
        links += [s.src for s in card.poster.sources]
    if card.transcript:
        links += [card.transcript.txt, card.transcript.json_url]
    if card.pages:
        links += [card.pages.card_html, card.pages.watch_html, card.pages.oembed]
    keys = [f"{card_id}/{link}" for link in links if link]
    missing = [key for key in keys if not storage.exists(key)]
    if card.streams.hls:
        master = f"{card_id}/{card.streams.hls}"
        missing += [k for k in _hls_links(storage, master, set()) if not storage.exists(k)]
    return card.status, missing


@dataclass
class Reader:
    storage: Storage
    card_id: str
    statuses: list[CardStatus] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    reads: int = 0
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        while not self.stop.is_set():
            status, missing = missing_links(self.storage, self.card_id)
            self.reads += 1
            self.missing += missing
            if status is not None and (not self.statuses or self.statuses[-1] != status):
                self.statuses.append(status)


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["local", "s3"])
def test_a_reader_never_sees_a_link_to_a_missing_file(
    backend: str, media: JobMedia, s3: S3Server, tmp_path: Path
) -> None:
    publish = {"gc_grace_s": 0.3}
    settings = (
        s3_settings(tmp_path, s3, **publish)
        if backend == "s3"
        else make_settings(tmp_path, publish=publish)
    )
    storage = open_storage(settings)
    job = make_job(media, settings)
    ctx = stage_context(job, settings, "publish_playable")
    publish_from_stages(ctx, CardStatus.PLAYABLE, PLAYABLE_INPUTS, storage=storage)
    reader = Reader(storage, job.card_id)
    thread = threading.Thread(target=reader.run)
    thread.start()
    try:
        time.sleep(0.05)
        # playable -> ready (hls-copy/ goes), then ready -> ready with another ladder (hls/180p/
        # goes, hls/240p/ comes, the master playlist changes in place).
        publish_from_stages(stage_context(job, settings), CardStatus.READY, READY_INPUTS)
        again = make_job(media, settings, rendition="240p")
        publish_from_stages(stage_context(again, settings), CardStatus.READY, READY_INPUTS)
        time.sleep(0.05)
    finally:
        reader.stop.set()
        thread.join()
    assert reader.missing == []
    assert reader.statuses == [CardStatus.PLAYABLE, CardStatus.READY]
    assert reader.reads >= 3
    keys = storage.list(f"{job.card_id}/")
    assert not any("/hls-copy/" in k or "/hls/180p/" in k for k in keys), "unused files removed"
    assert any("/hls/240p/" in k for k in keys)
    # The checker is not blind: a file taken away is reported.
    segment = next(k for k in keys if k.endswith(".ts"))
    storage.delete(segment)
    assert missing_links(storage, job.card_id)[1] == [segment]


def test_cli_output_option_takes_an_s3_url(media: JobMedia, s3: S3Server, tmp_path: Path) -> None:
    """``open_storage`` picks S3 by the URL's scheme, with the endpoint from settings."""
    settings = s3_settings(tmp_path, s3)
    card_id = publish_job(settings, media)
    storage = open_storage(settings)
    assert isinstance(storage, S3Storage)
    assert storage.exists(f"{card_id}/watch.html")
    assert not LocalStorage(tmp_path / "out").list("")
