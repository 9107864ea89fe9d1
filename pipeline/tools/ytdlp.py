"""The one module that imports yt_dlp: a YoutubeDL that obeys the URL policy, every yt-dlp
option Recast sets, small fetch helpers, and the classification of yt-dlp failures.

- Every socket yt-dlp opens goes through a guard that applies the URL policy to the address
  actually connected to, so redirects and DNS answers pointing at private addresses are refused
  before a request is sent. yt-dlp is limited to its urllib handler, whose connections the guard
  wraps.
- Media is fetched only by yt-dlp's own downloaders (:data:`NATIVE_DOWNLOADERS`), under that
  guard: a download yt-dlp would hand to ffmpeg or another external program (SAMPLE-AES or live
  HLS, RTMP, ``external_downloader``), which would open URLs outside the guard, is refused with
  ``source.unsupported_protocol``.
- The ffmpeg and ffprobe runs of yt-dlp's postprocessors (merging video and audio, fixups) read
  the downloaded files, whose bytes the source controls, with only the ``file`` protocol and
  media demuxers allowed, so a "video" that is really a playlist cannot make them fetch URLs or
  read other local files. Captions are made WebVTT (:class:`CaptionsToVttPP`) by yt-dlp's
  converter, whose ffmpeg reads only text subtitle demuxers (:data:`SUBTITLE_INPUT_ARGS`).
- Per-site access (``sources.sites``, :class:`SourceAccess`): the source host's entry gives the
  job its proxy, cookies (only read, never written back), User-Agent and rate cap; a request to
  a host with an entry of its own takes that entry's, and paced hosts are paced. A configured
  proxy's address is trusted by the guard; what goes through it is judged by URL (every
  request and every redirect).
- :func:`classify` turns any yt-dlp failure into the error taxonomy by walking its cause chain
  (HTTP status, timeouts, connection errors, extractor verdicts), not by matching messages;
  the one exception is a refusal page yt-dlp reports only as text (a bot check:
  :func:`_refusal_page`). Refusals (401/403, bot checks, 429) are
  :class:`~pipeline.core.hostgate.Refusal`, which the host gate counts.
"""

from __future__ import annotations

import email.utils
import html
import io
import json
import logging
import os
import random
import shutil
import socket
import sys
import sysconfig
import threading
import time
import weakref
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit
from xml.etree import ElementTree

import yt_dlp
from yt_dlp.cookies import YoutubeDLCookieJar
from yt_dlp.downloader import DashSegmentsFD, HlsFD, HttpFD, get_suitable_downloader
from yt_dlp.downloader.external import ExternalFD
from yt_dlp.networking import _urllib as ytdlp_urllib
from yt_dlp.networking.common import HEADRequest, Request
from yt_dlp.networking.exceptions import HTTPError, IncompleteRead, TransportError
from yt_dlp.postprocessor import FFmpegPostProcessor, FFmpegSubtitlesConvertorPP
from yt_dlp.utils import (
    ExtractorError,
    GeoRestrictedError,
    PostProcessingError,
    UnsupportedError,
    replace_extension,
)
from yt_dlp.utils.networking import HTTPHeaderDict

from pipeline.core.errors import ErrorCode, RecastError
from pipeline.core.hostgate import Refusal
from pipeline.core.settings import IngestSettings, SiteAccess, SourcesSettings
from pipeline.core.stage import StageContext
from pipeline.core.urlpolicy import UrlPolicy
from pipeline.tools.ffmpeg_tools import SOURCE_INPUT, SUBTITLE_INPUT

_tool_log = logging.getLogger("recast.tool.ytdlp")

