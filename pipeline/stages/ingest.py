"""Ingest: fetch a recording's metadata, media, captions and thumbnail (through
:mod:`pipeline.tools.ytdlp`, the one module importing yt-dlp). The stage:

- expands playlists and channels into one source per entry (flat extraction, through the
  host gate when one is given: :func:`expand`);
- extracts metadata first, without downloading, and enforces the limits (duration, size,
  live or upcoming streams) before any media byte is fetched;
- applies the URL policy to the producer's URL, to every URL the extractor hands back, and to
  every connection yt-dlp opens (redirects included);
- downloads the best format up to ``ingest.max_height``, H.264 with AAC first, merged into one
  file, failing (never truncating) when a fragment is missing, and stopping as soon as the
  bytes fetched pass ``ingest.max_filesize_mb``, whatever the downloader;
- downloads captions (human ones before automatic ones), made WebVTT by yt-dlp's converter
  when the source offers TTML, SRT, ASS or YouTube's json3/srv3 only (a track that cannot be
  converted is left out), and the thumbnail;
- talks to each host as its entry of ``sources.sites`` says (cookies, proxy, User-Agent, rate
  cap, pacing: :class:`pipeline.tools.ytdlp.SourceAccess`);
- classifies every failure into the error taxonomy (:func:`pipeline.tools.ytdlp.classify`);
- goes through the gate of the source's host (:mod:`pipeline.core.hostgate`): waits while the
  host is paused or the site's download slots are taken, and reports refusals and success.

A clip's job (``options["clip"]``) fetches nothing: its media and words are cut from the
parent card's (:mod:`pipeline.stages.ingest_clip`).

Outputs, in the stage directory ``ingest/``: ``info.json`` (:class:`SourceInfo`),
``media.<ext>``, ``captions/<lang>.<ext>``, ``thumbnail.jpg`` (names in
:mod:`pipeline.core.readers`, whose readers the other stages read them with).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

from pipeline.core.clip import clip_spec
from pipeline.core.errors import ErrorCode, RecastError
from pipeline.core.fsutil import atomic_write_json, sha256_file
from pipeline.core.hostgate import HostGate, HostPass
from pipeline.core.readers import CAPTIONS_DIR, INFO_FILE, INGEST, THUMBNAIL_FILE
from pipeline.core.settings import IngestSettings, Settings
from pipeline.core.source import Chapter, SourceInfo, SubtitleTrack
from pipeline.core.stage import Queue, Stage, StageContext, StageResult
from pipeline.core.urlpolicy import UrlPolicy
from pipeline.stages.ingest_clip import ingest_clip
from pipeline.tools import ffmpeg_tools
from pipeline.tools.ytdlp import (
    RecastYoutubeDL,
    SourceAccess,
    classify,
    fetch_bytes,
    head_content_length,
    ytdlp_options,
)

NOT_YET_AVAILABLE = frozenset({"is_live", "is_upcoming", "post_live"})
MB = 1024 * 1024


def url_policy(settings: Settings) -> UrlPolicy:
    return UrlPolicy.from_networks(settings.ingest.allowed_private_networks)


# -- sources -----------------------------------------------------------------------------------


def local_path(source: str) -> Path | None:
    """The local file ``source`` names, if it is one (not a URL)."""
    if "://" in source:
        return None
    return Path(source).expanduser()


def check_source(source: str, settings: Settings) -> None:
    """Refuse a source before anything is fetched: scheme, address, local files."""
    path = local_path(source)
    if path is None:
        url_policy(settings).check_url(source)
        return
    if not settings.ingest.allow_local_files:
        raise RecastError(ErrorCode.SOURCE_FORBIDDEN, "Local files are not accepted here.")
    if not path.is_file():
        raise RecastError(ErrorCode.SOURCE_UNAVAILABLE, f"There is no file at {path}.")


def expand(
    source: str, settings: Settings, host_gate: HostGate | None = None, holder: str = ""
) -> list[str]:
    """The sources a submission stands for: one per playlist entry, or itself.

    With ``host_gate``, the look-up passes the gate of the source's host as ``holder`` (its
    job) does in ingest, without a download slot: :class:`~pipeline.core.hostgate.HostWait`
    while the host is paused, and a refusal is recorded (and raised as a ``HostWait``)."""
    check_source(source, settings)
    if local_path(source) is not None:
        return [source]
    if host_gate is None:
        return _expand_url(source, settings)
    with HostPass(host_gate, source, settings.sources, holder, download=False):
        return _expand_url(source, settings)


def _expand_url(source: str, settings: Settings) -> list[str]:
    access = SourceAccess.for_source(settings.sources, source)
    options = ytdlp_options(settings.ingest, site=access.job_site) | {
        "extract_flat": "in_playlist",
        "noplaylist": False,
    }
    with RecastYoutubeDL(options, url_policy(settings), access) as ydl:
        try:
            info = ydl.extract_info(source, download=False, process=False)
        except Exception as exc:
            raise classify(exc, ydl) from exc
    if info.get("_type") not in ("playlist", "multi_video"):
        return [source]
    entries: list[str] = []
    for entry in info.get("entries") or []:
        if len(entries) >= settings.ingest.playlist_max_entries:
            break
        url = _entry_url(entry)
        if url:
            entries.append(url)
    return entries


def _entry_url(entry: dict[str, Any] | None) -> str | None:
    if not entry:
        return None
    for key in ("url", "webpage_url"):
        if isinstance(entry.get(key), str) and entry[key].startswith(("http://", "https://")):
            return str(entry[key])
    formats = entry.get("formats") or []
    if formats and isinstance(formats[-1].get("url"), str):
        return str(formats[-1]["url"])
    return None


# -- metadata ----------------------------------------------------------------------------------


def _iso_date(value: Any) -> str | None:
    if isinstance(value, str) and len(value) == 8 and value.isdigit():
        try:
            return date(int(value[:4]), int(value[4:6]), int(value[6:])).isoformat()
        except ValueError:
            return None
    return None


def _subtitle_tracks(info: dict[str, Any], languages: list[str]) -> list[SubtitleTrack]:
    """Offered caption tracks, human ones first; automatic only for languages without human."""
    tracks: list[SubtitleTrack] = []
    human = info.get("subtitles") or {}
    automatic = info.get("automatic_captions") or {}
    for lang, offers in human.items():
        if offers:
            tracks.append(
                SubtitleTrack(
                    lang=lang,
                    ext=str(offers[0].get("ext") or "vtt"),
                    automatic=False,
                    name=str(offers[0].get("name") or ""),
                )
            )
    for lang, offers in automatic.items():
        if offers and lang not in human:
            tracks.append(
                SubtitleTrack(
                    lang=lang,
                    ext=str(offers[0].get("ext") or "vtt"),
                    automatic=True,
                    name=str(offers[0].get("name") or ""),
                )
            )
    return tracks


def source_info(info: dict[str, Any]) -> SourceInfo:
    """yt-dlp's info dict reduced to what Recast keeps."""
    chapters = [
        Chapter(
            title=str(c.get("title") or f"Chapter {i + 1}"),
            start=float(c.get("start_time") or 0),
            end=float(c["end_time"]) if c.get("end_time") is not None else None,
        )
        for i, c in enumerate(info.get("chapters") or [])
    ]
    return SourceInfo(
        extractor=str(info.get("extractor_key") or info.get("extractor") or "generic").lower(),
        source_id=str(info.get("id") or "unknown"),
        title=str(info.get("title") or info.get("id") or "Untitled"),
        description=str(info.get("description") or ""),
        uploader=str(info.get("uploader") or info.get("channel") or ""),
        channel=str(info.get("channel") or ""),
        uploader_url=str(info.get("uploader_url") or info.get("channel_url") or ""),
        upload_date=_iso_date(info.get("upload_date") or info.get("release_date")),
        duration=float(info["duration"]) if info.get("duration") else None,
        chapters=chapters,
        tags=[str(t) for t in info.get("tags") or []],
        thumbnail_url=_best_thumbnail(info),
        webpage_url=str(info.get("webpage_url") or info.get("original_url") or ""),
        language=info.get("language"),
        live_status=info.get("live_status") or ("is_live" if info.get("is_live") else None),
        subtitles=[],
        width=info.get("width"),
        height=info.get("height"),
        vcodec=info.get("vcodec"),
        acodec=info.get("acodec"),
    )


