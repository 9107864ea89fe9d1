"""The card's HTML: ``card.html`` (a teaser snippet, no script) and ``watch.html`` (a player page).

Both are rendered with Jinja2 from ``pipeline/templates/`` with autoescaping on, so every piece
of source text (title, description, uploader, transcript) is escaped; the JSON-LD goes in
through :func:`pipeline.publish.jsonld.script_json`, which makes a ``</script>`` breakout
impossible. The poster's placeholder is a BlurHash decoded into a tiny PNG
(:func:`pipeline.tools.images.placeholder_png`) and inlined as a data URI, so the snippet shows
it without any script.
"""

from __future__ import annotations

import base64
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any
from urllib.parse import urlsplit

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape
from markupsafe import Markup

from pipeline.core.card import Card, ImageSource
from pipeline.publish.jsonld import script_json, start_second, url_at_time
from pipeline.publish.paragraphs import Paragraph
from pipeline.tools.images import placeholder_png

PLACEHOLDER_WIDTH = 16


@dataclass(frozen=True)
class StaticUrls:
    js: str
    css: str
    hls: str | None


@dataclass(frozen=True)
class Download:
    label: str
    href: str


@dataclass(frozen=True)
class PageLinks:
    """Where the pages are, as written inside them (relative, or absolute under a base URL)."""

    watch: str
    oembed: str
    canonical: str | None = None
    """The watch page's absolute URL, when a public base URL makes one."""


@dataclass
class WatchExtras:
    paragraphs: list[Paragraph] = field(default_factory=list)
    site_name: str = ""


@lru_cache(maxsize=1)
def environment() -> Environment:
    return Environment(
        loader=PackageLoader("pipeline", "templates"),
        autoescape=select_autoescape(["html", "jinja"], default=True),
        undefined=StrictUndefined,
        trim_blocks=False,
        keep_trailing_newline=True,
    )


def placeholder_data_uri(blurhash_value: str | None, width: int, height: int) -> str | None:
    """The BlurHash as a small PNG ``data:`` URI (None when there is none or it is invalid)."""
    if not blurhash_value:
        return None
    small_h = max(1, round(PLACEHOLDER_WIDTH * height / max(1, width)))
    png = placeholder_png(blurhash_value, PLACEHOLDER_WIDTH, small_h)
    if png is None:
        return None
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def _sizes(card: Card) -> str:
    width = card.poster.width if card.poster else 640
    return f"(max-width: {width}px) 100vw, {width}px"


@dataclass(frozen=True)
class _ExtraSource:
    type: str
    srcset: str


def _extra_sources(card: Card) -> list[_ExtraSource]:
    """``<source>`` entries for poster formats other than the ``<img>``'s (WebP, AVIF)."""
    if card.poster is None:
        return []
    img_type = next((s.type for s in card.poster.sources if s.src == card.poster.src), "")
    by_type: dict[str, list[ImageSource]] = {}
    for source in card.poster.sources:
        if source.type != img_type:
            by_type.setdefault(source.type, []).append(source)
    order = {"image/avif": 0, "image/webp": 1}
    return [
        _ExtraSource(kind, ", ".join(f"{s.src} {s.width}w" for s in sorted(items, key=_width)))
        for kind, items in sorted(by_type.items(), key=lambda item: order.get(item[0], 9))
    ]


def _width(source: ImageSource) -> int:
    return source.width


def render_card_html(card: Card) -> str:
    """The teaser card as a semantic HTML snippet (no script), in plain ASCII: any other
    character is a numeric character reference, so the snippet reads right without a charset
    (opened on its own, or embedded in a page of any encoding)."""
    template = environment().get_template("card.html.jinja")
    placeholder = None
    if card.poster is not None:
        placeholder = placeholder_data_uri(
            card.poster.placeholder, card.poster.width, card.poster.height
        )
    watch = card.pages.watch_html if card.pages else None
    snippet = template.render(
        card=card,
        sizes=_sizes(card),
        extra_sources=_extra_sources(card),
        placeholder_uri=placeholder,
        chapters=_chapters(card, watch) if watch else [],
    )
    # Safe after escaping: a reference stands for one character, in text and attributes alike.
    return snippet.encode("ascii", "xmlcharrefreplace").decode("ascii")