# -- connection guard --------------------------------------------------------------------------
# yt-dlp's urllib handler opens every socket through this module-level function; wrapping it
# lets the URL policy see the address actually connected to, after redirects and DNS.
_original_create_connection = ytdlp_urllib.create_connection
_original_redirect_request = ytdlp_urllib.RedirectHandler.redirect_request
_active_policy: UrlPolicy = UrlPolicy()
_trusted_proxies: frozenset[tuple[str, int]] = frozenset()
"""(address, port) of every proxy the operator configured (``sources.sites[].proxy``): the
guard lets a connection to exactly these through, private or not. What is fetched through a
proxy is judged by its URL instead: :meth:`RecastYoutubeDL.urlopen` and every redirect."""


def _check_connection(sockaddr: Any) -> None:
    address = str(sockaddr[0])
    if (address, int(sockaddr[1])) in _trusted_proxies:
        return
    _active_policy.check_address(address, address)


def _guarded_socket_connect(ip_addr: Any, timeout: Any, source_address: Any) -> socket.socket:
    family, _type, _proto, _name, sockaddr = ip_addr
    _check_connection(sockaddr)
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
    socks_connect = kwargs.get("_create_socket_func")
    if socks_connect is None:
        kwargs["_create_socket_func"] = _guarded_socket_connect
    else:  # a SOCKS proxy: yt-dlp's function connects to the proxy and asks it for the target

        def guarded_socks_connect(ip_addr: Any, timeout: Any, source_address: Any) -> Any:
            _check_connection(ip_addr[4])
            return socks_connect(ip_addr, timeout, source_address)

        kwargs["_create_socket_func"] = guarded_socks_connect
    sock: socket.socket = _original_create_connection(address, *args, **kwargs)
    return sock


def _checked_redirect_request(
    handler: Any, req: Any, fp: Any, code: int, msg: str, headers: Any, newurl: str
) -> Any:
    # Through a proxy the guard sees only the proxy's address: a redirect's target is judged by
    # its URL, as RecastYoutubeDL.urlopen judges the first request's.
    redirected = _original_redirect_request(handler, req, fp, code, msg, headers, newurl)
    _active_policy.check_url(newurl)
    return redirected


ytdlp_urllib.create_connection = _guarded_create_connection
ytdlp_urllib.RedirectHandler.redirect_request = _checked_redirect_request

# -- downloaders -------------------------------------------------------------------------------
# yt-dlp's own downloaders fetch through YoutubeDL.urlopen, so through the guard. ffmpeg, curl,
# aria2c, rtmpdump... open their own connections (and ffmpeg follows a playlist's key and
# segment URLs itself), so they never run.
NATIVE_DOWNLOADERS: tuple[type, ...] = (HttpFD, HlsFD, DashSegmentsFD)


def _unsupported_protocol(downloader: Any, info: dict[str, Any]) -> RecastError:
    name = downloader.FD_NAME if downloader is not None else "no downloader"
    return RecastError(
        ErrorCode.SOURCE_UNSUPPORTED_PROTOCOL,
        f"The media (protocol {info.get('protocol') or 'unknown'}) could only be fetched by "
        f"{name}, and Recast fetches media only with yt-dlp's own downloaders.",
    )


def _refuse_external_download(fd: Any, filename: str, info: dict[str, Any]) -> Any:
    # Native downloaders delegate too: HlsFD hands SAMPLE-AES, DRM and live playlists to
    # FFmpegFD itself, after the downloader was chosen. Every external program comes here.
    raise _unsupported_protocol(type(fd), info)


ExternalFD.real_download = _refuse_external_download

# -- ffmpeg run by postprocessors ----------------------------------------------------------------
RESTRICTED_INPUT_ARGS = tuple(SOURCE_INPUT.args())
"""What yt-dlp's own ffmpeg and ffprobe runs on downloaded files may open: the source policy of
:mod:`pipeline.tools.ffmpeg_tools` (the one local file, plain containers, a frame size cap)."""
SUBTITLE_INPUT_ARGS = tuple(SUBTITLE_INPUT.args())
"""What the ffmpeg of yt-dlp's subtitle converter may open: the one caption file, read as SRT,
WebVTT or ASS (never a playlist or a concat script)."""


