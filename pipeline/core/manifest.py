"""The manifest (``<id>/manifest.json``): every published asset with its size and checksum."""

from __future__ import annotations

import mimetypes
from datetime import datetime
from pathlib import Path

from pydantic import BaseModel, Field

from pipeline.core.fsutil import sha256_file

MANIFEST_VERSION = "1.0"

mimetypes.add_type("application/vnd.apple.mpegurl", ".m3u8")
mimetypes.add_type("text/vtt", ".vtt")
mimetypes.add_type("application/x-subrip", ".srt")
mimetypes.add_type("video/iso.segment", ".m4s")
mimetypes.add_type("image/webp", ".webp")
mimetypes.add_type("audio/mp4", ".m4a")


class Asset(BaseModel):
    path: str = Field(description="Key relative to the card's directory.")
    type: str
    role: str
    size: int
    sha256: str
    duration: float | None = None
    width: int | None = None
    height: int | None = None


class Manifest(BaseModel):
    schema_version: str = MANIFEST_VERSION
    id: str
    status: str
    updated: datetime
    assets: list[Asset] = Field(default_factory=list)

    def find(self, role: str) -> list[Asset]:
        return [asset for asset in self.assets if asset.role == role]


def content_type(path: str) -> str:
    guessed, _ = mimetypes.guess_type(path)
    return guessed or "application/octet-stream"


def describe(
    file: Path,
    key: str,
    role: str,
    *,
    duration: float | None = None,
    width: int | None = None,
    height: int | None = None,
) -> Asset:
    return Asset(
        path=key,
        type=content_type(file.name),
        role=role,
        size=file.stat().st_size,
        sha256=sha256_file(file),
        duration=duration,
        width=width,
        height=height,
    )
