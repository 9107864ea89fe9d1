"""Assembles a card and everything published beside it from the finished stages' outputs.

The stages say what their files are for (:class:`~pipeline.core.stage.OutputAsset` roles); this
module turns them into the card's fields (streams, poster, captions, transcript, storyboard,
chapters and their track), renders the pages (card.html, watch.html, oembed.json) and lists
every file to publish with its key, role and dimensions. The card is validated against the
published JSON Schema (docs/card.schema.json) before anything is written.

Nothing here writes to storage; :mod:`pipeline.publish.writer` does, in a safe order.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

import jsonschema

from pipeline.core import languages
from pipeline.core.card import (
    CaptionTrack,
    Card,
    CardStatus,
    ChapterRef,
    ImageSource,
    Link,
    Pages,
    ParentRef,
    Poster,
    SocialCut,
    Streams,
    TranscriptLinks,
    card_json_schema,
)
from pipeline.core.errors import ErrorCode, RecastError
from pipeline.core.fsutil import sha256_file
from pipeline.core.job import StageStatus
from pipeline.core.manifest import Asset, content_type
from pipeline.core.settings import Settings
from pipeline.core.source import SourceInfo
from pipeline.core.stage import AssetRole, FileRecord, OutputAsset, StageResult
from pipeline.publish import cardbuilder, html, oembed
from pipeline.publish.jsonld import video_jsonld
from pipeline.publish.keys import card_key
from pipeline.publish.paragraphs import transcript_paragraphs
from pipeline.publish.static import StaticFile
from pipeline.storage import Storage
from pipeline.tools.images import image_size, placeholder

SCHEMA_FILE = Path(__file__).resolve().parents[2] / "docs" / "card.schema.json"


@dataclass(frozen=True)
class StageOutput:
    """A finished stage: its directory and result."""

    name: str
    directory: Path
    result: StageResult


@dataclass
class PlannedFile:
    """A file to publish, at ``key`` under the card's directory (``hls/master.m3u8``)."""

    key: str
    role: str
    file: Path | None = None
    data: bytes | None = None
    width: int | None = None
    height: int | None = None
    duration: float | None = None
    sha256: str | None = None
    """Known already (the stage's result records it), so the file need not be read again."""

    def content(self) -> bytes:
        if self.data is not None:
            return self.data
        assert self.file is not None
        return self.file.read_bytes()

    def describe(self) -> Asset:
        if self.data is not None:
            import hashlib

            size, digest = len(self.data), hashlib.sha256(self.data).hexdigest()
        else:
            assert self.file is not None
            size = self.file.stat().st_size
            digest = self.sha256 or sha256_file(self.file)
        return Asset(
            path=self.key,
            type=content_type(self.key),
            role=self.role,
            size=size,
            sha256=digest,
            duration=self.duration,
            width=self.width,
            height=self.height,
        )


@dataclass
class Publication:
    """A card and every file that goes with it (pages included; manifest and card.json not)."""

    card: Card
    files: list[PlannedFile] = field(default_factory=list)
    static: list[StaticFile] = field(default_factory=list)


@dataclass
class _Context:
    storage: Storage
    settings: Settings
    card_id: str
    files: list[PlannedFile] = field(default_factory=list)
    records: dict[str, dict[str, FileRecord]] = field(default_factory=dict)

    def url(self, key: str) -> str:
        """A link to ``<id>/<key>`` as written in card.json (and the pages beside it)."""
        return self.storage.relative_url(f"{self.card_id}/{key}", card_key(self.card_id))

    def add(self, output: StageOutput, asset: OutputAsset) -> str:
        file = output.directory / asset.file
        if not file.is_file():
            raise RecastError(
                ErrorCode.INTERNAL,
                f"The {output.name} stage lists {asset.file} for publication but it is missing.",
            )
        if output.name not in self.records:
            self.records[output.name] = {r.path: r for r in output.result.files}
        record = self.records[output.name].get(asset.file)
        known = record.sha256 if record and record.size == file.stat().st_size else None
        self.files.append(
            PlannedFile(
                key=asset.key,
                role=str(asset.role),
                file=file,
                width=asset.width,
                height=asset.height,
                duration=asset.duration,
                sha256=known,
            )
        )
        return self.url(asset.key)