def _postprocessor_input_args() -> dict[str, list[str]]:
    """``postprocessor_args`` putting the restrictions before every ``-i`` of every ffmpeg
    postprocessor: yt-dlp reads input args only from the ``<pp>+ffmpeg_i`` keys."""
    classes: list[type] = []
    pending: list[type] = [FFmpegPostProcessor]
    while pending:
        cls = pending.pop()
        classes.append(cls)
        pending.extend(cls.__subclasses__())
    args: dict[str, list[str]] = {}
    for cls in classes:
        key = f"{cls.pp_key().lower()}+ffmpeg_i"  # type: ignore[attr-defined]
        if issubclass(cls, FFmpegSubtitlesConvertorPP):
            args[key] = list(SUBTITLE_INPUT_ARGS)
        else:
            args[key] = list(RESTRICTED_INPUT_ARGS)
    return dict(sorted(args.items()))


def _restrict_probes(pp: Any) -> None:
    """Give a postprocessor's ffprobe runs the same restrictions: yt-dlp passes them no
    ``postprocessor_args``. ``get_audio_codec`` is rebuilt on the restricted metadata call."""
    unrestricted = type(pp).get_metadata_object

    def metadata(path: str, opts: list[str] | None = None) -> Any:
        try:
            return unrestricted(pp, path, [*RESTRICTED_INPUT_ARGS, *(opts or [])])
        except ValueError as exc:  # no JSON: ffprobe refused or failed; callers expect this
            raise PostProcessingError(f"ffprobe could not read {path}") from exc

    def audio_codec(path: str) -> str | None:
        try:
            streams = metadata(path).get("streams") or []
        except PostProcessingError:
            return None
        codecs = [s.get("codec_name") for s in streams if s.get("codec_type") == "audio"]
        return str(codecs[0]) if codecs and codecs[0] else None

    pp.get_metadata_object = metadata
    pp.get_audio_codec = audio_codec


# -- per-site access ---------------------------------------------------------------------------
_NETSCAPE_HEADER = "# Netscape HTTP Cookie File\n"
_pace_lock = threading.Lock()
_last_paced_request: dict[tuple[str, ...], float] = {}


def _cookie_line_usable(line: str) -> bool:
    """Whether yt-dlp's Netscape parser takes ``line``: it prints a line it skips to stderr,
    cookie value and all, so such lines are dropped before it sees them."""
    if line.startswith("#HttpOnly_"):
        line = line[len("#HttpOnly_") :]
    elif line.startswith("#") or not line.strip():
        return True
    fields = line.split("\t")
    if len(fields) != 7:
        return False
    expires = fields[4]
    return not expires or expires.replace(".", "", 1).isdigit()


def load_cookies(path: str, jar: YoutubeDLCookieJar | None = None) -> YoutubeDLCookieJar:
    """The cookies of a Netscape-format file, in ``jar`` (or a new jar). The file is only read:
    yt-dlp writes its jar back only to its ``cookiefile`` option, which Recast never sets, so
    a cookies file shared by many workers is never rewritten. Nothing of it is logged."""
    jar = jar if jar is not None else YoutubeDLCookieJar()
    try:
        text = Path(path).read_text("utf-8", errors="replace")
    except OSError as exc:
        raise RecastError(
            ErrorCode.CONFIG_INVALID, f"The cookies file {path} cannot be read ({exc.strerror})."
        ) from exc
    lines = text.splitlines(keepends=True)
    usable = [line for line in lines if _cookie_line_usable(line)]
    if len(usable) < len(lines):
        _tool_log.warning(
            "cookies file %s: %d lines that are not Netscape-format cookies were skipped",
            path,
            len(lines) - len(usable),
        )
    try:
        jar.load(io.StringIO(_NETSCAPE_HEADER + "".join(usable)))
    except (OSError, ValueError):  # http.cookiejar.LoadError is an OSError
        # Not chained: the parser's message quotes the line, cookie value and all.
        raise RecastError(
            ErrorCode.CONFIG_INVALID, f"The cookies file {path} could not be read as cookies."
        ) from None
    return jar


