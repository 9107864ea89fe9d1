"""Ingest: fetch a recording's metadata, media, captions and thumbnail with yt-dlp.

The only module that imports yt_dlp. It owns every yt-dlp option and:

- expands playlists and channels into one source per entry (flat extraction);
- extracts metadata first, without downloading, and enforces the limits (duration, size,
  live or upcoming streams) before any media byte is fetched;
- applies the URL policy to the producer's URL, to every URL the extractor hands back, and to
  every connection yt-dlp opens (redirects included);
- downloads the best format up to ``ingest.max_height``, H.264 with AAC first, merged into one
  file, failing (never truncating) when a fragment is missing;
- downloads captions (human ones before automatic ones) and the thumbnail;
- classifies every yt-dlp failure by its cause into the error taxonomy, here and nowhere else.

Outputs, in the stage directory ``ingest/``: ``info.json`` (:class:`SourceInfo`),
``media.<ext>``, ``captions/<lang>.<ext>``, ``thumbnail.jpg``.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import socket
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import yt_dlp
from yt_dlp.networking import _urllib as ytdlp_urllib
from yt_dlp.networking.common import HEADRequest, Request
from yt_dlp.networking.exceptions import HTTPError, IncompleteRead, TransportError
from yt_dlp.utils import DownloadError, ExtractorError, GeoRestrictedError, UnsupportedError

from pipeline import ffmpeg_tools
from pipeline.errors import ErrorCode, RecastError
from pipeline.fsutil import atomic_write_json
from pipeline.settings import IngestSettings, Settings
from pipeline.source import Chapter, SourceInfo, SubtitleTrack
from pipeline.stage import Queue, Stage, StageContext, StageResult
from pipeline.urlpolicy import UrlPolicy

INFO_FILE = "info.json"
THUMBNAIL_FILE = "thumbnail.jpg"
CAPTIONS_DIR = "captions"
NOT_YET_AVAILABLE = frozenset({"is_live", "is_upcoming", "post_live"})
MB = 1024 * 1024

# -- connection guard --------------------------------------------------------------------------
# yt-dlp's urllib handler opens every socket through this module-level function; wrapping it
# lets the URL policy see the address actually connected to, after redirects and DNS.
_original_create_connection = ytdlp_urllib.create_connection
_active_policy: UrlPolicy = UrlPolicy()


def _guarded_socket_connect(ip_addr: Any, timeout: Any, source_address: Any) -> socket.socket:
    family, _type, _proto, _name, sockaddr = ip_addr
    _active_policy.check_address(str(sockaddr[0]), str(sockaddr[0]))
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        if timeout is not socket._GLOBAL_DEFAULT_TIMEOUT:  # type: ignore[attr-defined]
            sock.settimeout(timeout)
        if source_address:
            sock.bind(source_address)
        sock.connect(sockaddr)
    except OSError:
        sock.close()
        raise
    return sock


def _guarded_create_connection(address: Any, *args: Any, **kwargs: Any) -> socket.socket:
    kwargs["_create_socket_func"] = _guarded_socket_connect
    sock: socket.socket = _original_create_connection(address, *args, **kwargs)
    return sock


ytdlp_urllib.create_connection = _guarded_create_connection


class _RecastYoutubeDL(yt_dlp.YoutubeDL):  # type: ignore[misc]
    """YoutubeDL that checks every URL it opens and remembers the last network failure."""

    def __init__(self, params: dict[str, Any], policy: UrlPolicy):
        global _active_policy
        _active_policy = policy
        self.policy = policy
        self.last_network_error: BaseException | None = None
        super().__init__(params)

    def build_request_director(self, handlers: Any, preferences: Any = None) -> Any:
        # Only the urllib handler: its connections go through the guard above.
        urllib_only = [h for h in handlers if getattr(h, "RH_KEY", "") == "Urllib"]
        return super().build_request_director(urllib_only, preferences)

    def urlopen(self, req: Any) -> Any:
        url = req if isinstance(req, str) else req.url
        self.policy.check_url(url)
        try:
            return super().urlopen(req)
        except Exception as exc:
            self.last_network_error = exc
            raise


# -- classification ----------------------------------------------------------------------------


def _causes(exc: BaseException | None) -> Iterator[BaseException]:
    seen: set[int] = set()
    stack = [exc]
    while stack:
        current = stack.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        exc_info = getattr(current, "exc_info", None)
        if isinstance(exc_info, tuple) and len(exc_info) > 1:
            stack.append(exc_info[1])
        cause = getattr(current, "cause", None)
        if isinstance(cause, BaseException):
            stack.append(cause)
        # NoSupportingHandlers keeps the errors of the handlers that tried the request.
        for inner in getattr(current, "unexpected_errors", None) or []:
            if isinstance(inner, BaseException):
                stack.append(inner)
        stack.extend([current.__cause__, current.__context__])


def _from_http_status(status: int, headers: Any, during_download: bool) -> RecastError:
    if status == 429:
        retry_after = None
        value = headers.get("Retry-After") if headers is not None else None
        if value and str(value).isdigit():
            retry_after = float(value)
        return RecastError(
            ErrorCode.NETWORK_RATE_LIMITED,
            "The source site is rate-limiting us (HTTP 429).",
            retry_after=retry_after,
        )
    if status >= 500:
        return RecastError(
            ErrorCode.NETWORK_SERVER_ERROR, f"The source site failed with HTTP {status}."
        )
    if status in (401, 403):
        return RecastError(
            ErrorCode.SOURCE_BLOCKED, f"The source site refused access (HTTP {status})."
        )
    if during_download:
        return RecastError(
            ErrorCode.SOURCE_INCOMPLETE,
            f"Part of the media could not be fetched (HTTP {status}); nothing was kept.",
        )
    return RecastError(
        ErrorCode.SOURCE_UNAVAILABLE, f"The source answered HTTP {status}: not found."
    )


def _classify_one(cause: BaseException, during_download: bool) -> RecastError | None:
    if isinstance(cause, RecastError):
        return cause
    if isinstance(cause, HTTPError):
        return _from_http_status(cause.status, cause.response.headers, during_download)
    if isinstance(cause, IncompleteRead):
        return RecastError(ErrorCode.NETWORK_CONNECTION, "The connection broke mid-transfer.")
    if isinstance(cause, TimeoutError | socket.timeout):
        return RecastError(ErrorCode.NETWORK_TIMEOUT, "The source site did not answer in time.")
    if isinstance(cause, ConnectionError):
        return RecastError(ErrorCode.NETWORK_CONNECTION, f"The connection failed: {cause}.")
    if isinstance(cause, GeoRestrictedError):
        return RecastError(
            ErrorCode.SOURCE_GEO_BLOCKED, "The video is not available in our region."
        )
    if isinstance(cause, UnsupportedError):
        return RecastError(ErrorCode.SOURCE_NO_VIDEO, "No video was found at that URL.")
    return None


def classify(
    exc: BaseException, ydl: _RecastYoutubeDL | None = None, *, during_download: bool = False
) -> RecastError:
    """The taxonomy's verdict on a yt-dlp failure, decided by its cause chain."""
    causes = list(_causes(exc))
    for cause in causes:
        verdict = _classify_one(cause, during_download)
        if verdict is not None:
            return verdict
    # yt-dlp reports some failures (a missing fragment, say) without a cause attached; the
    # request that failed is the cause then.
    if ydl is not None and ydl.last_network_error is not None:
        for cause in _causes(ydl.last_network_error):
            verdict = _classify_one(cause, during_download)
            if verdict is not None:
                return verdict
    for cause in causes:
        if isinstance(cause, TransportError):
            return RecastError(ErrorCode.NETWORK_CONNECTION, f"The connection failed: {cause}.")
        if isinstance(cause, ExtractorError) and cause.expected:
            return RecastError(
                ErrorCode.SOURCE_UNAVAILABLE, f"The video is unavailable: {cause.orig_msg}"
            )
    if during_download:
        return RecastError(ErrorCode.SOURCE_INCOMPLETE, f"The download failed: {exc}")
    return RecastError(ErrorCode.SOURCE_UNAVAILABLE, f"The source could not be read: {exc}")