def _best_thumbnail(info: dict[str, Any]) -> str | None:
    thumbs = [t for t in info.get("thumbnails") or [] if t.get("url")]
    if thumbs:
        best = max(thumbs, key=lambda t: (t.get("preference") or 0, t.get("width") or 0))
        return str(best["url"])
    thumb = info.get("thumbnail")
    return str(thumb) if thumb else None


def _handed_back_urls(info: dict[str, Any]) -> Iterator[str]:
    """Every URL the extractor wants us to fetch for the selected formats."""
    for fmt in info.get("requested_formats") or [info]:
        for key in ("url", "manifest_url", "fragment_base_url"):
            if isinstance(fmt.get(key), str) and "://" in fmt[key]:
                yield str(fmt[key])
        for fragment in fmt.get("fragments") or []:
            if isinstance(fragment.get("url"), str) and "://" in fragment["url"]:
                yield str(fragment["url"])


def enforce_limits(info: dict[str, Any], settings: IngestSettings) -> None:
    """Refuse, before any media byte is fetched, what we must not or cannot download."""
    live = info.get("live_status") or ("is_live" if info.get("is_live") else None)
    if live in NOT_YET_AVAILABLE:
        raise RecastError(
            ErrorCode.SOURCE_LIVE,
            "The stream is live or has not started, so the recording is not available yet.",
        )
    duration = info.get("duration")
    if duration and float(duration) > settings.max_duration_s:
        raise RecastError(
            ErrorCode.LIMIT_DURATION,
            f"The video lasts {float(duration):.0f} s, "
            f"over the limit of {settings.max_duration_s:.0f} s.",
        )
    size = 0
    for fmt in info.get("requested_formats") or [info]:
        size += int(fmt.get("filesize") or fmt.get("filesize_approx") or 0)
    if size > settings.max_filesize_mb * MB:
        raise RecastError(
            ErrorCode.LIMIT_FILESIZE,
            f"The video is {size / MB:.0f} MB, "
            f"over the limit of {settings.max_filesize_mb:.0f} MB.",
        )