def proxy_addresses(sources: SourcesSettings) -> frozenset[tuple[str, int]]:
    """(address, port) of every proxy the sites name, as DNS answers them now (a proxy whose
    name does not resolve is left out: connecting to it fails anyway)."""
    found: set[tuple[str, int]] = set()
    for site in sources.sites:
        if not site.proxy:
            continue
        parts = urlsplit(site.proxy)
        if not parts.hostname:
            continue
        port = parts.port or (1080 if parts.scheme.lower().startswith("socks") else 80)
        try:
            answers = socket.getaddrinfo(parts.hostname, port, 0, socket.SOCK_STREAM)
        except (OSError, UnicodeError):
            continue
        found.update((str(sockaddr[0]), int(sockaddr[1])) for *_, sockaddr in answers)
    return frozenset(found)


def pace(site: SiteAccess) -> float:
    """Wait, before a request to ``site``'s hosts, a random ``pace_min_s``..``pace_max_s`` after
    the previous request to them in this process began (none before the first); the waits of
    concurrent requests queue up. Returns the time waited."""
    key = tuple(site.hosts)
    with _pace_lock:
        now = time.monotonic()
        previous = _last_paced_request.get(key)
        start = now
        if previous is not None:
            start = max(now, previous + random.uniform(site.pace_min_s, site.pace_max_s))
        _last_paced_request[key] = start
    if start > now:
        time.sleep(start - now)
    return start - now


@dataclass(frozen=True)
class SourceAccess:
    """The per-site access settings (``sources.sites``) one job's yt-dlp works with.

    yt-dlp's options hold for a whole YoutubeDL, so the entry of the source URL's host
    (:attr:`job_site`) sets the job's proxy, cookies, User-Agent and download rate cap. A
    request to a host that has an entry of its own (a media CDN listed separately) takes that
    entry's proxy, cookies, User-Agent and rate cap where they are set; pacing applies to the
    hosts an entry lists, and to no other.
    """

    sources: SourcesSettings
    job_site: SiteAccess

    @classmethod
    def for_source(cls, sources: SourcesSettings, url: str) -> SourceAccess:
        return cls(sources, sources.site_for_url(url))

    def own_site(self, url: str) -> SiteAccess | None:
        """The entry listing ``url``'s host, or None."""
        site = self.sources.site_for_url(url)
        return site if site.hosts else None

    def overriding_site(self, url: str) -> SiteAccess | None:
        """The entry of ``url``'s host when it is another than the job's, else None."""
        site = self.own_site(url)
        return site if site is not None and site is not self.job_site else None


# -- captions ----------------------------------------------------------------------------------


YOUTUBE_TIMED_TEXT = frozenset({"json3", "srv1", "srv2", "srv3"})
"""YouTube's own caption formats: yt-dlp's converter reads none of them (it would hand them
to ffmpeg, which cannot either), so :func:`timed_text_to_srt` makes SRT of them first."""