@lru_cache(maxsize=1)
def _schema() -> dict[str, Any]:
    if SCHEMA_FILE.is_file():
        loaded: dict[str, Any] = json.loads(SCHEMA_FILE.read_text("utf-8"))
        return loaded
    return card_json_schema()


def validate_card(card: Card) -> None:
    """Check the card against docs/card.schema.json; a failure is a bug, never published."""
    document = json.loads(card.to_json())
    errors = sorted(
        jsonschema.Draft202012Validator(_schema()).iter_errors(document), key=lambda e: e.path
    )
    if errors:
        where = "/".join(str(part) for part in errors[0].absolute_path)
        raise RecastError(
            ErrorCode.INTERNAL,
            f"The card does not match its schema at {where}: {errors[0].message}",
        )


def source_json(meta: SourceInfo) -> bytes:
    """What the source said about itself, as published: its URLs in their public form."""
    public = meta.model_copy(
        update={
            "webpage_url": cardbuilder.public_source_url(meta, meta.webpage_url),
            "uploader_url": cardbuilder.public_source_url(meta, meta.uploader_url),
            "thumbnail_url": cardbuilder.public_source_url(meta, meta.thumbnail_url or "") or None,
        }
    )
    data = public.model_dump(mode="json", exclude={"media_file", "thumbnail_file"})
    return (json.dumps(data, ensure_ascii=False, indent=2) + "\n").encode()


def _poster(ctx: _Context, title: str, items: list[tuple[StageOutput, OutputAsset]]) -> Poster:
    sources = []
    for output, asset in items:
        if not asset.width or not asset.height:
            width, height = image_size(output.directory / asset.file)
            asset = asset.model_copy(update={"width": width, "height": height})
        src = ctx.add(output, asset)
        sources.append(
            ImageSource(
                src=src,
                width=asset.width or 1,
                height=asset.height or 1,
                type=content_type(asset.key),
            )
        )
    sources.sort(key=lambda s: s.width, reverse=True)
    jpegs = [s for s in sources if s.type == "image/jpeg"] or sources
    main = jpegs[0]
    smallest = min(items, key=lambda item: item[1].width or 0)
    hash_value = next(
        (str(a.extra["placeholder"]) for _o, a in items if a.extra.get("placeholder")), None
    )
    if hash_value is None and content_type(smallest[1].key) in (
        "image/jpeg",
        "image/webp",
        "image/png",
    ):
        hash_value = placeholder(smallest[0].directory / smallest[1].file)
    return Poster(
        src=main.src,
        width=main.width,
        height=main.height,
        alt=f"Poster of {title}",
        srcset=", ".join(f"{s.src} {s.width}w" for s in sorted(jpegs, key=lambda s: s.width)),
        sources=sources,
        placeholder=hash_value,
    )


def poster_of(
    storage: Storage,
    settings: Settings,
    card_id: str,
    title: str,
    directory: Path,
    assets: list[OutputAsset],
) -> tuple[Poster, list[PlannedFile]]:
    """A card's poster from poster assets made in ``directory`` (as the thumbnails stage lists
    them), and the files to publish: its sizes and formats, and the square crop."""
    ctx = _Context(storage, settings, card_id)
    output = StageOutput("poster", directory, StageResult(assets=assets))
    poster = _poster(ctx, title, [(output, a) for a in assets if a.role is AssetRole.POSTER])
    for asset in assets:
        if asset.role is not AssetRole.POSTER:
            ctx.add(output, asset)
    return poster, ctx.files