def _content_length(ydl: RecastYoutubeDL, info: dict[str, Any]) -> int | None:
    """Size of a single progressive download, asked with HEAD when the extractor did not say."""
    if info.get("requested_formats") or info.get("filesize") or info.get("filesize_approx"):
        return None
    if str(info.get("protocol") or "http").startswith(("m3u8", "http_dash")):
        return None
    url = info.get("url")
    if not isinstance(url, str) or not url.startswith(("http://", "https://")):
        return None
    return head_content_length(ydl, url, info.get("http_headers") or {})


class _SizeGuard:
    """A progress hook: stops the download once the bytes fetched, or the exact size a server
    announced, pass the size limit; reports percent.

    It counts every file of the download together (the video and audio formats of a merge,
    caption tracks), and every downloader reports to it as bytes arrive: progressive downloads
    block by block (whatever Content-Length said, or if it said nothing) and HLS/DASH fragment
    by fragment. Raising here aborts yt-dlp's download at once, before the next block or
    fragment is requested. Fragment estimates are not trusted: they extrapolate the first
    fragment and would refuse downloads that end under the limit.
    """

    def __init__(self, ctx: StageContext, limit_bytes: float):
        self.ctx = ctx
        self.limit = limit_bytes
        self.sizes: dict[str, float] = {}

    def __call__(self, status: dict[str, Any]) -> None:
        self.ctx.check_cancelled()
        done = status.get("downloaded_bytes") or 0
        total = status.get("total_bytes") or 0
        self.sizes[str(status.get("filename") or "")] = max(done, total)
        if sum(self.sizes.values()) > self.limit:
            raise RecastError(
                ErrorCode.LIMIT_FILESIZE,
                f"The download passed the limit of {self.limit / MB:g} MB and was stopped.",
            )
        total = total or status.get("total_bytes_estimate") or 0
        if status.get("status") == "downloading":
            speed = status.get("speed") or 0
            percent = 100.0 * done / total if total else 0.0
            self.ctx.progress(5 + 0.9 * percent, f"{done / MB:.1f} MB at {speed / MB:.1f} MB/s")