# -- yt-dlp options ----------------------------------------------------------------------------


class _QuietLogger:
    def __init__(self, ctx: StageContext | None):
        self.ctx = ctx

    def debug(self, msg: str) -> None:
        pass

    def info(self, msg: str) -> None:
        pass

    def warning(self, msg: str) -> None:
        if self.ctx is not None:
            self.ctx.log.info("yt-dlp: %s", msg)

    def error(self, msg: str) -> None:
        if self.ctx is not None:
            self.ctx.log.info("yt-dlp: %s", msg)


def format_selector(max_height: int) -> str:
    """Best up to ``max_height``, H.264 + AAC first so a stream copy can be played at once."""
    h = f"[height<=?{max_height}]"
    return "/".join(
        [
            f"bv*{h}[vcodec^=avc1]+ba[acodec^=mp4a]",
            f"b{h}[vcodec^=avc1][acodec^=mp4a]",
            f"bv*{h}+ba",
            f"b{h}",
            "bv*+ba",
            "b",
        ]
    )


def ytdlp_options(settings: IngestSettings, ctx: StageContext | None = None) -> dict[str, Any]:
    options: dict[str, Any] = {
        "quiet": True,
        "no_warnings": True,
        "noprogress": True,
        "logger": _QuietLogger(ctx),
        "noplaylist": True,
        "ignoreerrors": False,
        "socket_timeout": settings.socket_timeout_s,
        "retries": settings.http_retries,
        "extractor_retries": settings.http_retries,
        "fragment_retries": settings.fragment_retries,
        "skip_unavailable_fragments": False,
        "abort_on_unavailable_fragments": True,
        "hls_prefer_native": True,
        "format": format_selector(settings.max_height),
        "format_sort": ["vcodec:h264", "acodec:aac"],
        "merge_output_format": "mp4",
        "subtitleslangs": [*settings.caption_languages],
        "subtitlesformat": "vtt/srt/best",
        "cachedir": False,
        "overwrites": True,
        "continuedl": False,
        "check_formats": False,
        "enable_file_urls": False,
    }
    if settings.user_agent:
        options["http_headers"] = {"User-Agent": settings.user_agent}
    return options


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


