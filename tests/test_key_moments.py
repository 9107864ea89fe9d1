"""Key moments: chapters as JSON-LD Clips with ``?t=`` URLs and a SeekToAction whose template the
watch page honours; chapter and transcript links to their times, server-rendered; in Chromium,
``watch.html?t=42`` starts at 42 s and a chapter link seeks in place.

One published card with chapters (a hostile title, a hostile chapter title) and one without,
made from a real 60 s, 160x90, 5 fps recording, served over HTTP to one headless Chromium.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

import pytest
from playwright.sync_api import BrowserContext, Dialog, Page

from pipeline.core.card import Card
from pipeline.core.settings import Settings
from pipeline.core.source import Chapter
from pipeline.publish import webhooks
from pipeline.publish.html import PageLinks, StaticUrls, WatchExtras, render_watch_html
from pipeline.publish.jsonld import video_jsonld
from pipeline.stages.publish import run_publish
from tests.conftest import make_settings
from tests.support.browser import chromium
from tests.support.httpserver import MediaServer
from tests.support.publishing import TRICKY_TITLE, JobMedia, make_info, make_job, stage_context

DURATION = 60.0
HOSTILE_CHAPTER = "Budgets </script><script>alert(1)</script> & <b>industry</b>"
CHAPTERS = [
    Chapter(title="Opening", start=0, end=20),
    Chapter(title=HOSTILE_CHAPTER, start=20, end=40.6),
    Chapter(title="Q&A", start=40.6, end=DURATION),
]
EXPECTED_MOMENTS = [  # (name, startOffset, endOffset, ?t=): a fractional start is cut down
    ("Opening", 0, 20, "0"),
    (HOSTILE_CHAPTER, 20, 40, "20"),
    ("Q&A", 40, 60, "40"),
]
PUBLIC_BASE = "https://media.example.org/cards"


class Markup(HTMLParser):
    """Elements with their attributes and text, as a browser's parser reads them."""

    def __init__(self, text: str):
        super().__init__(convert_charrefs=True)
        self.elements: list[tuple[str, dict[str, str]]] = []
        self.texts: dict[int, str] = {}
        self.open: list[int] = []
        self.feed(text)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.elements.append((tag, {k: v or "" for k, v in attrs}))
        if tag not in {"img", "source", "track", "meta", "link", "br", "input"}:
            self.open.append(len(self.elements) - 1)
            self.texts[len(self.elements) - 1] = ""

    def handle_endtag(self, tag: str) -> None:
        if self.open:
            self.open.pop()

    def handle_data(self, data: str) -> None:
        for index in self.open:
            self.texts[index] += data

    def find(self, tag: str, attribute: str | None = None) -> list[tuple[dict[str, str], str]]:
        """Elements named ``tag`` (having ``attribute``, if given): attributes and text."""
        return [
            (attrs, self.texts.get(index, ""))
            for index, (name, attrs) in enumerate(self.elements)
            if name == tag and (attribute is None or attribute in attrs)
        ]


class Site:
    """The published cards, their output directory and the server in front of it."""

    def __init__(self, server: MediaServer, with_chapters: Card, without: Card, absolute: Card):
        self.server = server
        self.with_chapters = with_chapters
        self.without = without
        self.absolute = absolute

    def page_text(self, card: Card, name: str) -> str:
        return (self.server.root / card.id / name).read_text()


def _publish(media: JobMedia, settings: Settings, source_id: str, **info: object) -> Card:
    meta = make_info(source_id=source_id, title=TRICKY_TITLE).model_copy(
        update={"duration": DURATION, "media_duration": DURATION, "width": 160, "height": 90} | info
    )
    job = make_job(media, settings, info=meta)
    run_publish(stage_context(job, settings))
    out = Path(settings.storage.output)
    return Card.model_validate_json((out / job.card_id / "card.json").read_text())


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    tmp = tmp_path_factory.mktemp("key-moments")
    media = JobMedia(tmp / "media", DURATION, size="160x90", rate=5)
    settings = make_settings(tmp)
    with_chapters = _publish(media, settings, "keymoments1", chapters=CHAPTERS)
    without = _publish(media, settings, "keymoments2", chapters=[])
    public = make_settings(tmp / "public", storage={"public_base_url": PUBLIC_BASE})
    absolute = _publish(media, public, "keymoments3", chapters=CHAPTERS)
    webhooks.stop_dispatchers()
    with MediaServer(Path(settings.storage.output)) as server:
        yield Site(server, with_chapters, without, absolute)


def _embedded_jsonld(html_text: str) -> dict[str, Any]:
    [(_, text)] = [
        (attrs, text)
        for attrs, text in Markup(html_text).find("script")
        if attrs.get("type") == "application/ld+json"
    ]
    data: dict[str, Any] = json.loads(text)
    return data


