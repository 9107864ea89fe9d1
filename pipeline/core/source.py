"""What a source said about itself, sanitised: the typed form of yt-dlp's info dict.

This is what the ingest stage writes to ``ingest/info.json`` and what later stages and the
card read. It keeps only plain values (no URLs with tokens beyond what the card needs).
"""

from __future__ import annotations

import hashlib

from pydantic import BaseModel, Field

from pipeline.core.clip import ClipOrigin
from pipeline.core.fsutil import safe_name
from pipeline.core.job import normalise_source

URL_NAMED_EXTRACTORS = frozenset({"generic", "html5", "html5mediaembed"})
"""Extractors whose "id" is only a name taken from the URL (``video`` for ``…/video.mp4``), not
an identity the site guarantees: two sites' ``video.mp4`` must not share a card."""

CARD_ID_READABLE_LENGTH = 100


def card_id_for(extractor: str, source_id: str, webpage_url: str) -> str:
    """The card id of a source: ``<extractor>-<source id>`` when that is already a safe name
    (case kept: YouTube's ``abcDEF`` and ``ABCdef`` are different videos), else the safe name
    plus a short hash of what identifies the source, so two sources never share an id.
    """
    plain = f"{extractor}-{source_id}"
    readable = safe_name(plain, max_length=CARD_ID_READABLE_LENGTH)
    key = extractor.split(":", 1)[0].lower()
    if key in URL_NAMED_EXTRACTORS:
        identity = f"{extractor}:{normalise_source(webpage_url) if webpage_url else source_id}"
    elif readable != plain:
        identity = f"{extractor}:{source_id}"
    else:
        return readable
    digest = hashlib.sha256(identity.encode("utf-8")).hexdigest()[:12]
    return f"{readable}-{digest}"


class Chapter(BaseModel):
    title: str
    start: float
    end: float | None = None


class SubtitleTrack(BaseModel):
    lang: str
    ext: str
    automatic: bool
    name: str = ""
    file: str | None = None
    """Path of the downloaded file, relative to the ingest stage directory."""


class SourceInfo(BaseModel):
    extractor: str
    source_id: str
    title: str
    description: str = ""
    uploader: str = ""
    channel: str = ""
    uploader_url: str = ""
    upload_date: str | None = None
    """ISO date (YYYY-MM-DD) when the source gave one."""
    duration: float | None = None
    chapters: list[Chapter] = Field(default_factory=list)
    tags: list[str] = Field(default_factory=list)
    thumbnail_url: str | None = None
    webpage_url: str
    language: str | None = None
    live_status: str | None = None
    subtitles: list[SubtitleTrack] = Field(default_factory=list)
    width: int | None = None
    height: int | None = None
    vcodec: str | None = None
    acodec: str | None = None
    media_file: str | None = None
    """Downloaded media, relative to the ingest stage directory."""
    thumbnail_file: str | None = None
    media_duration: float | None = None
    """Duration of the downloaded file as ffprobe measured it."""
    clip: ClipOrigin | None = None
    """For a clip: the parent card and the span of it the media was cut from (the source's
    other fields are the parent's); its card id is the clip's."""

    @property
    def card_id(self) -> str:
        if self.clip is not None:
            return self.clip.card_id
        return card_id_for(self.extractor, self.source_id, self.webpage_url)

    @property
    def platform(self) -> str:
        """A human label for where the video comes from ("YouTube", "Vimeo", "Web")."""
        known = {
            "youtube": "YouTube",
            "vimeo": "Vimeo",
            "dailymotion": "Dailymotion",
            "twitter": "X",
            "facebook": "Facebook",
            "file": "Local file",
            "generic": "Web",
        }
        key = self.extractor.split(":", 1)[0].lower()
        return known.get(key, self.extractor.split(":", 1)[0].capitalize())
