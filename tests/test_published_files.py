"""What a web server finds in the output: every file 0644 and every folder 0755 whatever the
umask, card.html in plain ASCII that reads right without a charset (Chromium, file:// URL, on
its own and embedded), and no server path of a local-file source anywhere.

One real job runs the default DAG on a tiny local file (a Chinese name, so the card's title
is Chinese) under umask 077, with the preview card, pages, static files and event index.
"""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import jsonschema
import pytest

from pipeline.core.card import Card, CardStatus
from pipeline.core.errors import ConfigError, ErrorCode
from pipeline.core.job import JobSpec, JobStatus
from pipeline.core.settings import load_settings
from pipeline.engine.local import LocalExecutor
from pipeline.publish import webhooks
from pipeline.publish.publisher import CardPublisher
from pipeline.storage import LocalStorage
from tests.conftest import make_settings
from tests.support.browser import chromium
from tests.support.media import make_clip

pytestmark = pytest.mark.slow  # end to end with real tools: not in the fast set

ROOT = Path(__file__).resolve().parent.parent
SCHEMA = json.loads((ROOT / "docs" / "card.schema.json").read_text())
TITLE = "慕尼黑安全会议：欧洲的防务与“威慑”"


@dataclass(frozen=True)
class Published:
    out: Path
    card: Card
    source_dir: Path


@pytest.fixture(scope="module")
def published(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Published]:
    tmp = tmp_path_factory.mktemp("published")
    source_dir = tmp / "private-recordings-of-ops"
    clip = make_clip(source_dir / f"{TITLE}.mp4", duration=1.0, size="160x90")
    settings = make_settings(tmp, publish={"gc_grace_s": 0}, transcript={"engine": "none"})
    previous = os.umask(0o077)
    try:
        spec = JobSpec(source=str(clip), event="Munich Security Conference 2026")
        state = LocalExecutor(settings, publisher=CardPublisher(settings)).run(spec)
    finally:
        os.umask(previous)
        webhooks.stop_dispatchers()
    assert state.status is JobStatus.SUCCEEDED, state.error
    out = Path(settings.storage.output)
    card = Card.model_validate_json((out / f"{state.card_id}/card.json").read_bytes())
    yield Published(out, card, source_dir)


def test_every_published_file_is_0644_and_every_folder_0755_under_umask_077(
    published: Published,
) -> None:
    out = published.out
    assert published.card.status is CardStatus.READY
    files = [p for p in out.rglob("*") if p.is_file()]
    assert len(files) > 10 and (out / "events").is_dir() and (out / "_static").is_dir()
    wrong = {
        str(p.relative_to(out)): oct(stat.S_IMODE(p.stat().st_mode))
        for p in [out, *out.rglob("*")]
        if stat.S_IMODE(p.stat().st_mode) != (0o755 if p.is_dir() else 0o644)
    }
    assert wrong == {}


def test_a_local_file_job_publishes_no_server_path(published: Published) -> None:
    card = published.card
    needles = {os.fsencode(published.source_dir), os.fsencode(published.source_dir.resolve())}
    needles |= {json.dumps(str(published.source_dir))[1:-1].encode()}  # as JSON escapes it
    leaks = [
        str(p.relative_to(published.out))
        for p in published.out.rglob("*")
        if p.is_file() and any(needle in p.read_bytes() for needle in needles)
    ]
    assert leaks == []
    assert card.source.url == "", "a local file has no public page to link to"
    assert card.link.href == "watch.html", "Watch recording opens the published page"
    watch = (published.out / card.id / "watch.html").read_text("utf-8")
    assert 'href=""' not in watch, "no empty source link on the page"
    jsonschema.Draft202012Validator(SCHEMA).validate(json.loads(card.to_json()))


def test_card_html_is_ascii_and_shows_the_chinese_title_in_chromium_without_a_server(
    published: Published, tmp_path: Path
) -> None:
    card_html = published.out / published.card.id / "card.html"
    snippet = card_html.read_bytes()
    snippet.decode("ascii")  # every other character is a character reference
    assert published.card.title == TITLE
    embedding = tmp_path / "cms-page.html"  # a page of another encoding that embeds it
    embedding.write_bytes(
        b'<!doctype html><html><head><meta charset="windows-1252"><title>CMS</title></head>'
        b"<body><main>" + snippet + b"</main></body></html>"
    )
    with chromium(tmp_path / "profile", 800, 600) as browser:
        for page_file in (card_html, embedding):
            page = browser.new_page()
            page.goto(page_file.as_uri())
            text: str = page.evaluate("document.body.innerText")
            assert TITLE in text, page_file.name
            assert page.locator("h3").inner_text() == TITLE
            page.close()


@pytest.mark.parametrize("mode", ["0888", "0400", "rw-r--r--", "64", "01644"])
def test_a_bad_file_mode_fails_at_start(mode: str) -> None:
    with pytest.raises(ConfigError) as raised:
        load_settings(storage={"file_mode": mode})
    assert raised.value.code is ErrorCode.CONFIG_INVALID
    assert "storage.file_mode" in raised.value.message


def test_folders_take_the_file_mode_plus_search_where_readable(tmp_path: Path) -> None:
    settings = load_settings(storage={"file_mode": "0640"})
    assert settings.storage.dir_permissions == 0o750
    storage = LocalStorage(
        tmp_path / "out",
        file_mode=settings.storage.file_permissions,
        dir_mode=settings.storage.dir_permissions,
    )
    previous = os.umask(0o077)
    try:
        storage.put_bytes("a/b/c.json", b"{}")
    finally:
        os.umask(previous)
    assert stat.S_IMODE((tmp_path / "out" / "a" / "b").stat().st_mode) == 0o750
    assert stat.S_IMODE((tmp_path / "out" / "a" / "b" / "c.json").stat().st_mode) == 0o640
