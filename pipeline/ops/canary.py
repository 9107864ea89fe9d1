"""The yt-dlp canary: does the installed yt-dlp still read the sites Recast fetches from?

yt-dlp breaks when a site changes and is mended by a new release within days (docs/ops.md,
"Bumping yt-dlp fast"). :func:`run_canary` reads each URL of a list (``config/canary.txt``:
public conference recordings and channels) through Recast's own yt-dlp wrapper, as the ingest
stage does up to the download: the URL policy, Recast's options, the JavaScript runtime. A
video passes when a playable format is selected, a channel or playlist when it lists at least
one entry. Nothing is downloaded.

Offline the canary is skipped, not failed: when none of the list's hosts can be looked up and
connected to within :data:`PROBE_TIMEOUT_S`, the report's status is ``skipped`` and no URL is
read. A host that answers while others do not is a failure of that URL, not a skip.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from pipeline.core.errors import ConfigError, ErrorCode, RecastError
from pipeline.core.settings import DEFAULT_CONFIG_FILE, Settings
from pipeline.core.urlpolicy import UrlPolicy
from pipeline.tools.ytdlp import RecastYoutubeDL, SourceAccess, classify, ytdlp_options

DEFAULT_URL_LIST = DEFAULT_CONFIG_FILE.parent / "canary.txt"
PROBE_TIMEOUT_S = 3.0
"""How long the look-up and TCP connect of the offline probe may take, all hosts together."""
PLAYLIST_ENTRIES = 3
"""A channel or playlist is read this far: enough to show it still lists videos."""

Status = Literal["ok", "failed", "skipped"]


@dataclass(frozen=True)
class UrlCheck:
    url: str
    ok: bool
    detail: str
    """What was found (title, formats or entries), or why it failed."""
    code: str | None = None
    """The error code of a failure (``pipeline.core.errors.ErrorCode``)."""

    def line(self) -> str:
        verdict = "ok" if self.ok else f"FAILED {self.code}"
        return f"{verdict}  {self.url}  {self.detail}"


@dataclass(frozen=True)
class CanaryReport:
    status: Status
    checks: list[UrlCheck] = field(default_factory=list)
    reason: str | None = None
    """Why the canary was skipped."""

    def text(self) -> str:
        if self.status == "skipped":
            return f"skipped: offline ({self.reason})\n"
        lines = [check.line() for check in self.checks]
        passed = sum(check.ok for check in self.checks)
        lines.append(f"canary {self.status}: {passed} of {len(self.checks)} URLs ok")
        return "\n".join(lines) + "\n"

    def as_json(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "reason": self.reason,
            "urls": [asdict(check) for check in self.checks],
        }


def read_url_list(path: Path) -> list[str]:
    """The URLs of a canary list: one a line, blank lines and ``#`` comments skipped."""
    try:
        lines = path.read_text("utf-8").splitlines()
    except OSError as exc:
        raise ConfigError(f"cannot read the canary's URL list {path}: {exc.strerror}") from exc
    urls = [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]
    if not urls:
        raise ConfigError(f"the canary's URL list {path} has no URL")
    return urls


def _targets(urls: Sequence[str]) -> dict[tuple[str, int], str]:
    """One URL for each (host, port) the well-formed ``urls`` name."""
    targets: dict[tuple[str, int], str] = {}
    for url in urls:
        try:
            targets.setdefault(UrlPolicy().target(url), url)
        except RecastError:  # not http(s), no host: refused when read
            continue
    return targets


def _host_answers(policy: UrlPolicy, url: str, timeout_s: float) -> bool:
    """Whether ``url``'s host can be looked up and connected to (nothing is sent). A host the
    policy refuses was looked up, so the network is there: its URL fails when it is read."""
    try:
        addresses = policy.resolve_url(url)
    except RecastError as error:
        return error.code != ErrorCode.SOURCE_UNAVAILABLE  # not found: no DNS, or no such host
    for address in addresses:
        try:
            with socket.create_connection((address.ip, address.port), timeout=timeout_s):
                return True
        except OSError:
            continue
    return False


