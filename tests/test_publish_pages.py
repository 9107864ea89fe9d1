"""card.html, watch.html, JSON-LD and oEmbed as published: source text escaped everywhere, the
JSON-LD parsing back to the card's, the snippet free of script."""

from __future__ import annotations

import base64
import io
import json
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from PIL import Image

from pipeline.core.card import Card
from pipeline.core.settings import Settings
from pipeline.publish import webhooks
from pipeline.publish.html import placeholder_data_uri
from pipeline.publish.jsonld import script_json
from pipeline.publish.paragraphs import group, vtt_cues
from pipeline.stages.publish import run_publish
from tests.conftest import make_settings
from tests.support.publishing import TRICKY_TITLE, JobMedia, make_info, make_job, stage_context

DESCRIPTION = 'Panel on <b>defence</b> & "deterrence". Ends here </script><!-- [...]'


class Page(HTMLParser):
    """Elements with their attributes and text, as a browser's parser reads them."""

    def __init__(self, text: str):
        super().__init__(convert_charrefs=True)
        self.elements: list[tuple[str, dict[str, str]]] = []
        self.texts: dict[int, str] = {}
        self.stack: list[int] = []
        self.feed(text)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.elements.append((tag, {k: v or "" for k, v in attrs}))
        if tag not in {"img", "source", "track", "meta", "link", "br", "input"}:
            self.stack.append(len(self.elements) - 1)
            self.texts[len(self.elements) - 1] = ""

    def handle_endtag(self, tag: str) -> None:
        if self.stack:
            self.stack.pop()

    def handle_data(self, data: str) -> None:
        for index in self.stack:
            self.texts[index] += data

    def find(self, tag: str, **attrs: str) -> list[tuple[dict[str, str], str]]:
        return [
            (a, self.texts.get(i, ""))
            for i, (t, a) in enumerate(self.elements)
            if t == tag
            and all(a.get(k.rstrip("_").replace("_", "-")) == v for k, v in attrs.items())
        ]


@pytest.fixture(scope="module")
def published(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Settings, Card, Path]]:
    tmp = tmp_path_factory.mktemp("pages")
    media = JobMedia(tmp / "media")
    settings = make_settings(tmp, publish={"gc_grace_s": 0})
    job = make_job(media, settings, info=make_info(title=TRICKY_TITLE, description=DESCRIPTION))
    run_publish(stage_context(job, settings))
    root = Path(settings.storage.output) / job.card_id
    card = Card.model_validate_json((root / "card.json").read_text())
    yield settings, card, root
    webhooks.stop_dispatchers()


def test_card_html_shows_source_text_as_text_and_has_no_script(
    published: tuple[Settings, Card, Path],
) -> None:
    _, card, root = published
    text = (root / "card.html").read_text()
    page = Page(text)
    assert not page.find("script") and "<script" not in text
    assert not any(k.startswith("on") for _, attrs in page.elements for k in attrs)
    [(_, title)] = page.find("h3", class_="recast-card__title")
    assert title == TRICKY_TITLE
    [(_, source)] = page.find("p", class_="recast-card__source")
    assert source.startswith("YouTube")
    [(_, excerpt)] = page.find("p", class_="recast-card__excerpt")
    assert excerpt == card.excerpt
    [(attrs, duration)] = page.find("time", class_="recast-card__duration")
    assert (duration, attrs["datetime"]) == ("0:04", "PT4S")
    [(watch, label)] = page.find("a", class_="recast-card__watch")
    assert (label, watch["href"]) == ("Watch recording", "watch.html")
    [(img, _)] = page.find("img")
    assert card.poster is not None
    assert img["src"] == card.poster.src and img["srcset"] == card.poster.srcset
    assert (img["width"], img["height"]) == ("320", "180")
    assert img["alt"] == card.poster.alt and TRICKY_TITLE in img["alt"]
    assert img["sizes"] == "(max-width: 320px) 100vw, 320px"
    assert "data:image/png;base64," in img["style"], "the placeholder shows without script"
    [(webp, _)] = page.find("source", type="image/webp")
    assert webp["srcset"] == "thumbs/poster-160.webp 160w, thumbs/poster-320.webp 320w"


