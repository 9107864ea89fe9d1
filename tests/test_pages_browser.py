"""The published pages in a real browser: Debian's Chromium, headless, driven by Playwright.

watch.html, served over HTTP from the output tree, plays HLS through the published hls.js
(currentTime advances), its caption track has cues, hovering the scrub bar shows a storyboard
tile, a transcript paragraph seeks the player; card.html renders at the poster's size with
every image loaded. A hostile title stays text and runs nothing. Screenshots of both pages are
kept in test-artifacts/.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import BrowserContext, Page

from pipeline.core.card import Card
from pipeline.publish import webhooks
from pipeline.publish.writer import upload_type
from pipeline.stages.publish import run_publish
from tests.conftest import make_settings
from tests.support.browser import ARTIFACTS, chromium
from tests.support.httpserver import MediaServer
from tests.support.publishing import TRICKY_TITLE, JobMedia, make_info, make_job, stage_context

pytestmark = pytest.mark.slow  # end to end with real tools: not in the fast set


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[MediaServer, Card]]:
    tmp = tmp_path_factory.mktemp("browser")
    media = JobMedia(tmp / "media")
    settings = make_settings(tmp, publish={"gc_grace_s": 0})
    job = make_job(media, settings, info=make_info(title=TRICKY_TITLE))
    run_publish(stage_context(job, settings))
    webhooks.stop_dispatchers()
    out = Path(settings.storage.output)
    card = Card.model_validate_json((out / job.card_id / "card.json").read_text())
    with MediaServer(out) as server:
        yield server, card


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrowserContext]:
    with chromium(tmp_path_factory.mktemp("chromium-profile"), 1280, 900) as context:
        yield context


def open_page(browser: BrowserContext, url: str) -> tuple[Page, list[str]]:
    """The page, and a list collecting what went wrong in it (dialogs, errors, failed loads)."""
    page = browser.new_page()
    problems: list[str] = []
    page.on("dialog", lambda d: (problems.append(f"dialog: {d.message}"), d.dismiss()))
    page.on("pageerror", lambda e: problems.append(f"error: {e}"))
    page.on("requestfailed", lambda r: problems.append(f"failed: {r.url}"))
    page.on(  # what the page's Content-Security-Policy refused
        "console",
        lambda m: problems.append(m.text) if "Content Security Policy" in m.text else None,
    )
    page.on(
        "response",
        lambda r: problems.append(f"HTTP {r.status}: {r.url}") if r.status >= 400 else None,
    )
    page.goto(url)
    return page, problems


def test_watch_page_plays_with_captions_storyboard_and_transcript(
    site: tuple[MediaServer, Card], browser: BrowserContext
) -> None:
    server, card = site
    page, problems = open_page(browser, server.url(f"{card.id}/watch.html"))
    page.wait_for_function(
        "() => document.documentElement.dataset.player === 'hls.js'", timeout=10000
    )
    assert page.locator("h1").inner_text() == TRICKY_TITLE
    assert page.title().startswith(TRICKY_TITLE)
    policy = page.locator('meta[http-equiv="Content-Security-Policy"]').get_attribute("content")
    assert policy and "default-src 'none'" in policy and "unsafe" not in policy
    jsonld = json.loads(page.locator('script[type="application/ld+json"]').text_content() or "")
    assert jsonld == card.jsonld and jsonld["name"] == TRICKY_TITLE

    page.evaluate("() => { const v = document.querySelector('video'); v.muted = true; }")
    page.evaluate("() => document.querySelector('video').play()")
    page.wait_for_function("() => document.querySelector('video').currentTime > 1.0", timeout=15000)
    playing: dict[str, Any] = page.evaluate(
        """() => { const v = document.querySelector('video');
                   return {src: v.currentSrc, t: v.currentTime, w: v.videoWidth}; }"""
    )
    assert playing["src"].startswith("blob:"), "played through hls.js (MSE), not the MP4"
    assert playing["w"] == 320
    assert any("hls/180p/seg" in r for r in _requests(page)), "segments of the ladder fetched"

    page.wait_for_function(
        """() => { const t = document.querySelector('video').textTracks[0];
                   return t && t.cues && t.cues.length > 0; }""",
        timeout=10000,
    )
    cues: list[str] = page.evaluate(
        "() => Array.from(document.querySelector('video').textTracks[0].cues, c => c.text)"
    )
    assert cues[0] == "Welcome to the Munich Security Conference."

    page.evaluate("() => document.querySelector('video').pause()")
    page.wait_for_function(
        "() => Number(document.querySelector('[data-recast-scrubber]').dataset.storyboardTiles) > 0"
    )
    scrubber = page.locator("[data-recast-scrubber]")
    box = scrubber.bounding_box()
    assert box is not None
    page.mouse.move(box["x"] + box["width"] * 0.6, box["y"] + box["height"] / 2)
    preview = page.locator("[data-recast-storyboard]")
    preview.wait_for(state="visible", timeout=5000)
    tile = preview.get_attribute("data-tile") or ""
    assert tile.endswith("storyboard.jpg#xywh=160,0,80,45"), tile
    style: dict[str, str] = preview.evaluate(
        "e => ({bg: getComputedStyle(e).backgroundImage, w: getComputedStyle(e).width})"
    )
    assert "thumbs/storyboard.jpg" in style["bg"] and style["w"] == "80px"
    loaded = page.evaluate(
        """url => new Promise(ok => { const i = new Image(); i.onload = () => ok(i.naturalWidth);
                                       i.onerror = () => ok(0); i.src = url; })""",
        tile.split("#", 1)[0],
    )
    assert loaded == 320
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "watch.png"), full_page=True)
    page.mouse.move(0, 0)
    preview.wait_for(state="hidden", timeout=5000)

    last = page.locator("[data-recast-transcript] p[data-start]").last
    target = float(last.get_attribute("data-start") or "0")
    last.click()
    page.wait_for_function(
        f"() => Math.abs(document.querySelector('video').currentTime - {target}) < 0.6",
        timeout=5000,
    )
    assert problems == []


def _requests(page: Page) -> list[str]:
    entries: list[str] = page.evaluate(
        "() => performance.getEntriesByType('resource').map(e => e.name)"
    )
    return entries


def test_card_renders_at_the_posters_size_with_nothing_broken(
    site: tuple[MediaServer, Card], browser: BrowserContext
) -> None:
    server, card = site
    key = f"{card.id}/card.html"
    # Served with the Content-Type Recast stores it with (S3), which names the charset.
    server.add(key, (server.root / key).read_bytes(), upload_type(key))
    page, problems = open_page(browser, server.url(key))
    page.wait_for_load_state("load")
    page.wait_for_function(
        "() => Array.from(document.images).every(i => i.complete)", timeout=10000
    )
    images: list[dict[str, Any]] = page.evaluate(
        """() => Array.from(document.images, i => ({w: i.naturalWidth, src: i.currentSrc,
              box: [i.getBoundingClientRect().width, i.getBoundingClientRect().height]}))"""
    )
    assert card.poster is not None
    assert images and all(image["w"] > 0 for image in images), images
    assert images[0]["box"] == [card.poster.width, card.poster.height]
    assert images[0]["src"].endswith(".webp"), "the <picture> offers WebP first"
    assert page.locator("h3").inner_text() == TRICKY_TITLE
    assert page.locator("script").count() == 0
    assert page.locator(".recast-card__watch").inner_text() == "Watch recording"
    assert page.locator(".recast-card__source").inner_text().startswith("YouTube")
    assert page.locator(".recast-card__excerpt").inner_text().endswith(" [...]")
    ARTIFACTS.mkdir(exist_ok=True)
    page.locator("article").screenshot(path=str(ARTIFACTS / "card.png"))
    assert problems == []


@pytest.fixture(scope="module")
def real_site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[MediaServer, Card]]:
    """The output of the real default DAG (ingest, probe, playable, transcode, thumbnails,
    transcript, publish) on a spoken clip."""
    from pipeline.core.job import JobSpec, JobStatus
    from pipeline.engine.local import LocalExecutor
    from pipeline.publish.publisher import CardPublisher
    from tests.support.media import make_speech_clip

    tmp = tmp_path_factory.mktemp("real-dag")
    clip = make_speech_clip(tmp / "talk.mp4", "Welcome to the Munich Security Conference.")
    settings = make_settings(tmp, publish={"gc_grace_s": 0}, transcript={"language": "en"})
    state = LocalExecutor(settings, publisher=CardPublisher(settings)).run(
        JobSpec(source=str(clip))
    )
    webhooks.stop_dispatchers()
    assert state.status is JobStatus.SUCCEEDED, state.error
    out = Path(settings.storage.output)
    card = Card.model_validate_json((out / f"{state.card_id}/card.json").read_text())
    with MediaServer(out) as server:
        yield server, card


def test_the_real_stages_output_plays_in_the_watch_page(
    real_site: tuple[MediaServer, Card], browser: BrowserContext
) -> None:
    server, card = real_site
    if card.streams.hls is None:
        pytest.fail("the default DAG published nothing playable")
    page, problems = open_page(browser, server.url(f"{card.id}/watch.html"))
    page.wait_for_function(
        "() => document.documentElement.dataset.player === 'hls.js'", timeout=10000
    )
    page.evaluate("() => { const v = document.querySelector('video'); v.muted = true; }")
    page.evaluate("() => document.querySelector('video').play()")
    page.wait_for_function("() => document.querySelector('video').currentTime > 1.0", timeout=15000)
    page.wait_for_function(
        """() => { const t = document.querySelector('video').textTracks[0];
                   return t && t.cues && t.cues.length > 0; }""",
        timeout=10000,
    )
    page.evaluate("() => document.querySelector('video').pause()")
    page.wait_for_function(
        "() => Number(document.querySelector('[data-recast-scrubber]').dataset.storyboardTiles) > 0"
    )
    box = page.locator("[data-recast-scrubber]").bounding_box()
    assert box is not None
    page.mouse.move(box["x"] + box["width"] * 0.5, box["y"] + box["height"] / 2)
    preview = page.locator("[data-recast-storyboard]")
    preview.wait_for(state="visible", timeout=5000)
    assert "#xywh=" in (preview.get_attribute("data-tile") or "")
    assert problems == []
