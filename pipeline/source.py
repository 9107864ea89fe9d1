"""What a source said about itself, sanitised: the typed form of yt-dlp's info dict.

This is what the ingest stage writes to ``ingest/info.json`` and what later stages and the
card read. It keeps only plain values (no URLs with tokens beyond what the card needs).
"""

from __future__ import annotations

from pydantic import BaseModel, Field


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

    @property
    def card_id(self) -> str:
        from pipeline.fsutil import safe_name

        return safe_name(f"{self.extractor}-{self.source_id}".lower(), max_length=120)

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