def test_watch_pages_json_ld_lists_the_chapters_as_clips_at_their_times(site: Site) -> None:
    card = site.with_chapters
    data = _embedded_jsonld(site.page_text(card, "watch.html"))
    assert data == card.jsonld
    moments = [
        (clip["name"], clip["startOffset"], clip["endOffset"], clip["url"])
        for clip in data["hasPart"]
    ]
    assert moments == [
        (name, start, end, f"watch.html?t={t}") for name, start, end, t in EXPECTED_MOMENTS
    ]
    assert [clip["startOffset"] for clip in data["hasPart"]] == [
        math.floor(chapter.start) for chapter in card.chapters
    ]
    assert all(clip["@type"] == "Clip" for clip in data["hasPart"])
    assert data["potentialAction"] == {
        "@type": "SeekToAction",
        "target": "watch.html?t={seek_to_second_number}",
        "startOffset-input": "required name=seek_to_second_number",
    }


def test_a_card_without_chapters_has_only_the_seek_action(site: Site) -> None:
    data = _embedded_jsonld(site.page_text(site.without, "watch.html"))
    assert "hasPart" not in data
    assert data["potentialAction"] == {
        "@type": "SeekToAction",
        "target": "watch.html?t={seek_to_second_number}",
        "startOffset-input": "required name=seek_to_second_number",
    }
    assert not Markup(site.page_text(site.without, "watch.html")).find("nav")


def test_under_a_public_base_url_the_moments_are_absolute(site: Site) -> None:
    card = site.absolute
    page = f"{PUBLIC_BASE}/{card.id}/watch.html"
    assert card.jsonld["embedUrl"] == page
    assert [clip["url"] for clip in card.jsonld["hasPart"]] == [
        f"{page}?t={t}" for *_, t in EXPECTED_MOMENTS
    ]
    assert card.jsonld["potentialAction"]["target"] == f"{page}?t={{seek_to_second_number}}"


def test_a_card_without_a_watch_page_offers_no_seek_action(site: Site) -> None:
    card = site.with_chapters.model_copy(deep=True)
    card.link.href = "https://www.youtube.com/watch?v=keymoments1"
    data = video_jsonld(card)  # as for the preview card: no watch page of ours yet
    assert "potentialAction" not in data
    assert data["hasPart"][1]["url"] == "https://www.youtube.com/watch?v=keymoments1&t=20"


def test_hostile_titles_stay_text_in_json_ld_and_html(site: Site) -> None:
    card = site.with_chapters
    text = site.page_text(card, "watch.html")
    assert "<script>alert" not in text and "<b>industry" not in text
    page = Markup(text)
    scripts = [attrs.get("type") or ("src" in attrs) for attrs, _ in page.find("script")]
    assert scripts == ["application/ld+json", True, True], "JSON-LD, hls.js and watch.js only"
    [(_, heading)] = page.find("h1")
    assert heading == TRICKY_TITLE
    data = _embedded_jsonld(text)
    assert data["name"] == TRICKY_TITLE
    assert data["hasPart"][1]["name"] == HOSTILE_CHAPTER
    chapter_texts = [t for a, t in page.find("a", "data-start")]
    assert chapter_texts[1] == f"0:20{HOSTILE_CHAPTER}"


def test_chapters_and_paragraphs_link_to_their_times_without_script(site: Site) -> None:
    card = site.with_chapters
    page_url = site.server.url(f"{card.id}/watch.html")
    page = Markup(site.page_text(card, "watch.html"))
    chapters = [(a["href"], a["data-start"], t[:4]) for a, t in page.find("a", "data-start")]
    assert chapters == [
        ("?t=0", "0.000", "0:00"),
        ("?t=20", "20.000", "0:20"),
        ("?t=40", "40.600", "0:40"),
    ]
    assert urljoin(page_url, chapters[2][0]) == f"{page_url}?t=40"
    paragraphs = [(a["data-start"], t) for a, t in page.find("p", "data-start")]
    links = [(a["href"], t) for a, t in page.find("a") if a.get("class") == "recast-time"]
    assert paragraphs and len(links) == len(paragraphs)
    for (start, text), (href, label) in zip(paragraphs, links, strict=True):
        assert href == f"?t={math.floor(float(start))}" and text.startswith(label)

    snippet = Markup(site.page_text(card, "card.html"))
    assert not snippet.find("script")
    [(_, summary)] = snippet.find("summary")
    assert summary == "Chapters (3)"
    hrefs = [a["href"] for a, _ in snippet.find("a") if "?t=" in a["href"]]
    assert hrefs == ["watch.html?t=0", "watch.html?t=20", "watch.html?t=40"]
    assert not Markup(site.page_text(site.without, "card.html")).find("details")