@dataclass(frozen=True)
class _Chapter:
    title: str
    start: float
    label: str
    href: str
    """A link to the chapter's time that works without script (``?t=SECONDS``)."""


def _chapters(card: Card, page: str) -> list[_Chapter]:
    """The card's chapters in time order, each with its clock label and a link to ``page`` at
    its time (``page`` empty: relative to the watch page itself)."""
    return [
        _Chapter(
            chapter.title,
            chapter.start,
            Paragraph(start_second(chapter.start), "").label,
            url_at_time(page, chapter.start),
        )
        for chapter in sorted(card.chapters, key=lambda chapter: chapter.start)
    ]


def _default_track(card: Card) -> int:
    """The caption track shown by default: a human one in the card's language, else the first."""
    if not card.captions:
        return -1
    for index, track in enumerate(card.captions):
        if not track.automatic and card.language and track.lang.startswith(card.language):
            return index
    for index, track in enumerate(card.captions):
        if not track.automatic:
            return index
    for index, track in enumerate(card.captions):
        if track.translated_from is None:  # the words spoken before a machine translation
            return index
    return 0


def watch_csp(urls: Iterable[str]) -> str:
    """The watch page's Content-Security-Policy (a ``<meta>``, as it is a static file): its own
    origin, plus the origins of the absolute asset URLs it uses (a CDN under a public base URL).
    hls.js plays through ``blob:`` media and may start a ``blob:`` worker. ``frame-ancestors``
    cannot be set by a ``<meta>``: the web server sends it (docs/ops.md)."""
    origins = sorted({origin for origin in map(_origin, urls) if origin})
    extra = "".join(f" {origin}" for origin in origins)
    return (
        f"default-src 'none'; script-src 'self'{extra}; style-src 'self'{extra}; "
        f"img-src 'self' data:{extra}; media-src 'self' blob:{extra}; "
        f"connect-src 'self'{extra}; worker-src 'self' blob:; "
        "object-src 'none'; base-uri 'none'; form-action 'none'"
    )


def _origin(url: str | None) -> str:
    try:
        parts = urlsplit(url or "")
    except ValueError:
        return ""
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return ""
    return f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}"


def _page_assets(card: Card, static: StaticUrls) -> list[str]:
    """Every URL the watch page loads (the links it only points to are not among them)."""
    urls = [static.js, static.css, static.hls, card.streams.hls, card.storyboard]
    urls += [source.src for source in card.streams.mp4]
    if card.streams.social is not None:
        urls.append(card.streams.social.src)
    urls += [track.src for track in card.captions] + [card.chapters_track]
    if card.poster is not None:
        urls += [card.poster.src] + [source.src for source in card.poster.sources]
    return [url for url in urls if url]


def render_watch_html(
    card: Card,
    *,
    links: PageLinks,
    static: StaticUrls,
    extras: WatchExtras,
    downloads: list[Download],
) -> str:
    """The page that plays the recording with captions, storyboard and transcript."""
    template = environment().get_template("watch.html.jinja")
    mp4 = card.streams.mp4[0] if card.streams.mp4 else None
    width, height = (mp4.width, mp4.height) if mp4 else (1280, 720)
    if card.poster is not None and mp4 is None:
        width, height = card.poster.width, card.poster.height
    chapters = _chapters(card, "")
    context: dict[str, Any] = {
        "card": card,
        "jsonld": Markup(script_json(card.jsonld)),  # noqa: S704 - escaped by script_json
        "static": static,
        "oembed_url": links.oembed,
        "page_url": links.canonical or links.watch,
        "canonical": links.canonical,
        "site_name": extras.site_name,
        "mp4": mp4,
        "width": width,
        "height": height,
        "default_track": _default_track(card),
        "chapters": chapters,
        "paragraphs": extras.paragraphs,
        "downloads": downloads,
        "csp": watch_csp(_page_assets(card, static)),
    }
    return template.render(**context)