def expand(source: str, settings: Settings) -> list[str]:
    """The sources a submission stands for: one per playlist entry, or itself."""
    check_source(source, settings)
    if local_path(source) is not None:
        return [source]
    options = ytdlp_options(settings.ingest) | {"extract_flat": "in_playlist", "noplaylist": False}
    with _RecastYoutubeDL(options, url_policy(settings)) as ydl:
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


def _content_length(ydl: _RecastYoutubeDL, info: dict[str, Any]) -> int | None:
    """Size of a single progressive download, asked with HEAD when the extractor did not say."""
    if info.get("requested_formats") or info.get("filesize") or info.get("filesize_approx"):
        return None
    if str(info.get("protocol") or "http").startswith(("m3u8", "http_dash")):
        return None
    url = info.get("url")
    if not isinstance(url, str) or not url.startswith(("http://", "https://")):
        return None
    try:
        with ydl.urlopen(HEADRequest(url, headers=info.get("http_headers") or {})) as response:
            value = response.headers.get("Content-Length")
    except Exception:  # a HEAD refused is not a verdict on the source; the download decides
        return None
    return int(value) if value and str(value).isdigit() else None


class _SizeGuard:
    """A progress hook: aborts a download that grows past the size limit, reports percent."""

    def __init__(self, ctx: StageContext, limit_bytes: float):
        self.ctx = ctx
        self.limit = limit_bytes

    def __call__(self, status: dict[str, Any]) -> None:
        self.ctx.check_cancelled()
        done = status.get("downloaded_bytes") or 0
        total = status.get("total_bytes") or status.get("total_bytes_estimate") or 0
        if max(done, total) > self.limit:
            raise RecastError(
                ErrorCode.LIMIT_FILESIZE,
                f"The download passed the limit of {self.limit / MB:.0f} MB and was stopped.",
            )
        if status.get("status") == "downloading":
            speed = status.get("speed") or 0
            percent = 100.0 * done / total if total else 0.0
            self.ctx.progress(5 + 0.9 * percent, f"{done / MB:.1f} MB at {speed / MB:.1f} MB/s")