def test_watch_html_escapes_text_and_embeds_the_cards_json_ld(
    published: tuple[Settings, Card, Path],
) -> None:
    _, card, root = published
    page = Page((root / "watch.html").read_text())
    scripts = page.find("script")
    assert [a.get("type", a.get("src", "")[:14]) for a, _ in scripts] == [
        "application/ld+json",
        "../_static/hls",
        "../_static/wat",
    ]
    jsonld = json.loads(scripts[0][1])
    assert jsonld == card.jsonld
    assert jsonld["name"] == TRICKY_TITLE and jsonld["description"] == DESCRIPTION
    [(_, h1)] = page.find("h1")
    assert h1 == TRICKY_TITLE
    [(_, title)] = page.find("title")
    assert title.startswith(TRICKY_TITLE)
    [(og, _)] = page.find("meta", property="og:title")
    assert og["content"] == TRICKY_TITLE
    [(_, description)] = page.find("p", class_="recast-description")
    assert description == DESCRIPTION
    for prop in ("og:image", "og:video", "og:description", "og:type", "og:url"):
        assert page.find("meta", property=prop), prop
    for name in ("twitter:card", "twitter:title", "twitter:image"):
        assert page.find("meta", name=name), name
    [(video, _)] = page.find("video")
    assert video["data-hls"] == "hls/master.m3u8" and video["data-storyboard"]
    assert [a["src"] for a, _ in page.find("source", type="video/mp4")] == ["mp4/180p.mp4"]
    [(track, _)] = page.find("track")
    assert (track["src"], track["srclang"], "default" in track) == ("captions/en.vtt", "en", True)
    paragraphs = [(a["data-start"], t) for a, t in page.find("p") if "data-start" in a]
    assert paragraphs and paragraphs[0][0] == "0.000"
    assert "Defence & <diplomacy> today." in paragraphs[0][1]
    [(oembed, _)] = page.find("link", type="application/json+oembed")
    assert oembed["href"] == "oembed.json"


def test_json_ld_is_a_video_object(published: tuple[Settings, Card, Path]) -> None:
    _, card, _ = published
    data = card.jsonld
    assert data["@context"] == "https://schema.org" and data["@type"] == "VideoObject"
    assert data["thumbnailUrl"][0] == "thumbs/poster-320.jpg"
    assert data["uploadDate"] == "2026-02-14" and data["duration"] == "PT4S"
    assert data["contentUrl"] == "mp4/180p.mp4" and data["embedUrl"] == "watch.html"
    assert data["transcript"].startswith("Welcome to the Munich Security Conference.")
    assert data["inLanguage"] == "en"
    assert data["publisher"] == {
        "@type": "Organization",
        "name": "Munich Security Conference",
        "url": "https://www.youtube.com/@MunichSecurityConference",
    }
    clip = {"@type": "Clip"}
    assert data["hasPart"] == [
        clip | {"name": "Opening", "startOffset": 0, "endOffset": 2, "url": "watch.html?t=0"},
        clip | {"name": "Q&A", "startOffset": 2, "endOffset": 4, "url": "watch.html?t=2"},
    ]


def test_oembed_is_a_video_response(published: tuple[Settings, Card, Path]) -> None:
    _, _, root = published
    data = json.loads((root / "oembed.json").read_text())
    assert (data["version"], data["type"], data["title"]) == ("1.0", "video", TRICKY_TITLE)
    assert (data["width"], data["height"]) == (320, 180)
    assert data["provider_name"] == "Recast" and data["author_name"] == "Munich Security Conference"
    assert data["thumbnail_url"] == "thumbs/poster-320.jpg"
    [(iframe, _)] = Page(data["html"]).find("iframe")
    assert iframe["src"] == "watch.html" and iframe["title"] == TRICKY_TITLE
    assert "<script" not in data["html"]


@hsettings(max_examples=100, deadline=None)
@given(st.recursive(st.text(), lambda inner: st.lists(inner) | st.dictionaries(st.text(), inner)))
def test_script_json_cannot_break_out_and_parses_back(value: object) -> None:
    text = script_json(value)
    lowered = text.lower()
    assert "</" not in lowered and "<!--" not in lowered and "<script" not in lowered
    assert json.loads(text) == value


def test_script_json_escapes_the_dangerous_characters() -> None:
    text = script_json({"t": "</script><!-- & \u2028\u2029"})
    assert text == '{"t":"\\u003c/script\\u003e\\u003c!-- \\u0026 \\u2028\\u2029"}'


def test_placeholder_decodes_to_a_small_image() -> None:
    uri = placeholder_data_uri("LEHV6nWB2yk8pyo0adR*.7kCMdnj", 320, 180)
    assert uri is not None and uri.startswith("data:image/png;base64,")
    with Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1]))) as image:
        assert image.size == (16, 9)
    assert placeholder_data_uri("not a blurhash", 320, 180) is None
    assert placeholder_data_uri(None, 320, 180) is None


def test_transcript_paragraphs_from_captions() -> None:
    vtt = (
        "WEBVTT\n\nNOTE a comment\n\n1\n00:00:00.000 --> 00:00:02.000 align:start\n"
        "<v Speaker>Hello &amp; <b>welcome</b>.</v>\n\n"
        "00:00:02.000 --> 00:00:03.000\nHello &amp; welcome. Next line\n\n"
        "00:01:10.500 --> 00:01:12.000\nAfter a pause.\n"
    )
    cues = vtt_cues(vtt)
    assert [c.text for c in cues] == ["Hello & welcome.", "Next line", "After a pause."]
    paragraphs = group(cues)
    assert [(p.start, p.text, p.label) for p in paragraphs] == [
        (0.0, "Hello & welcome. Next line", "0:00"),
        (70.5, "After a pause.", "1:10"),
    ]
