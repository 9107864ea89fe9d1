"""The oEmbed "video" response of a card (``<id>/oembed.json``, https://oembed.com §2.3.4).

A CMS that is handed a watch page link reads this (the page announces it with
``<link rel="alternate" type="application/json+oembed">``) and embeds the ``html``: an iframe
of the watch page. Links are absolute when ``storage.public_base_url`` is set, which oEmbed
consumers expect.
"""

from __future__ import annotations

import json
from html import escape
from typing import Any

from pipeline.core.card import Card
from pipeline.core.settings import PublishSettings

CACHE_AGE_S = 3600
MAX_EMBED_WIDTH = 1280


def oembed_response(card: Card, watch_url: str, publish: PublishSettings) -> dict[str, Any]:
    mp4 = card.streams.mp4[0] if card.streams.mp4 else None
    width, height = (mp4.width, mp4.height) if mp4 else (1280, 720)
    if width > MAX_EMBED_WIDTH:
        height = round(height * MAX_EMBED_WIDTH / width)
        width = MAX_EMBED_WIDTH
    iframe = (
        f'<iframe src="{escape(watch_url, quote=True)}" width="{width}" height="{height}" '
        f'title="{escape(card.title, quote=True)}" frameborder="0" '
        'allow="autoplay; fullscreen; picture-in-picture" allowfullscreen></iframe>'
    )
    data: dict[str, Any] = {
        "version": "1.0",
        "type": "video",
        "title": card.title,
        "html": iframe,
        "width": width,
        "height": height,
        "provider_name": publish.oembed_provider_name or publish.site_name,
        "cache_age": CACHE_AGE_S,
    }
    if publish.oembed_provider_url:
        data["provider_url"] = publish.oembed_provider_url
    if card.source.uploader:
        data["author_name"] = card.source.uploader
    if card.source.uploader_url:
        data["author_url"] = card.source.uploader_url
    if card.poster is not None:
        data["thumbnail_url"] = card.poster.src
        data["thumbnail_width"] = card.poster.width
        data["thumbnail_height"] = card.poster.height
    return data


def oembed_json(card: Card, watch_url: str, publish: PublishSettings) -> bytes:
    """``oembed.json`` as published beside the card."""
    data = oembed_response(card, watch_url, publish)
    return (json.dumps(data, ensure_ascii=False, indent=2) + "\n").encode()