def _srt_time(seconds: float) -> str:
    millis = round(max(0.0, seconds) * 1000)
    hours, rest = divmod(millis, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    return f"{hours:02d}:{minutes:02d}:{rest // 1000:02d},{rest % 1000:03d}"


def _json3_cues(data: bytes) -> Iterator[tuple[float, float, str]]:
    for event in json.loads(data).get("events") or []:
        text = "".join(str(seg.get("utf8") or "") for seg in event.get("segs") or [])
        start = float(event.get("tStartMs") or 0) / 1000
        yield start, start + float(event.get("dDurationMs") or 0) / 1000, text


def _srv_cues(data: bytes, ext: str) -> Iterator[tuple[float, float, str]]:
    # srv1: <text start="1.5" dur="2"> in seconds, text escaped twice; srv2: <text t= d=>,
    # srv3: <p t= d=>, in milliseconds.
    if b"<!DOCTYPE" in data.upper():
        raise ValueError(f"a {ext} file declaring a DTD")  # so it declares no entity either
    tag, scale = {"srv1": ("text", 1.0), "srv2": ("text", 1000.0), "srv3": ("p", 1000.0)}[ext]
    start_key, length_key = ("start", "dur") if ext == "srv1" else ("t", "d")
    root = ElementTree.fromstring(data)  # noqa: S314 - no DTD, so no entity to expand
    for element in root.iter(tag):
        text = "".join(element.itertext())
        if ext == "srv1":
            text = html.unescape(text)
        start = float(element.get(start_key) or 0) / scale
        yield start, start + float(element.get(length_key) or 0) / scale, text


def timed_text_to_srt(data: bytes, ext: str) -> str:
    """SRT of a caption file in one of :data:`YOUTUBE_TIMED_TEXT`; ValueError when it has no
    cue with text (or is not what ``ext`` says)."""
    cues = _json3_cues(data) if ext == "json3" else _srv_cues(data, ext)
    blocks: list[str] = []
    for start, end, text in cues:
        lines = [line.strip() for line in text.replace("-->", "->").splitlines()]
        if any(lines) and end > start:
            timing = f"{_srt_time(start)} --> {_srt_time(end)}"
            blocks.append(f"{len(blocks) + 1}\n{timing}\n" + "\n".join(filter(None, lines)))
    if not blocks:
        raise ValueError(f"no {ext} caption with text in it")
    return "\n\n".join(blocks) + "\n"


class CaptionsToVttPP(FFmpegSubtitlesConvertorPP):  # type: ignore[misc]
    """yt-dlp's subtitle converter to WebVTT, track by track: TTML/DFXP become SRT in Python
    (yt-dlp's dfxp2srt), so do YouTube's json3/srv1-3 (:func:`timed_text_to_srt`), then ffmpeg
    (reading under :data:`SUBTITLE_INPUT`) makes WebVTT of SRT or ASS. A track that cannot be
    converted (a file that is not what it claims) is left out with a warning instead of
    failing the download."""

    def __init__(self, downloader: Any = None):
        super().__init__(downloader, format="vtt")

    def run(self, info: dict[str, Any]) -> tuple[list[str], dict[str, Any]]:
        tracks: dict[str, Any] = info.get("requested_subtitles") or {}
        done: list[str] = []
        for lang, offered in list(tracks.items()):
            try:
                track = self._timed_text_as_srt(info, offered, done)
                one = {**info, "requested_subtitles": {lang: track}}
                converted, one = super().run(one)
            except Exception as exc:  # ffmpeg's PostProcessingError, a parser's ValueError
                self.report_warning(
                    f"The {lang} captions ({offered.get('ext')}) could not be made WebVTT "
                    f"({_short_reason(exc)}); they are left out."
                )
                self._drop(info, offered)
                del tracks[lang]
                continue
            tracks[lang] = one["requested_subtitles"][lang]
            done.extend(converted)
        return done, info

    @staticmethod
    def _timed_text_as_srt(
        info: dict[str, Any], track: dict[str, Any], done: list[str]
    ) -> dict[str, Any]:
        ext, original = track.get("ext"), track.get("filepath")
        if ext not in YOUTUBE_TIMED_TEXT or not original or not os.path.isfile(original):
            return track
        srt = replace_extension(original, "srt")
        with open(original, "rb") as source:
            text = timed_text_to_srt(source.read(), str(ext))
        with open(srt, "w", encoding="utf-8") as target:
            target.write(text)
        moves = info["__files_to_move"]
        moves[srt] = replace_extension(moves.get(original) or original, "srt")
        done.append(original)
        return {**track, "ext": "srt", "filepath": srt, "data": text}

    @staticmethod
    def _drop(info: dict[str, Any], track: dict[str, Any]) -> None:
        moves = info.get("__files_to_move") or {}
        original = track.get("filepath")
        if not original:
            return
        made = {replace_extension(original, "srt"), replace_extension(original, "vtt")}
        for path in {original, *made}:
            moves.pop(path, None)
            if os.path.isfile(path):
                os.remove(path)


def _short_reason(exc: BaseException) -> str:
    text = str(getattr(exc, "msg", None) or exc).strip().splitlines()
    return (text[-1] if text else type(exc).__name__)[:200]


class RecastYoutubeDL(yt_dlp.YoutubeDL):  # type: ignore[misc]
    """YoutubeDL that checks every URL it opens, downloads only with native downloaders,
    restricts the ffmpeg of its postprocessors, and remembers the last network failure.

    Given a :class:`SourceAccess`, it loads the job's cookies (read only), trusts the configured
    proxies' addresses, and adjusts each request to the entry of its host (User-Agent, proxy,
    cookies, pacing) and each download (rate cap). Captions it writes are made WebVTT
    (:class:`CaptionsToVttPP`) before the media is downloaded."""

    def __init__(
        self, params: dict[str, Any], policy: UrlPolicy, access: SourceAccess | None = None
    ):
        global _active_policy, _trusted_proxies
        _active_policy = policy
        _trusted_proxies = proxy_addresses(access.sources) if access is not None else frozenset()
        self.policy = policy
        self.access = access
        self.last_network_error: BaseException | None = None
        self._responses: weakref.WeakSet[Any] = weakref.WeakSet()
        self._site_cookies: dict[tuple[str, ...], YoutubeDLCookieJar] = {}
        super().__init__(params)
        if access is not None and access.job_site.cookies_file:
            load_cookies(access.job_site.cookies_file, self.cookiejar)
        if params.get("writesubtitles") or params.get("writeautomaticsub"):
            self.add_post_processor(CaptionsToVttPP(self), when="before_dl")

    def build_request_director(self, handlers: Any, preferences: Any = None) -> Any:
        # Only the urllib handler: its connections go through the guard above.
        urllib_only = [h for h in handlers if getattr(h, "RH_KEY", "") == "Urllib"]
        return super().build_request_director(urllib_only, preferences)

    def urlopen(self, req: Any) -> Any:
        if isinstance(req, str):
            req = Request(req)
        self.policy.check_url(req.url)
        if self.access is not None:
            self._apply_site(req, self.access)
        try:
            response = super().urlopen(req)
        except Exception as exc:
            self.last_network_error = exc
            raise
        self._responses.add(response)
        return response

    def _apply_site(self, req: Request, access: SourceAccess) -> None:
        site = access.own_site(req.url)
        if site is None:
            return
        if site is not access.job_site:
            # New mappings, never changed in place: yt-dlp hands a format's own headers
            # (shared with its other requests) to the request.
            if site.user_agent:
                req.headers = HTTPHeaderDict(req.headers, {"User-Agent": site.user_agent})
            if site.proxy:
                req.proxies = {"all": site.proxy}
            if site.cookies_file:
                req.extensions = {**req.extensions, "cookiejar": self._cookies_of(site)}
        if site.paced:
            pace(site)

    def _cookies_of(self, site: SiteAccess) -> YoutubeDLCookieJar:
        key = tuple(site.hosts)
        if key not in self._site_cookies:
            self._site_cookies[key] = load_cookies(site.cookies_file)
        return self._site_cookies[key]

    def dl(
        self, name: str, info: dict[str, Any], subtitle: bool = False, test: bool = False
    ) -> Any:
        # Every download (each format, each caption track) comes here first.
        downloader = get_suitable_downloader(info, self.params, to_stdout=(name == "-"))
        if downloader not in NATIVE_DOWNLOADERS:
            raise _unsupported_protocol(downloader, info)
        job_rate = self.params.get("ratelimit")
        url = info.get("url")
        site = self.access.overriding_site(url) if self.access and isinstance(url, str) else None
        if site is not None and site.rate_limit_bytes:
            self.params["ratelimit"] = site.rate_limit_bytes  # read by the downloader it makes
        try:
            return super().dl(name, info, subtitle=subtitle, test=test)
        except BaseException:
            # A download stopped midway (the size limit, a refused URL) leaves its response
            # open until the traceback is collected: hang up on the server now.
            for response in list(self._responses):
                response.close()
            raise
        finally:
            self.params["ratelimit"] = job_rate

    def run_pp(self, pp: Any, infodict: dict[str, Any]) -> Any:
        if isinstance(pp, FFmpegPostProcessor):
            _restrict_probes(pp)
        return super().run_pp(pp, infodict)


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


def _retry_after(value: Any) -> float | None:
    """Seconds a Retry-After header asks for: a number of seconds or an HTTP date."""
    text = str(value or "").strip()
    if text.isdigit():
        return float(text)
    try:
        moment = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if moment.tzinfo is None:
        return None
    return max(0.0, moment.timestamp() - time.time())


def _from_http_status(status: int, headers: Any, during_download: bool) -> RecastError:
    if status == 429:
        return Refusal(
            ErrorCode.NETWORK_RATE_LIMITED,
            "The source site is rate-limiting us (HTTP 429).",
            cause="HTTP 429",
            retry_after=_retry_after(headers.get("Retry-After") if headers is not None else None),
        )
    if status >= 500:
        return RecastError(
            ErrorCode.NETWORK_SERVER_ERROR, f"The source site failed with HTTP {status}."
        )
    if status in (401, 403):
        return Refusal(
            ErrorCode.SOURCE_BLOCKED,
            f"The source site refused access (HTTP {status}).",
            cause=f"HTTP {status}",
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
    if isinstance(cause, PostProcessingError):  # ffmpeg refused or failed on what was fetched
        reason = str(cause.msg or "").rsplit(": ", 1)[-1].rstrip(".") or "failed"
        return RecastError(
            ErrorCode.MEDIA_INVALID,
            f"The downloaded media is not a plain media file ffmpeg could process ({reason}).",
        )
    return None


BOT_CHECK_PHRASES = ("not a bot", "captcha")
RATE_LIMIT_PHRASES = ("has been rate-limited",)


def _refusal_page(cause: BaseException) -> Refusal | None:
    """A site that answered 200 with a refusal page (YouTube's "Sign in to confirm you're not a
    bot", a captcha, "rate-limited by YouTube"), which yt-dlp reports as a plain expected
    ExtractorError: no type, status or attribute tells it from a deleted video, so its text is
    the only sign. The one place Recast reads meaning out of a message."""
    if not isinstance(cause, ExtractorError) or not cause.expected:
        return None
    text = cause.orig_msg.lower().replace("\u2019", "'")
    if any(phrase in text for phrase in BOT_CHECK_PHRASES):
        return Refusal(
            ErrorCode.SOURCE_BLOCKED,
            "The source site wants proof we are not a bot (a sign-in or captcha page).",
            cause="bot check",
        )
    if any(phrase in text for phrase in RATE_LIMIT_PHRASES):
        return Refusal(
            ErrorCode.NETWORK_RATE_LIMITED,
            "The source site has rate-limited this session.",
            cause="rate limit",
        )
    return None


def classify(
    exc: BaseException, ydl: RecastYoutubeDL | None = None, *, during_download: bool = False
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
        refusal = _refusal_page(cause)
        if refusal is not None:
            return refusal
        if isinstance(cause, ExtractorError) and cause.expected:
            return RecastError(
                ErrorCode.SOURCE_UNAVAILABLE, f"The video is unavailable: {cause.orig_msg}"
            )
    if during_download:
        return RecastError(ErrorCode.SOURCE_INCOMPLETE, f"The download failed: {exc}")
    return RecastError(ErrorCode.SOURCE_UNAVAILABLE, f"The source could not be read: {exc}")


# -- yt-dlp options ----------------------------------------------------------------------------


class _QuietLogger:
    """yt-dlp's messages: its chatter goes to ``recast.tool.ytdlp`` at DEBUG (the job's log
    keeps it, pipeline.ops.joblog), warnings and errors to the stage's log."""

    def __init__(self, ctx: StageContext | None):
        self.ctx = ctx

    def debug(self, msg: str) -> None:
        if self.ctx is not None:
            _tool_log.debug("%s", msg, extra={"job_id": self.ctx.job_id, "stage": self.ctx.stage})

    def info(self, msg: str) -> None:
        self.debug(msg)

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


def js_runtime() -> tuple[str, str] | None:
    """The JavaScript runtime yt-dlp solves YouTube's challenges with, as (name, executable):
    deno from the ``deno`` package beside this Python (the venv's or the image's scripts
    directory, where yt-dlp's own search looks first), else on PATH; None without one."""
    for directory in (sysconfig.get_path("scripts"), os.path.dirname(sys.executable)):
        candidate = os.path.join(directory, "deno")
        if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return "deno", candidate
    found = shutil.which("deno")
    return ("deno", found) if found else None


CAPTION_FORMATS = "vtt/srt/ttml/dfxp/tt/ass/best"
"""Caption formats asked for, best first: WebVTT, else one :class:`CaptionsToVttPP` converts."""


def ytdlp_options(
    settings: IngestSettings, ctx: StageContext | None = None, site: SiteAccess | None = None
) -> dict[str, Any]:
    """Every option Recast gives yt-dlp; ``site``: the entry of the source's host (its proxy,
    User-Agent and rate cap hold for the whole job; see :class:`SourceAccess`)."""
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
        "format": format_selector(settings.max_height),
        "format_sort": ["vcodec:h264", "acodec:aac"],
        "merge_output_format": "mp4",
        "subtitleslangs": [*settings.caption_languages],
        "subtitlesformat": CAPTION_FORMATS,
        "cachedir": False,
        "overwrites": True,
        "continuedl": False,
        "check_formats": False,
        "enable_file_urls": False,
        "external_downloader": {"default": "native"},  # yt-dlp's own, wherever it can
        "postprocessor_args": _postprocessor_input_args(),
    }
    runtime = js_runtime()
    if runtime is not None:
        options["js_runtimes"] = {runtime[0]: {"path": runtime[1]}}
    user_agent = (site.user_agent if site is not None else "") or settings.user_agent
    if user_agent:
        options["http_headers"] = {"User-Agent": user_agent}
    if site is not None and site.proxy:
        options["proxy"] = site.proxy
    if site is not None and site.rate_limit_bytes:
        options["ratelimit"] = site.rate_limit_bytes
    return options


def head_content_length(ydl: RecastYoutubeDL, url: str, headers: dict[str, str]) -> int | None:
    """The Content-Length a HEAD request reports, or None when the server does not say."""
    try:
        with ydl.urlopen(HEADRequest(url, headers=headers)) as response:
            value = response.headers.get("Content-Length")
    except RecastError:
        raise
    except Exception:  # a refused HEAD is not a verdict on the source; the download decides
        return None
    return int(value) if value and str(value).isdigit() else None


def fetch_bytes(ydl: RecastYoutubeDL, url: str, limit: int) -> bytes | None:
    """At most ``limit`` bytes of ``url`` (None when it fails or is bigger)."""
    try:
        with ydl.urlopen(Request(url)) as response:
            data: bytes = response.read(limit + 1)
    except RecastError:
        raise
    except Exception:  # callers treat a missing extra (a thumbnail) as absent, not fatal
        return None
    return data if len(data) <= limit else None
