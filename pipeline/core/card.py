"""The teaser card: the contract the CMS reads (``<id>/card.json``) and its JSON Schema.

The schema is generated from these models and published as docs/card.schema.json; a change
that breaks readers bumps ``SCHEMA_VERSION``'s major number, an added optional field its minor.

History: 1.1 added ``storyboard``, ``preview_clip`` and ``pages`` (all optional); 1.2 added
``parent`` (clips), ``chapters_track``, ``streams.social`` (the 9:16 cut), ``poster.chosen_time``
and ``CaptionTrack.translated_from`` (all optional).
"""

from __future__ import annotations

import json
from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

SCHEMA_VERSION = "1.2"


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
    chosen_time: float | None = Field(
        None,
        ge=0,
        description="Where in the recording the poster's frame is, in seconds, when a producer "
        "chose it (POST /v1/cards/{id}/poster); a job publishing the card again keeps it.",
    )


class SocialCut(_Model):
    """The 9:16 vertical rendition for social platforms."""

    src: str
    width: int = Field(gt=0)
    height: int = Field(gt=0)
    type: str = Field("video/mp4", description="MIME type.")
    captions: bool = Field(False, description="Whether captions are burned into the picture.")


class Streams(_Model):
    hls: str | None = None
    mp4: list[ImageSource] = Field(default_factory=list)
    audio: str | None = None
    social: SocialCut | None = Field(
        None,
        description="A 9:16 cut (1080x1920, or smaller for a smaller source), H.264 + AAC MP4; "
        "only when the job asked for it (options.social).",
    )


class CaptionTrack(_Model):
    lang: str
    label: str
    kind: str = "captions"
    automatic: bool = False
    src: str
    srt: str | None = None
    translated_from: str | None = Field(
        None,
        description="Set on a machine translation of the speech (automatic is then true): the "
        "spoken language it was translated from, e.g. de for a German talk's English track.",
    )


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


class ParentRef(_Model):
    """The card a clip was cut from, and the span of its time the clip covers."""

    id: str = Field(description="The parent card's id.")
    title: str = Field("", description="The parent card's title.")
    url: str = Field(description="The parent's watch page.")
    start: float = Field(ge=0, description="Where the clip starts, in the parent's seconds.")
    end: float = Field(
        gt=0, description="Where the clip ends (exclusive), in the parent's seconds."
    )


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
    chapters_track: str | None = Field(
        None,
        description='WebVTT chapters track (<track kind="chapters">) of the chapters: a cue per '
        "chapter, its title the text.",
    )
    storyboard: str | None = Field(
        None, description="WebVTT track of storyboard thumbnails (sprite#xywh=x,y,w,h cues)."
    )
    preview_clip: str | None = Field(None, description="A short silent preview clip (MP4).")
    pages: Pages | None = None
    parent: ParentRef | None = Field(
        None, description="For a clip: the card it was cut from and the span it covers."
    )
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
