"""The preview card: published as soon as the ingest stage has the metadata, before any media
work, so a CMS can show the teaser seconds after a producer submits the URL.

Writes, in this order: poster images, ``source.json``, ``manifest.json``, ``card.json``.
A card that is already better than a preview (playable, ready) is left as it is.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from pipeline.card import Card, CardStatus, ImageSource, Poster
from pipeline.cardbuilder import build_card
from pipeline.images import placeholder, resize_to_width
from pipeline.job import JobState, utcnow
from pipeline.manifest import Manifest, describe
from pipeline.settings import Settings
from pipeline.source import SourceInfo
from pipeline.stage import StageContext
from pipeline.storage import Storage, open_storage

log = logging.getLogger("recast.preview")


def card_key(card_id: str) -> str:
    return f"{card_id}/card.json"


def read_card(storage: Storage, card_id: str) -> Card | None:
    data = storage.get_bytes(card_key(card_id))
    if data is None:
        return None
    return Card.model_validate_json(data)


def poster_from_thumbnail(
    storage: Storage, settings: Settings, meta: SourceInfo, thumbnail: Path, work: Path
) -> tuple[Poster, list[tuple[Path, str]]]:
    """Poster sizes made from the source's thumbnail, and the files to upload with their keys."""
    sources: list[ImageSource] = []
    uploads: list[tuple[Path, str]] = []
    for width in sorted(set(settings.card.poster_widths), reverse=True):
        file = work / f"source-{width}.jpg"
        real_w, real_h = resize_to_width(thumbnail, file, width)
        key = f"{meta.card_id}/thumbs/source-{real_w}.jpg"
        if any(s.width == real_w for s in sources):
            continue
        uploads.append((file, key))
        src = storage.relative_url(key, card_key(meta.card_id))
        sources.append(ImageSource(src=src, width=real_w, height=real_h, type="image/jpeg"))
    largest = sources[0]
    poster = Poster(
        src=largest.src,
        width=largest.width,
        height=largest.height,
        alt=f"Poster of {meta.title}",
        srcset=", ".join(f"{s.src} {s.width}w" for s in sources),
        sources=sources,
        placeholder=placeholder(uploads[-1][0]),
    )
    return poster, uploads


class PreviewPublisher:
    """The executor's early publisher (see :class:`pipeline.stage.Publisher`)."""

    def __init__(self, settings: Settings, storage: Storage | None = None):
        self.settings = settings
        self.storage = storage or open_storage(settings)
        self._published_by_job: dict[str, str] = {}

    def preview(self, ctx: StageContext) -> None:
        meta = SourceInfo.model_validate_json((ctx.out / "info.json").read_text("utf-8"))
        existing = read_card(self.storage, meta.card_id)
        if existing is not None and existing.status != CardStatus.PREVIEW:
            return
        work = ctx.out / ".preview"
        work.mkdir(exist_ok=True)
        poster = None
        uploads: list[tuple[Path, str]] = []
        if meta.thumbnail_file:
            poster, uploads = poster_from_thumbnail(
                self.storage, self.settings, meta, ctx.out / meta.thumbnail_file, work
            )
        now = utcnow()
        card = build_card(
            meta,
            self.settings,
            status=CardStatus.PREVIEW,
            event=ctx.spec.event,
            poster=poster,
            updated=now,
        )
        manifest = Manifest(id=meta.card_id, status=card.status, updated=now)
        for file, key in uploads:
            self.storage.put_file(key, file, "image/jpeg")
            width, height = (s.width, s.height) if (s := _source_for(poster, key)) else (None, None)
            manifest.assets.append(
                describe(file, key.split("/", 1)[1], "poster", width=width, height=height)
            )
        source_json = json.dumps(
            meta.model_dump(mode="json", exclude={"media_file", "thumbnail_file"}),
            ensure_ascii=False,
            indent=2,
        ).encode()
        self.storage.put_bytes(f"{meta.card_id}/source.json", source_json, "application/json")
        self.storage.put_bytes(
            f"{meta.card_id}/manifest.json",
            manifest.model_dump_json(indent=2).encode(),
            "application/json",
        )
        self.storage.put_bytes(card_key(meta.card_id), card.to_json().encode(), "application/json")
        self._published_by_job[ctx.job_id] = meta.card_id
        for file, _key in uploads:
            file.unlink(missing_ok=True)
        work.rmdir()

    def job_failed(self, job: JobState) -> None:
        card_id = self._published_by_job.pop(job.id, None)
        if card_id is None:
            return
        card = read_card(self.storage, card_id)
        if card is None or card.status != CardStatus.PREVIEW:
            return
        log.info("withdrawing the preview card %s of failed job %s", card_id, job.id)
        self.storage.delete(card_key(card_id))
        for key in self.storage.list(f"{card_id}/"):
            self.storage.delete(key)


def _source_for(poster: Poster | None, key: str) -> ImageSource | None:
    if poster is None:
        return None
    name = key.rsplit("/", 1)[-1]
    return next((s for s in poster.sources if s.src.endswith(name)), None)
