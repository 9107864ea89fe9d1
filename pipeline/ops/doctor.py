"""``recast doctor``: is this machine ready to run Recast? One check per piece it needs.

Each check is a small function returning a :class:`Check`: a name, a :class:`Status` (ok,
warn, fail) and one line saying what was found and, when something is wrong, what to do.
:func:`run_checks` runs them all (a check that crashes is a failure of its own, never the end
of the others); the command is ``pipeline.cli.doctor``.

What is checked:

- ffmpeg and ffprobe run, and ffmpeg has the encoders, muxers and filters the stages use
  (:data:`REQUIRED_ENCODERS`, :data:`REQUIRED_MUXERS`, :data:`REQUIRED_FILTERS`);
- yt-dlp has a JavaScript runtime (some sites, YouTube first, need one to hand out media);
- hls.js, the watch page's player, is installed (``npm ci``) or ``publish.hls_js`` exists;
- the speech model: installed and matching its recorded sizes (``deep``: checksums and a
  load too); without faster-whisper (an API-only install) a warning, unless
  ``transcript.engine`` is ``asr``;
- the output (a directory, or an S3 bucket: HeadBucket) and the workspace: writable (a
  file is created and deleted), and free space against ``ops.min_free_disk_gb`` and
  ``ops.min_free_disk_ratio`` (a warning: nothing is broken yet);
- Redis and the broker (``cluster.redis_url``, ``broker_url``, ``result_backend``) answer
  within a second, and an S3 ``cluster.workspace_store`` is reachable. Only workers and the
  API need them (the local executor does not), so an unreachable one is a warning unless
  ``cluster`` is asked for, as on a worker or API host.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import shutil
import socket
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from enum import StrEnum
from pathlib import Path
from urllib.parse import urlsplit

from pipeline.core.errors import ConfigError
from pipeline.core.redact import public_text, public_url
from pipeline.core.settings import CONFIG_FILE_ENV, DEFAULT_CONFIG_FILE, Settings, load_settings
from pipeline.ops.opsview import disk_low, local_disk
from pipeline.publish.static import HLS_JS_IN_NODE_MODULES, PROJECT_ROOT, find_hls_js
from pipeline.tools import ffmpeg_tools, ytdlp

log = logging.getLogger("recast.doctor")

NETWORK_TIMEOUT_S = 1.0
"""How long Redis, the broker and S3 get to answer."""

REQUIRED_ENCODERS: dict[str, str] = {
    "libx264": "H.264: the HLS ladder, MP4 and preview clip",
    "aac": "AAC: the ladder's audio",
    "libwebp_anim": "the animated preview.webp",
    "mjpeg": "storyboard tiles",
    "png": "poster candidates and the waveform",
    "pcm_s16le": "audio for speech recognition",
    "webvtt": "source captions converted to WebVTT",
}
"""Every encoder the stages (and yt-dlp's caption converter) ask ffmpeg for, and what for."""

REQUIRED_MUXERS: dict[str, str] = {
    "hls": "HLS renditions",
    "mp4": "the MP4 and preview clip",
    "ipod": "audio.m4a",
    "webp": "preview.webp",
    "image2": "poster candidates and storyboard tiles",
    "wav": "audio for speech recognition",
    "null": "loudness measurement",
    "webvtt": "source captions converted to WebVTT",
}
"""Every muxer the stages write through."""

REQUIRED_FILTERS: dict[str, str] = {
    "scale": "renditions and thumbnails",
    "setsar": "renditions and thumbnails",
    "fps": "constant frame rate",
    "format": "8-bit 4:2:0",
    "select": "poster candidates",
    "yadif": "deinterlacing",
    "zscale": "HDR tone mapping",
    "tonemap": "HDR tone mapping",
    "aformat": "audio channel layouts",
    "aresample": "audio sample rate",
    "ebur128": "loudness measurement",
    "loudnorm": "loudness normalisation",
    "showwavespic": "the waveform of audio-only sources",
    "crop": "the 9:16 social cut",
    "ass": "captions burned into the social cut (libass)",
}
"""Every filter the stages' graphs use."""


class Status(StrEnum):
    OK = "ok"
    WARN = "warn"
    FAIL = "fail"


@dataclass(frozen=True)
class Check:
    name: str
    status: Status
    detail: str
    """One line: what was found, and what to do when it is not ok."""

    def line(self) -> str:
        label = "FAIL" if self.status is Status.FAIL else str(self.status)
        return f"{label:<4} {self.name}: {self.detail}"


@dataclass(frozen=True)
class Report:
    checks: list[Check]

    @property
    def ok(self) -> bool:
        """No check failed (warnings allowed)."""
        return all(check.status is not Status.FAIL for check in self.checks)

    def text(self) -> str:
        return "".join(check.line() + "\n" for check in self.checks)

    def json(self) -> str:
        checks = [asdict(check) for check in self.checks]
        return json.dumps({"ok": self.ok, "checks": checks}, ensure_ascii=False, indent=2) + "\n"


# -- settings --------------------------------------------------------------------------------


def load_checked_settings(config_file: str | None) -> tuple[Check, Settings | None]:
    """The settings, and a check saying where they came from or why they are refused."""
    source = config_file or os.environ.get(CONFIG_FILE_ENV) or str(DEFAULT_CONFIG_FILE)
    try:
        settings = load_settings(config_file)
    except ConfigError as error:
        return Check("settings", Status.FAIL, f"{source}: {error.message}"), None
    return Check("settings", Status.OK, f"{source} and RECAST_* variables"), settings


# -- ffmpeg ----------------------------------------------------------------------------------


def _where(binary: str) -> str:
    return shutil.which(binary) or binary


def check_ffmpeg() -> Check:
    """ffmpeg runs, and has every encoder, muxer and filter the stages use."""
    binary = ffmpeg_tools.FFMPEG
    try:
        version = ffmpeg_tools.tool_version(binary)
        found = {
            kind: ffmpeg_tools.available_components(kind)
            for kind in ("encoders", "muxers", "filters")
        }
    except OSError as error:
        return Check(
            "ffmpeg",
            Status.FAIL,
            f"cannot run {binary!r} ({error.strerror or error}) — install ffmpeg "
            "(scripts/setup, or apt-get install ffmpeg) or set RECAST_FFMPEG_BINARY",
        )
    missing = [
        f"{kind[:-1]} {name} ({purpose})"
        for kind, wanted in (
            ("encoders", REQUIRED_ENCODERS),
            ("muxers", REQUIRED_MUXERS),
            ("filters", REQUIRED_FILTERS),
        )
        for name, purpose in wanted.items()
        if name not in found[kind]
    ]
    if missing:
        return Check(
            "ffmpeg",
            Status.FAIL,
            f"{version} at {_where(binary)} lacks {', '.join(missing)} — install a full build "
            "(Debian's ffmpeg package has them all)",
        )
    return Check(
        "ffmpeg",
        Status.OK,
        f"{version} at {_where(binary)} ({', '.join(REQUIRED_ENCODERS)}; "
        f"{len(REQUIRED_MUXERS)} muxers and {len(REQUIRED_FILTERS)} filters used)",
    )


def check_ffprobe() -> Check:
    binary = ffmpeg_tools.FFPROBE
    try:
        version = ffmpeg_tools.tool_version(binary)
    except OSError as error:
        return Check(
            "ffprobe",
            Status.FAIL,
            f"cannot run {binary!r} ({error.strerror or error}) — install ffmpeg "
            "(it brings ffprobe) or set RECAST_FFPROBE_BINARY",
        )
    return Check("ffprobe", Status.OK, f"{version} at {_where(binary)}")


# -- yt-dlp, hls.js ----------------------------------------------------------------------------


def check_js_runtime() -> Check:
    """yt-dlp solves some sites' JavaScript challenges (YouTube's) with an outside runtime."""
    found = ytdlp.js_runtime()
    if found is None:
        return Check(
            "js runtime",
            Status.FAIL,
            "yt-dlp has no JavaScript runtime (deno), so YouTube and other sites that need "
            "one fail — run scripts/setup",
        )
    name, path = found
    return Check("js runtime", Status.OK, f"{name} at {path}")


def check_hls_js(settings: Settings) -> Check:
    """The watch page's player: ``publish.hls_js``, else node_modules/hls.js (``npm ci``)."""
    try:
        path = find_hls_js(settings)
    except ConfigError as error:
        return Check(
            "hls.js",
            Status.FAIL,
            f"{error.message} — fix publish.hls_js, or empty it to use node_modules (npm ci)",
        )
    if path is None:
        return Check(
            "hls.js",
            Status.FAIL,
            f"{HLS_JS_IN_NODE_MODULES} missing — run npm ci in {PROJECT_ROOT} (or set "
            "publish.hls_js); without it watch pages fall back to native HLS or the MP4",
        )
    try:
        size = len(path.read_bytes())
    except OSError as error:
        return Check("hls.js", Status.FAIL, f"cannot read {path}: {error.strerror}")
    version = _npm_version(path)
    return Check("hls.js", Status.OK, f"{version + ' ' if version else ''}{path} ({size} bytes)")


def _npm_version(hls_min_js: Path) -> str | None:
    """The version in the package.json of node_modules/hls.js, when the file is from there."""
    package = hls_min_js.parent.parent / "package.json"
    try:
        data = json.loads(package.read_text("utf-8"))
    except (OSError, ValueError):
        return None
    version = data.get("version") if data.get("name") == "hls.js" else None
    return str(version) if version else None


# -- speech ------------------------------------------------------------------------------------


def speech_recognition_installed() -> bool:
    """faster-whisper is importable (workers; an API-only install goes without it)."""
    return importlib.util.find_spec("faster_whisper") is not None


def check_speech_model(settings: Settings, *, deep: bool = False) -> Check:
    """The model recognition will load: installed and intact (sizes; ``deep``: checksums and a
    load). Not needed when the engine never recognises speech."""
    transcript = settings.transcript
    if transcript.engine in ("none", "captions"):
        return Check(
            "speech model", Status.OK, f"not used (transcript.engine = {transcript.engine})"
        )
    if not speech_recognition_installed():
        if transcript.engine == "asr":
            return Check(
                "speech model",
                Status.FAIL,
                "speech recognition is not installed but transcript.engine = asr — install "
                "the asr extra (pip install 'recast[asr]')",
            )
        return Check(
            "speech model",
            Status.WARN,
            "speech recognition not installed (API-only install): sources without captions "
            "cannot be transcribed here — install the asr extra (pip install 'recast[asr]') "
            "where jobs run",
        )
    from pipeline.tools import speech_models

    if transcript.model == speech_models.OFFLINE_MODEL:
        directory = speech_models.offline_model_dir(speech_models.cache_dir(transcript))
        if not directory.is_dir():
            return Check(
                "speech model",
                Status.FAIL,
                f"{speech_models.OFFLINE_MODEL} is not installed in {directory} — run "
                "`recast models install`",
            )
        problems = speech_models.verify(directory, deep=deep)
        if problems:
            return Check(
                "speech model",
                Status.FAIL,
                f"{directory} does not check out: {'; '.join(problems)} — run "
                "`recast models install`",
            )
        how = "checksums and a load" if deep else "sizes; --deep for checksums and a load"
        return Check("speech model", Status.OK, f"{directory} ({how})")
    local = Path(os.path.expanduser(transcript.model))
    if local.is_dir():
        if not (local / "model.bin").is_file():
            return Check(
                "speech model",
                Status.FAIL,
                f"{local} has no model.bin — point transcript.model at a faster-whisper model "
                "directory",
            )
        return Check("speech model", Status.OK, f"{local} (model directory, not verified)")
    return Check(
        "speech model",
        Status.WARN,
        f"{transcript.model!r} is fetched by faster-whisper on first use (needs network) — "
        "use offline-base or a model directory on machines without it",
    )


# -- storage -----------------------------------------------------------------------------------


def _writable(directory: Path) -> str | None:
    """Why a file cannot be created and deleted in ``directory``; None when it can."""
    try:
        with tempfile.NamedTemporaryFile(dir=directory, prefix=".recast-doctor-"):
            pass
    except OSError as error:
        return error.strerror or str(error)
    return None


def check_local_dir(name: str, setting: str, folder: str, settings: Settings) -> Check:
    """A directory Recast writes into: writable (or creatable), with enough free space."""
    path = Path(folder).expanduser().absolute()
    if path.exists() and not path.is_dir():
        return Check(name, Status.FAIL, f"{path} is not a directory — fix {setting}")
    existing = path
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        return Check(
            name,
            Status.FAIL,
            f"{path} cannot be created: {existing} is not a directory — fix {setting}",
        )
    problem = _writable(existing)
    if problem is not None:
        return Check(
            name,
            Status.FAIL,
            f"{existing} is not writable ({problem}) — fix its permissions or {setting}",
        )
    state = "writable" if existing == path else f"to be created in {existing}, writable"
    disk = local_disk(str(path), socket.gethostname())
    if disk is None:
        return Check(name, Status.WARN, f"{path} {state}; free space unknown")
    free = f"{disk.free_bytes / 1e9:.1f} GB free of {disk.total_bytes / 1e9:.0f} GB"
    ops = settings.ops
    if disk_low(disk, ops.min_free_disk_gb, ops.min_free_disk_ratio):
        return Check(
            name,
            Status.WARN,
            f"{path} {state}, but only {free} (ops.min_free_disk_gb = {ops.min_free_disk_gb:g}, "
            f"min_free_disk_ratio = {ops.min_free_disk_ratio:g}) — free some space",
        )
    return Check(name, Status.OK, f"{path} {state}, {free}")


def check_bucket(name: str, setting: str, url: str, settings: Settings, severity: Status) -> Check:
    """An S3 location: its bucket answers HeadBucket with the configured credentials (what
    this checks; writing is not tried)."""
    import boto3
    from botocore.config import Config
    from botocore.exceptions import BotoCoreError, ClientError

    from pipeline.storage.s3 import parse_s3_url

    bucket, _ = parse_s3_url(url)
    publish = settings.publish
    client = boto3.client(
        "s3",
        endpoint_url=publish.s3_endpoint_url or None,
        region_name=publish.s3_region or None,
        aws_access_key_id=publish.s3_access_key_id or None,
        aws_secret_access_key=publish.s3_secret_access_key or None,
        config=Config(
            connect_timeout=NETWORK_TIMEOUT_S,
            read_timeout=NETWORK_TIMEOUT_S * 3,
            retries={"max_attempts": 1},
            s3={"addressing_style": "path"} if publish.s3_endpoint_url else {},
        ),
    )
    shown = public_url(url, keep_query=False)
    try:
        client.head_bucket(Bucket=bucket)
    except ClientError as error:
        code = str(error.response.get("Error", {}).get("Code", "?"))
        reason = "no such bucket" if code in ("404", "NoSuchBucket") else f"HeadBucket {code}"
        return Check(
            name, severity, f"{shown}: {reason} — check {setting} and the publish.s3_* settings"
        )
    except BotoCoreError as error:
        return Check(
            name,
            severity,
            f"{shown}: {public_text(str(error))} — check publish.s3_endpoint_url and credentials",
        )
    return Check(name, Status.OK, f"{shown}: bucket {bucket} answers (HeadBucket; no write tried)")


def check_output(settings: Settings) -> Check:
    output = settings.storage.output
    if output.startswith("s3://"):
        return check_bucket("output", "storage.output", output, settings, Status.FAIL)
    return check_local_dir("output", "storage.output", output, settings)


def check_workspace(settings: Settings) -> Check:
    return check_local_dir("workspace", "storage.workspace", settings.storage.workspace, settings)


# -- the cluster ---------------------------------------------------------------------------------

CLUSTER_ONLY = "needed only for workers and the API (--cluster makes this a failure)"


def _redis_answers(url: str) -> str | None:
    """Why Redis at ``url`` does not answer PING within the timeout; None when it does."""
    import redis
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    client = redis.Redis.from_url(
        url,
        socket_timeout=NETWORK_TIMEOUT_S,
        socket_connect_timeout=NETWORK_TIMEOUT_S,
        retry=Retry(NoBackoff(), 0),
    )
    try:
        client.ping()
    except redis.RedisError as error:
        return public_text(str(error)) or type(error).__name__
    finally:
        client.close()
    return None


def _port_answers(url: str, default_port: int) -> str | None:
    """Why nothing accepts a TCP connection at ``url``'s host and port; None when it does."""
    parts = urlsplit(url)
    try:
        with socket.create_connection(
            (parts.hostname or "localhost", parts.port or default_port), NETWORK_TIMEOUT_S
        ):
            return None
    except OSError as error:
        return error.strerror or str(error)


AMQP_PORTS = {"amqp": 5672, "pyamqp": 5672, "amqps": 5671}


def check_broker_url(url: str, settings_names: Sequence[str], cluster: bool) -> Check:
    """Redis (PING) or an AMQP broker (a TCP connection: its login is not tried)."""
    scheme = url.split("://", 1)[0].lower()
    name = "redis" if scheme in ("redis", "rediss", "unix") else "broker"
    shown = f"{public_url(url, keep_query=False)} ({', '.join(settings_names)})"
    if scheme in AMQP_PORTS:
        problem, how = _port_answers(url, AMQP_PORTS[scheme]), "accepts connections"
    elif name == "redis":
        problem, how = _redis_answers(url), "answers"
    else:
        return Check(name, Status.WARN, f"{shown}: {scheme}:// is not checked")
    if problem is None:
        return Check(name, Status.OK, f"{shown} {how}")
    if cluster:
        return Check(
            name,
            Status.FAIL,
            f"{shown} unreachable: {problem} — start it or fix {settings_names[0]}",
        )
    return Check(name, Status.WARN, f"{shown} unreachable: {problem} — {CLUSTER_ONLY}")


def check_cluster(settings: Settings, *, cluster: bool) -> list[Check]:
    """Redis and the broker, each distinct URL once; an S3 workspace store."""
    urls: dict[str, list[str]] = {}
    for setting in ("redis_url", "broker_url", "result_backend"):
        url = getattr(settings.cluster, setting)
        if url:
            urls.setdefault(url, []).append(f"cluster.{setting}")
    checks = [check_broker_url(url, names, cluster) for url, names in urls.items()]
    store = settings.cluster.workspace_store
    if store.startswith("s3://"):
        severity = Status.FAIL if cluster else Status.WARN
        checks.append(
            check_bucket("workspace store", "cluster.workspace_store", store, settings, severity)
        )
    return checks


# -- all of them ---------------------------------------------------------------------------------


def _guarded(name: str, check: Callable[[], Check | list[Check]]) -> list[Check]:
    try:
        result = check()
    except Exception as error:  # a bug in one check must not hide the others
        log.exception("the %s check crashed", name)
        return [Check(name, Status.FAIL, f"the check itself failed: {error!r}")]
    return result if isinstance(result, list) else [result]


def run_checks(settings: Settings, *, cluster: bool = False, deep: bool = False) -> Report:
    """Every check, in a fixed order. ``cluster``: Redis, the broker and the workspace store
    are required (a worker or API host); ``deep``: the speech model is hashed and loaded."""
    checks: list[tuple[str, Callable[[], Check | list[Check]]]] = [
        ("ffmpeg", check_ffmpeg),
        ("ffprobe", check_ffprobe),
        ("js runtime", check_js_runtime),
        ("hls.js", lambda: check_hls_js(settings)),
        ("speech model", lambda: check_speech_model(settings, deep=deep)),
        ("output", lambda: check_output(settings)),
        ("workspace", lambda: check_workspace(settings)),
        ("cluster", lambda: check_cluster(settings, cluster=cluster)),
    ]
    return Report([result for name, check in checks for result in _guarded(name, check)])