def _fallback_poster(ctx: _Context, meta: SourceInfo, thumbnail: Path, work: Path) -> Poster:
    """The poster made from the source's thumbnail (as the preview card has it)."""
    from pipeline.publish.preview import poster_from_thumbnail

    work.mkdir(parents=True, exist_ok=True)
    poster, uploads = poster_from_thumbnail(ctx.storage, ctx.settings, meta, thumbnail, work)
    for file, key in uploads:
        relative = key.split("/", 1)[1]
        source = next(s for s in poster.sources if s.src.endswith(relative.rsplit("/", 1)[-1]))
        ctx.files.append(
            PlannedFile(relative, "poster", file=file, width=source.width, height=source.height)
        )
    return poster


def _caption_label(asset: OutputAsset) -> str:
    if asset.label:
        return asset.label
    name = languages.label(asset.lang or "und")
    return f"{name} (automatic)" if asset.automatic else name


def _excerpt(meta: SourceInfo, opening: str | None, settings: Settings) -> str | None:
    """The excerpt: ``cardbuilder.choose_excerpt`` (description with real sentences, else the
    transcript's opening) when the transcript issue's helper is there, else the same rule here.
    None: the description as build_card cuts it."""
    chooser = getattr(cardbuilder, "choose_excerpt", None)
    if chooser is not None:
        chosen = chooser(meta.description, opening, settings.card.excerpt_length)
        return chosen if isinstance(chosen, str) else None
    if cardbuilder.has_sentences(meta.description) or not opening or not opening.strip():
        return None
    return cardbuilder.make_excerpt(opening, settings.card.excerpt_length)


@dataclass
class CardParts:
    """What the stages contributed, gathered by role."""

    status: CardStatus
    poster: Poster | None = None
    streams: Streams = field(default_factory=Streams)
    captions: list[CaptionTrack] = field(default_factory=list)
    caption_files: dict[str, Path] = field(default_factory=dict)
    transcript: TranscriptLinks | None = None
    transcript_txt: Path | None = None
    transcript_json: Path | None = None
    storyboard: str | None = None
    preview_clip: str | None = None
    language: str | None = None
    opening: str | None = None
    downloads: list[html.Download] = field(default_factory=list)
    chapters: list[ChapterRef] | None = None
    """The chapters stage's (the source's held to the rules, else the transcript's; empty:
    none); None when it did not run, and the source's stand as build_card took them."""
    chapters_track: str | None = None