def _download_thumbnail(ydl: RecastYoutubeDL, url: str, out: Path) -> str | None:
    """The source's thumbnail as a JPEG in ``out``; None when it cannot be had."""
    from pipeline.tools.images import to_jpeg

    data = fetch_bytes(ydl, url, 20 * MB)
    if data is None:
        return None
    target = out / THUMBNAIL_FILE
    return THUMBNAIL_FILE if to_jpeg(data, target) else None


def _move_captions(info: dict[str, Any], tracks: list[SubtitleTrack], out: Path) -> None:
    captions = out / CAPTIONS_DIR
    requested = info.get("requested_subtitles") or {}
    for track in tracks:
        offer = requested.get(track.lang) or {}
        path = offer.get("filepath")
        if not path or not Path(path).is_file():
            continue
        captions.mkdir(exist_ok=True)
        ext = str(offer.get("ext") or track.ext)
        name = f"{track.lang}{'.auto' if track.automatic else ''}.{ext}"
        shutil.move(path, captions / name)
        track.ext = ext
        track.file = f"{CAPTIONS_DIR}/{name}"


def _downloaded_file(info: dict[str, Any]) -> Path | None:
    for candidate in [
        info.get("filepath"),
        *[d.get("filepath") for d in info.get("requested_downloads") or []],
    ]:
        if candidate and Path(candidate).is_file():
            return Path(candidate)
    return None


def _probe(path: Path, max_pixels: int) -> dict[str, Any]:
    """ffprobe's view of the media, read under the source policy (``media.invalid`` when it is
    not a plain media file, ``limit.pixels`` when its frames are too large)."""
    return ffmpeg_tools.probe(path, policy=ffmpeg_tools.source_input(max_pixels))


def _check_downloaded(
    path: Path, meta: SourceInfo, settings: IngestSettings, probe: dict[str, Any]
) -> float:
    """The file's real duration (from ``probe``, ffprobe's view of ``path``); refuse a file
    over the limits or shorter than announced."""
    duration = ffmpeg_tools.media_duration(probe) or 0.0
    if duration > settings.max_duration_s:
        raise RecastError(
            ErrorCode.LIMIT_DURATION,
            f"The video lasts {duration:.0f} s, over the limit of {settings.max_duration_s:.0f} s.",
        )
    if path.stat().st_size > settings.max_filesize_mb * MB:
        raise RecastError(ErrorCode.LIMIT_FILESIZE, "The downloaded file is over the size limit.")
    if meta.duration and duration < 0.9 * meta.duration - 2:
        raise RecastError(
            ErrorCode.SOURCE_INCOMPLETE,
            f"The download lasts {duration:.0f} s but the source announced {meta.duration:.0f} s.",
        )
    return duration


