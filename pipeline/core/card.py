"""The teaser card: the contract the CMS reads (``<id>/card.json``) and its JSON Schema.

The schema is generated from these models and published as docs/card.schema.json; a change
that breaks readers bumps ``SCHEMA_VERSION``'s major number, an added optional field its minor.

History: 1.1 added ``storyboard``, ``preview_clip`` and ``pages`` (all optional).
"""

from __future__ import annotations

import json
from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

SCHEMA_VERSION = "1.1"


class CardStatus(StrEnum):
    PREVIEW = "preview"
    PLAYABLE = "playable"
    READY = "ready"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class EventRef(_Model):
    name: str
    slug: str


class SourceRef(_Model):
    platform: str = Field(description='Human label of the source, e.g. "YouTube".')
    extractor: str
    id: str
    url: str
    uploader: str = ""
    uploader_url: str = ""
    published: str | None = Field(None, description="Publication date, ISO 8601 (YYYY-MM-DD).")


class Duration(_Model):
    seconds: float = Field(ge=0)
    iso8601: str = Field(pattern=r"^P(T(\d+H)?(\d+M)?(\d+(\.\d+)?S)?)$|^PT0S$")
    display: str = Field(description='As shown on a card, e.g. "1:02:03" or "4:05".')


class Link(_Model):
    label: str
    href: str


class ImageSource(_Model):
    src: str
    width: int = Field(gt=0)
    height: int = Field(gt=0)
    type: str = Field(description="MIME type, e.g. image/jpeg.")


class Poster(_Model):
    src: str
    width: int = Field(gt=0)
    height: int = Field(gt=0)
    alt: str
    srcset: str = Field(description="An HTML srcset value over the sources.")
    sources: list[ImageSource]
    placeholder: str | None = Field(None, description="BlurHash or a tiny data: URI.")


class Streams(_Model):
    hls: str | None = None
    mp4: list[ImageSource] = Field(default_factory=list)
    audio: str | None = None


class CaptionTrack(_Model):
    lang: str
    label: str
    kind: str = "captions"
    automatic: bool = False
    src: str
    srt: str | None = None


class TranscriptLinks(_Model):
    txt: str
    json_url: str = Field(alias="json")
    language: str | None = None


class Pages(_Model):
    """The published pages of the card, beside card.json."""

    card_html: str = Field(description="The card as a semantic HTML snippet, no script.")
    watch_html: str | None = Field(
        None, description="A page that plays the recording with captions (once playable)."
    )
    oembed: str | None = Field(None, description='An oEmbed "video" response (JSON).')


class ChapterRef(_Model):
    title: str
    start: float
    end: float | None = None


class Card(_Model):
    schema_version: str = SCHEMA_VERSION
    id: str
    status: CardStatus
    title: str
    excerpt: str
    description: str
    event: EventRef | None = None
    source: SourceRef
    duration: Duration | None = None
    link: Link
    poster: Poster | None = None
    streams: Streams = Field(default_factory=Streams)
    captions: list[CaptionTrack] = Field(default_factory=list)
    transcript: TranscriptLinks | None = None
    chapters: list[ChapterRef] = Field(default_factory=list)
    storyboard: str | None = Field(
        None, description="WebVTT track of storyboard thumbnails (sprite#xywh=x,y,w,h cues)."
    )
    preview_clip: str | None = Field(None, description="A short silent preview clip (MP4).")
    pages: Pages | None = None
    tags: list[str] = Field(default_factory=list)
    language: str | None = None
    updated: datetime
    jsonld: dict[str, Any] = Field(description="schema.org VideoObject as JSON-LD.")

    def to_json(self) -> str:
        return self.model_dump_json(indent=2, by_alias=True) + "\n"


def card_json_schema() -> dict[str, Any]:
    schema = Card.model_json_schema(by_alias=True)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = f"https://recast.example/schemas/card-{SCHEMA_VERSION}.json"
    return schema


def card_json_schema_text() -> str:
    return json.dumps(card_json_schema(), indent=2, ensure_ascii=False) + "\n"