def gather(
    ctx: _Context, meta: SourceInfo, outputs: list[StageOutput], status: CardStatus
) -> CardParts:
    parts = CardParts(status=status)
    by_role: dict[AssetRole, list[tuple[StageOutput, OutputAsset]]] = {}
    for output in outputs:
        if output.result.status != StageStatus.DONE:
            continue
        language = output.result.data.get("language")
        if isinstance(language, str) and language:
            parts.language = language
        opening = output.result.data.get("opening")
        if isinstance(opening, str) and opening.strip():
            parts.opening = opening
        chapters = output.result.data.get("chapters")
        if isinstance(chapters, list):
            parts.chapters = [ChapterRef.model_validate(chapter) for chapter in chapters]
        for asset in output.result.assets:
            by_role.setdefault(asset.role, []).append((output, asset))

    posters = by_role.pop(AssetRole.POSTER, [])
    if posters:
        parts.poster = _poster(ctx, meta.title, posters)
    masters = by_role.pop(AssetRole.HLS_MASTER, [])
    if masters:
        provisional = [m for m in masters if m[1].extra.get("provisional")]
        final = [m for m in masters if not m[1].extra.get("provisional")]
        chosen = final if status is CardStatus.READY and final else (final or provisional)
        for output, asset in masters:
            url = ctx.add(output, asset)
            if asset is chosen[0][1]:
                parts.streams.hls = url
    mp4s = sorted(by_role.pop(AssetRole.MP4, []), key=lambda item: -(item[1].height or 0))
    for output, asset in mp4s:
        url = ctx.add(output, asset)
        parts.streams.mp4.append(
            ImageSource(src=url, width=asset.width or 1, height=asset.height or 1, type="video/mp4")
        )
        parts.downloads.append(html.Download(f"MP4 {asset.height or ''}p".replace(" p", ""), url))
    for output, asset in by_role.pop(AssetRole.AUDIO, []):
        parts.streams.audio = ctx.add(output, asset)
        parts.downloads.append(html.Download("Audio", parts.streams.audio))
    for output, asset in by_role.pop(AssetRole.SOCIAL_CUT, []):
        url = ctx.add(output, asset)
        parts.streams.social = SocialCut(
            src=url,
            width=asset.width or 1,
            height=asset.height or 1,
            captions=bool(asset.extra.get("captions")),
        )
        parts.downloads.append(html.Download("Vertical MP4 (9:16)", url))
    for output, asset in by_role.pop(AssetRole.STORYBOARD_VTT, []):
        parts.storyboard = ctx.add(output, asset)
    for output, asset in by_role.pop(AssetRole.CHAPTERS, []):
        parts.chapters_track = ctx.add(output, asset)
    clips = [ctx.add(output, asset) for output, asset in by_role.pop(AssetRole.PREVIEW_CLIP, [])]
    mp4_clips = [url for url in clips if content_type(url) == "video/mp4"]
    if clips:
        parts.preview_clip = (mp4_clips or clips)[0]  # MP4 plays everywhere
    _gather_captions(ctx, parts, by_role.pop(AssetRole.CAPTIONS, []))
    txt = by_role.pop(AssetRole.TRANSCRIPT_TXT, [])
    doc = by_role.pop(AssetRole.TRANSCRIPT_JSON, [])
    if txt:
        txt_url = ctx.add(*txt[0])
        parts.transcript_txt = txt[0][0].directory / txt[0][1].file
        json_url = txt_url
        if doc:
            json_url = ctx.add(*doc[0])
            parts.transcript_json = doc[0][0].directory / doc[0][1].file
        parts.transcript = TranscriptLinks.model_validate(
            {"txt": txt_url, "json": json_url, "language": parts.language}
        )
        parts.downloads.append(html.Download("Transcript", txt_url))
    for items in by_role.values():  # the rest: HLS media, storyboard sprites, square poster...
        for output, asset in items:
            ctx.add(output, asset)
    return parts


def _gather_captions(
    ctx: _Context, parts: CardParts, items: list[tuple[StageOutput, OutputAsset]]
) -> None:
    tracks: dict[tuple[str, bool], CaptionTrack] = {}
    srt: dict[tuple[str, bool], str] = {}
    for output, asset in items:
        url = ctx.add(output, asset)
        ident = (asset.lang or "und", bool(asset.automatic))
        if asset.key.lower().endswith(".srt"):
            srt[ident] = url
            continue
        kind = asset.extra.get("kind")
        translated_from = asset.extra.get("translated_from")
        tracks[ident] = CaptionTrack(
            lang=ident[0],
            label=_caption_label(asset),
            kind=kind if kind in ("captions", "subtitles") else "captions",
            automatic=ident[1],
            src=url,
            translated_from=translated_from if isinstance(translated_from, str) else None,
        )
        if tracks[ident].translated_from is None:
            parts.caption_files.setdefault(ident[0], output.directory / asset.file)
    for ident, track in tracks.items():
        track.srt = srt.get(ident)
    # a machine translation after the tracks in the words spoken, whatever its language
    parts.captions = sorted(
        tracks.values(), key=lambda t: (t.translated_from is not None, t.automatic, t.lang)
    )