def _ingest_url(ctx: StageContext) -> SourceInfo:
    settings = ctx.settings
    out = ctx.out
    policy = url_policy(settings)
    policy.check_url(ctx.spec.source)
    access = SourceAccess.for_source(settings.sources, ctx.spec.source)
    options = ytdlp_options(settings.ingest, ctx, access.job_site) | {
        "outtmpl": {"default": str(out / "media.%(ext)s")},
        "writesubtitles": True,
        "writeautomaticsub": True,
        "progress_hooks": [_SizeGuard(ctx, settings.ingest.max_filesize_mb * MB)],
    }
    with RecastYoutubeDL(options, policy, access) as ydl:
        ctx.progress(1, "reading metadata")
        try:
            info = ydl.extract_info(ctx.spec.source, download=False)
        except Exception as exc:
            raise classify(exc, ydl) from exc
        if info.get("_type") in ("playlist", "multi_video"):
            raise RecastError(
                ErrorCode.SOURCE_UNSUPPORTED,
                "That URL is a playlist; submit it to expand it into jobs.",
            )
        for url in _handed_back_urls(info):
            policy.check_url(url)
        enforce_limits(info, settings.ingest)
        size = _content_length(ydl, info)
        if size is not None:
            enforce_limits(info | {"filesize": size}, settings.ingest)
        meta = source_info(info)
        meta.subtitles = _subtitle_tracks(info, settings.ingest.caption_languages)
        if meta.thumbnail_url:
            meta.thumbnail_file = _download_thumbnail(ydl, meta.thumbnail_url, out)
        _publish_preview(ctx, meta)
        ctx.progress(5, "downloading")
        ydl.last_network_error = None
        try:
            ydl.process_info(info)
        except RecastError:
            raise
        except Exception as exc:
            raise classify(exc, ydl, during_download=True) from exc
        media = _downloaded_file(info)
        if media is None:
            raise RecastError(ErrorCode.SOURCE_INCOMPLETE, "The download produced no media file.")
        _move_captions(info, meta.subtitles, out)
    final = out / f"media{media.suffix}"
    if media != final:
        media.rename(final)
    meta.media_file = final.name
    meta.media_duration = _check_downloaded(
        final, meta, settings.ingest, _probe(final, settings.media.max_pixels)
    )
    _publish_preview(ctx, meta)  # again, now with the measured duration
    return meta


def _ingest_file(ctx: StageContext, path: Path) -> SourceInfo:
    probe = _probe(path, ctx.settings.media.max_pixels)
    source_id = sha256_file(path)[:16]
    target = ctx.out / f"media{path.suffix.lower() or '.bin'}"
    try:
        os.link(path, target)
    except OSError:
        shutil.copyfile(path, target)
    tags = probe.get("format", {}).get("tags") or {}
    meta = SourceInfo(
        extractor="file",
        source_id=source_id,
        title=str(tags.get("title") or path.stem),
        description=str(tags.get("comment") or tags.get("description") or ""),
        webpage_url="",  # a local file has no public page; its path must never be published
        media_file=target.name,
        duration=ffmpeg_tools.media_duration(probe),
    )
    # ``target`` is ``path`` linked (or copied): the probe of ``path`` is the probe of it.
    meta.media_duration = _check_downloaded(target, meta, ctx.settings.ingest, probe)
    _publish_preview(ctx, meta)
    return meta


def _publish_preview(ctx: StageContext, meta: SourceInfo) -> None:
    """Record the metadata (info.json) and publish the preview card from it."""
    atomic_write_json(ctx.out / INFO_FILE, meta.model_dump(mode="json"))
    if ctx.publisher is not None:
        ctx.publisher.preview(ctx)


def run(ctx: StageContext) -> StageResult:
    clip = clip_spec(ctx.spec)
    if clip is not None:  # cut from a ready card, nothing fetched (pipeline.stages.ingest_clip)
        meta, origin = ingest_clip(ctx, clip, record=lambda found: _publish_preview(ctx, found))
        ctx.progress(100, "cut")
        detail = f"{meta.media_duration or 0:.1f} s cut from {origin}"
        return StageResult.done(ctx.out, detail=detail, card_id=meta.card_id)
    check_source(ctx.spec.source, ctx.settings)
    path = local_path(ctx.spec.source)
    if path is not None:
        meta = _ingest_file(ctx, path)
    else:
        # A paused host makes the job wait (HostWait) before any request; a refusal is counted.
        with HostPass(ctx.host_gate, ctx.spec.source, ctx.settings.sources, ctx.job_id):
            meta = _ingest_url(ctx)
    ctx.progress(100, "downloaded")
    return StageResult.done(
        ctx.out, detail=f"{meta.media_duration or 0:.1f} s of media", card_id=meta.card_id
    )


STAGE = Stage(name=INGEST, queue=Queue.INGEST, run=run, time_limit_factor=2.0)