def _download_thumbnail(ydl: _RecastYoutubeDL, url: str, out: Path) -> str | None:
    """The source's thumbnail as a JPEG in ``out``; None when it cannot be had."""
    from pipeline.images import to_jpeg

    try:
        with ydl.urlopen(Request(url)) as response:
            data = response.read(20 * MB + 1)
    except RecastError:
        raise
    except Exception:  # a missing thumbnail does not fail the job
        return None
    if len(data) > 20 * MB:
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


def _check_downloaded(path: Path, meta: SourceInfo, settings: IngestSettings) -> float:
    """The file's real duration; refuse a file over the limits or shorter than announced."""
    probe = ffmpeg_tools.probe(path)
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
    options = ytdlp_options(settings.ingest, ctx) | {
        "outtmpl": {"default": str(out / "media.%(ext)s")},
        "writesubtitles": True,
        "writeautomaticsub": True,
        "progress_hooks": [_SizeGuard(ctx, settings.ingest.max_filesize_mb * MB)],
    }
    with _RecastYoutubeDL(options, policy) as ydl:
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
            raise classify(DownloadError("yt-dlp wrote no media file"), ydl, during_download=True)
        _move_captions(info, meta.subtitles, out)
    final = out / f"media{media.suffix}"
    if media != final:
        media.rename(final)
    meta.media_file = final.name
    meta.media_duration = _check_downloaded(final, meta, settings.ingest)
    _publish_preview(ctx, meta)  # again, now with the measured duration
    return meta


def _ingest_file(ctx: StageContext, path: Path) -> SourceInfo:
    probe = ffmpeg_tools.probe(path)
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(MB):
            digest.update(chunk)
    target = ctx.out / f"media{path.suffix.lower() or '.bin'}"
    try:
        os.link(path, target)
    except OSError:
        shutil.copyfile(path, target)
    tags = probe.get("format", {}).get("tags") or {}
    meta = SourceInfo(
        extractor="file",
        source_id=digest.hexdigest()[:16],
        title=str(tags.get("title") or path.stem),
        description=str(tags.get("comment") or tags.get("description") or ""),
        webpage_url=path.resolve().as_uri(),
        media_file=target.name,
        duration=ffmpeg_tools.media_duration(probe),
    )
    meta.media_duration = _check_downloaded(target, meta, ctx.settings.ingest)
    _publish_preview(ctx, meta)
    return meta


def _publish_preview(ctx: StageContext, meta: SourceInfo) -> None:
    """Record the metadata (info.json) and publish the preview card from it."""
    atomic_write_json(ctx.out / INFO_FILE, meta.model_dump(mode="json"))
    if ctx.publisher is not None:
        ctx.publisher.preview(ctx)


def run(ctx: StageContext) -> StageResult:
    check_source(ctx.spec.source, ctx.settings)
    path = local_path(ctx.spec.source)
    meta = _ingest_file(ctx, path) if path is not None else _ingest_url(ctx)
    ctx.progress(100, "downloaded")
    return StageResult.done(
        ctx.out, detail=f"{meta.media_duration or 0:.1f} s of media", card_id=meta.card_id
    )


def load_info(stage_dir: Path) -> SourceInfo:
    """The ingest stage's :class:`SourceInfo` from its directory (or a partial one)."""
    return SourceInfo.model_validate_json((stage_dir / INFO_FILE).read_text(encoding="utf-8"))


STAGE = Stage(name="ingest", queue=Queue.INGEST, run=run, time_limit_factor=2.0)