def assemble(
    *,
    meta: SourceInfo,
    outputs: list[StageOutput],
    status: CardStatus,
    event: str | None,
    settings: Settings,
    storage: Storage,
    static: dict[str, StaticFile],
    now: datetime,
    work: Path,
    source_thumbnail: Path | None = None,
) -> Publication:
    """The card of ``status`` and its files, from the finished stages' outputs; without a
    poster among them, the poster is made from ``source_thumbnail`` when there is one."""
    card_id = meta.card_id
    ctx = _Context(storage, settings, card_id)
    parts = gather(ctx, meta, outputs, status)
    if parts.poster is None and source_thumbnail is not None:
        parts.poster = _fallback_poster(ctx, meta, source_thumbnail, work)
    card = cardbuilder.build_card(
        meta,
        settings,
        status=status,
        event=event,
        poster=parts.poster,
        updated=now,
    )
    excerpt = _excerpt(meta, parts.opening, settings)
    if excerpt is not None:
        card.excerpt = excerpt
    playable = bool(parts.streams.hls or parts.streams.mp4)
    if not playable:
        card.status = CardStatus.PREVIEW  # nothing to play yet: an improved preview
    watch_url = ctx.url("watch.html") if playable else None
    oembed_url = ctx.url("oembed.json") if playable else None
    card.streams = parts.streams
    card.captions = parts.captions
    card.transcript = parts.transcript
    card.storyboard = parts.storyboard
    card.preview_clip = parts.preview_clip
    if parts.chapters is not None:
        card.chapters = parts.chapters
        card.chapters_track = parts.chapters_track if parts.chapters else None
    card.language = parts.language or meta.language
    if meta.clip is not None:
        card.parent = ParentRef(
            id=meta.clip.parent,
            title=meta.clip.parent_title,
            url=ctx.storage.relative_url(f"{meta.clip.parent}/watch.html", card_key(card_id)),
            start=meta.clip.start,
            end=meta.clip.end,
        )
    card.pages = Pages(card_html=ctx.url("card.html"), watch_html=watch_url, oembed=oembed_url)
    if watch_url is not None:
        card.link = Link(label=settings.card.watch_label, href=watch_url)
    elif not card.link.href:  # a local file has no page of its own to link to yet
        card.link = Link(label=settings.card.watch_label, href=ctx.url("card.html"))
    transcript_text = (
        parts.transcript_txt.read_text("utf-8", errors="replace") if parts.transcript_txt else None
    )
    card.jsonld = video_jsonld(
        card,
        embed_url=watch_url,
        transcript=transcript_text,
        publisher_name=settings.publish.site_name,
    )
    validate_card(card)

    ctx.files.append(PlannedFile("source.json", "metadata", data=source_json(meta)))
    ctx.files.append(PlannedFile("card.html", "page", data=html.render_card_html(card).encode()))
    used_static: list[StaticFile] = []
    if watch_url is not None and oembed_url is not None:
        used_static = [
            static[name] for name in ("watch.js", "watch.css", "hls.min.js") if name in static
        ]
        page = html.render_watch_html(
            card,
            links=html.PageLinks(
                watch=watch_url,
                oembed=oembed_url,
                canonical=watch_url if "://" in watch_url else None,
            ),
            static=html.StaticUrls(
                js=_static_url(ctx, static["watch.js"]),
                css=_static_url(ctx, static["watch.css"]),
                hls=_static_url(ctx, static["hls.min.js"]) if "hls.min.js" in static else None,
            ),
            extras=html.WatchExtras(
                paragraphs=transcript_paragraphs(
                    parts.transcript_json, _main_caption_file(card, parts)
                ),
                site_name=settings.publish.site_name,
            ),
            downloads=parts.downloads,
        )
        ctx.files.append(PlannedFile("watch.html", "page", data=page.encode()))
        data = oembed.oembed_json(card, watch_url, settings.publish)
        ctx.files.append(PlannedFile("oembed.json", "oembed", data=data))
    return Publication(card=card, files=ctx.files, static=used_static)


def _static_url(ctx: _Context, item: StaticFile) -> str:
    return ctx.storage.relative_url(item.key, f"{ctx.card_id}/watch.html")


def _main_caption_file(card: Card, parts: CardParts) -> Path | None:
    for track in card.captions:
        if track.lang in parts.caption_files:
            return parts.caption_files[track.lang]
    return None