def network_reachable(
    urls: Sequence[str], policy: UrlPolicy, timeout_s: float = PROBE_TIMEOUT_S
) -> bool:
    """Whether any host of ``urls`` answers within ``timeout_s`` (all probed at once). A
    look-up that hangs counts as no answer; its thread is left to finish on its own. Without
    a single well-formed http(s) URL there is nothing to probe: the URLs fail when read."""
    hosts = list(_targets(urls).values())
    if not hosts:
        return True
    done = threading.Condition()
    answers: list[bool] = []

    def probe(url: str) -> None:
        answer = _host_answers(policy, url, timeout_s)
        with done:
            answers.append(answer)
            done.notify_all()

    for url in hosts:
        threading.Thread(target=probe, args=(url,), name="canary-probe", daemon=True).start()
    with done:
        done.wait_for(lambda: any(answers) or len(answers) == len(hosts), timeout=timeout_s)
        return any(answers)


def _playable(fmt: dict[str, Any]) -> bool:
    """Not a storyboard or other picture: what YouTube leaves when its challenges go unsolved."""
    if fmt.get("protocol") == "mhtml":
        return False
    return (fmt.get("vcodec"), fmt.get("acodec")) != ("none", "none")


def _verdict(url: str, info: dict[str, Any]) -> UrlCheck:
    title = str(info.get("title") or info.get("id") or "untitled")
    if info.get("_type") in ("playlist", "multi_video"):
        entries = [entry for entry in info.get("entries") or [] if entry]
        if not entries:
            return UrlCheck(url, False, f"{title!r} lists no entries", ErrorCode.SOURCE_NO_VIDEO)
        return UrlCheck(url, True, f"{title!r}: entries listed ({len(entries)} read)")
    chosen = info.get("requested_formats") or ([info] if info.get("url") else [])
    if not chosen or not all(_playable(fmt) for fmt in chosen):
        return UrlCheck(url, False, f"{title!r} has no playable format", ErrorCode.SOURCE_NO_VIDEO)
    formats = len(info.get("formats") or chosen)
    picked = "+".join(str(fmt.get("format_id") or "?") for fmt in chosen)
    return UrlCheck(url, True, f"{title!r}: {formats} formats, picked {picked}")


def check_url(url: str, settings: Settings) -> UrlCheck:
    """Read ``url`` as the ingest stage would before downloading (its site's cookies, proxy,
    User-Agent and pacing included); the verdict on it."""
    policy = UrlPolicy.from_networks(settings.ingest.allowed_private_networks)
    access = SourceAccess.for_source(settings.sources, url)
    options = ytdlp_options(settings.ingest, site=access.job_site) | {
        "extract_flat": "in_playlist",
        "playlist_items": f"1-{PLAYLIST_ENTRIES}",
        "skip_download": True,
    }
    try:
        policy.check_url(url)
        with RecastYoutubeDL(options, policy, access) as ydl:
            try:
                info = ydl.extract_info(url, download=False)
            except Exception as exc:
                raise classify(exc, ydl) from exc
    except RecastError as error:
        return UrlCheck(url, False, error.message, str(error.code))
    return _verdict(url, info)


def run_canary(urls: Sequence[str], settings: Settings) -> CanaryReport:
    """Read every URL, unless offline (then ``skipped``)."""
    policy = UrlPolicy.from_networks(settings.ingest.allowed_private_networks)
    if not network_reachable(urls, policy):
        hosts = ", ".join(dict.fromkeys(host for host, _port in _targets(urls)))
        return CanaryReport("skipped", reason=f"no answer from {hosts}")
    checks = [check_url(url, settings) for url in urls]
    return CanaryReport("ok" if all(check.ok for check in checks) else "failed", checks)