def test_a_chapters_track_goes_on_the_video(site: Site) -> None:
    card = site.with_chapters.model_copy(
        update={"chapters_track": "https://cdn.example.net/c/captions/chapters.vtt"}
    )
    text = render_watch_html(
        card,
        links=PageLinks(watch="watch.html", oembed="oembed.json"),
        static=StaticUrls(js="watch.js", css="watch.css", hls=None),
        extras=WatchExtras(),
        downloads=[],
    )
    page = Markup(text)
    tracks = [a for a, _ in page.find("track") if a["kind"] == "chapters"]
    assert tracks == [
        {
            "kind": "chapters",
            "src": "https://cdn.example.net/c/captions/chapters.vtt",
            "srclang": "en",
            "label": "Chapters",
            "default": "",
        }
    ]
    [(csp, _)] = page.find("meta", "http-equiv")
    assert "media-src 'self' blob: https://cdn.example.net" in csp["content"]
    assert not [
        a
        for a, _ in Markup(site.page_text(card, "watch.html")).find("track")
        if a["kind"] == "chapters"
    ], "no track without one"


# In Chromium: starting the browser and playing real media take about 5 s in all, so these are
# marked slow, as tests/test_pages_browser.py is.


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrowserContext]:
    with chromium(tmp_path_factory.mktemp("chromium-profile"), 800, 600) as context:
        yield context


def _open(browser: BrowserContext, url: str) -> tuple[Page, list[str]]:
    page = browser.new_page()
    problems: list[str] = []

    def refuse(dialog: Dialog) -> None:
        problems.append(f"dialog: {dialog.message}")
        dialog.dismiss()

    page.on("dialog", refuse)
    page.on("pageerror", lambda e: problems.append(f"error: {e}"))
    page.on(
        "console",
        lambda m: problems.append(m.text) if "Content Security Policy" in m.text else None,
    )
    page.goto(url)
    return page, problems


def _wait_near(page: Page, seconds: float) -> None:
    page.wait_for_function(
        f"""() => {{ const v = document.querySelector('video');
                    return v.readyState >= 1 && !v.seeking
                           && Math.abs(v.currentTime - {seconds}) < 0.5; }}""",
        timeout=10000,
    )


@pytest.mark.slow
def test_watch_html_with_t_starts_playback_there(site: Site, browser: BrowserContext) -> None:
    page, problems = _open(browser, site.server.url(f"{site.with_chapters.id}/watch.html?t=42"))
    _wait_near(page, 42)
    page.evaluate("() => { const v = document.querySelector('video'); v.muted = true; v.play(); }")
    page.wait_for_function(
        "() => document.querySelector('video').currentTime > 42.4", timeout=10000
    )
    assert 42.4 < page.evaluate("() => document.querySelector('video').currentTime") < 50
    current = page.locator("[data-recast-chapters] a[aria-current]")
    assert current.get_attribute("data-start") == "40.600", "the chapter playing is marked"
    page.close()
    assert problems == []


@pytest.mark.slow
@pytest.mark.parametrize(
    ("address", "seconds"),
    [
        ("watch.html?t=0:35", 35),
        ("watch.html?t=50s", 50),
        ("watch.html#t=30", 30),
        ("watch.html?t=%zz", 0),  # malformed: ignored, and the script goes on
    ],
)
def test_other_forms_of_the_time_are_honoured(
    site: Site, browser: BrowserContext, address: str, seconds: float
) -> None:
    page, problems = _open(browser, site.server.url(f"{site.with_chapters.id}/{address}"))
    _wait_near(page, seconds)
    page.close()
    assert problems == []


@pytest.mark.slow
def test_chapter_and_transcript_links_seek_without_reloading(
    site: Site, browser: BrowserContext
) -> None:
    page_url = site.server.url(f"{site.with_chapters.id}/watch.html")
    page, problems = _open(browser, page_url)
    page.wait_for_function("() => document.querySelector('video').readyState >= 1")
    page.evaluate("() => { window.recastMarker = 'still here'; }")
    page.locator("[data-recast-chapters] a").nth(1).click()
    _wait_near(page, 20)
    page.locator("[data-recast-transcript] a.recast-time").first.click()
    _wait_near(page, 0)
    assert page.evaluate("() => window.recastMarker") == "still here", "the page was not reloaded"
    assert page.url == page_url
    page.close()
    assert problems == []


@pytest.mark.slow
def test_without_hls_js_the_browsers_own_player_starts_at_t(
    site: Site, browser: BrowserContext
) -> None:
    """The page's video is preload="none" when it has HLS; asked for a time, it loads enough to
    be positioned there (Chromium plays the HLS itself, else the MP4)."""
    page = browser.new_page()
    page.route("**/_static/hls*", lambda route: route.fulfill(status=404, body=""))
    page.goto(site.server.url(f"{site.with_chapters.id}/watch.html?t=42"))
    _wait_near(page, 42)
    assert page.evaluate("() => document.documentElement.dataset.player") in ("native-hls", "mp4")
    assert page.evaluate("() => document.querySelector('video').preload") == "metadata"
    page.close()
