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
  read other local files.
- :func:`classify` turns any yt-dlp failure into the error taxonomy by walking its cause chain
  (HTTP status, timeouts, connection errors, extractor verdicts), never by matching messages.
"""

from __future__ import annotations

import logging
import socket
import weakref
from collections.abc import Iterator
from typing import Any

import yt_dlp
from yt_dlp.downloader import DashSegmentsFD, HlsFD, HttpFD, get_suitable_downloader
from yt_dlp.downloader.external import ExternalFD
from yt_dlp.networking import _urllib as ytdlp_urllib
from yt_dlp.networking.common import HEADRequest, Request
from yt_dlp.networking.exceptions import HTTPError, IncompleteRead, TransportError
from yt_dlp.postprocessor import FFmpegPostProcessor
from yt_dlp.utils import ExtractorError, GeoRestrictedError, PostProcessingError, UnsupportedError

from pipeline.core.errors import ErrorCode, RecastError
from pipeline.core.settings import IngestSettings
from pipeline.core.stage import StageContext
from pipeline.core.urlpolicy import UrlPolicy
from pipeline.tools.ffmpeg_tools import SOURCE_INPUT

_tool_log = logging.getLogger("recast.tool.ytdlp")

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


def _postprocessor_input_args() -> dict[str, list[str]]:
    """``postprocessor_args`` putting the restrictions before every ``-i`` of every ffmpeg
    postprocessor: yt-dlp reads input args only from the ``<pp>+ffmpeg_i`` keys."""
    classes: list[type] = []
    pending: list[type] = [FFmpegPostProcessor]
    while pending:
        cls = pending.pop()
        classes.append(cls)
        pending.extend(cls.__subclasses__())
    keys = {f"{cls.pp_key().lower()}+ffmpeg_i" for cls in classes}  # type: ignore[attr-defined]
    return {key: list(RESTRICTED_INPUT_ARGS) for key in sorted(keys)}


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


class RecastYoutubeDL(yt_dlp.YoutubeDL):  # type: ignore[misc]
    """YoutubeDL that checks every URL it opens, downloads only with native downloaders,
    restricts the ffmpeg of its postprocessors, and remembers the last network failure."""

    def __init__(self, params: dict[str, Any], policy: UrlPolicy):
        global _active_policy
        _active_policy = policy
        self.policy = policy
        self.last_network_error: BaseException | None = None
        self._responses: weakref.WeakSet[Any] = weakref.WeakSet()
        super().__init__(params)

    def build_request_director(self, handlers: Any, preferences: Any = None) -> Any:
        # Only the urllib handler: its connections go through the guard above.
        urllib_only = [h for h in handlers if getattr(h, "RH_KEY", "") == "Urllib"]
        return super().build_request_director(urllib_only, preferences)

    def urlopen(self, req: Any) -> Any:
        url = req if isinstance(req, str) else req.url
        self.policy.check_url(url)
        try:
            response = super().urlopen(req)
        except Exception as exc:
            self.last_network_error = exc
            raise
        self._responses.add(response)
        return response

    def dl(
        self, name: str, info: dict[str, Any], subtitle: bool = False, test: bool = False
    ) -> Any:
        # Every download (each format, each caption track) comes here first.
        downloader = get_suitable_downloader(info, self.params, to_stdout=(name == "-"))
        if downloader not in NATIVE_DOWNLOADERS:
            raise _unsupported_protocol(downloader, info)
        try:
            return super().dl(name, info, subtitle=subtitle, test=test)
        except BaseException:
            # A download stopped midway (the size limit, a refused URL) leaves its response
            # open until the traceback is collected: hang up on the server now.
            for response in list(self._responses):
                response.close()
            raise

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
    if isinstance(cause, PostProcessingError):  # ffmpeg refused or failed on what was fetched
        reason = str(cause.msg or "").rsplit(": ", 1)[-1].rstrip(".") or "failed"
        return RecastError(
            ErrorCode.MEDIA_INVALID,
            f"The downloaded media is not a plain media file ffmpeg could process ({reason}).",
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
        "external_downloader": {"default": "native"},  # yt-dlp's own, wherever it can
        "postprocessor_args": _postprocessor_input_args(),
    }
    if settings.user_agent:
        options["http_headers"] = {"User-Agent": settings.user_agent}
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
