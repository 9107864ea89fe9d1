"""Per-site access (``sources.sites``) with real yt-dlp against local servers: cookies a site
wants (and the cookies file left as it was), a proxy every request goes through while the URL
policy still judges the targets, the User-Agent of each host, pacing between requests, the
download rate cap, and the settings' own checks."""

from __future__ import annotations

import itertools
import json
import logging
import time
from pathlib import Path
from typing import Any

import pytest

from pipeline.core.errors import ConfigError, ErrorCode, RecastError
from pipeline.core.hostgate import InMemoryHostGate
from pipeline.core.job import JobSpec
from pipeline.core.readers import read_source_info
from pipeline.core.settings import Settings, SiteAccess, load_settings
from pipeline.stages import ingest
from pipeline.tools.ytdlp import RecastYoutubeDL, SourceAccess, ytdlp_options
from tests.conftest import make_settings
from tests.support.httpserver import MediaServer, Response, _Handler
from tests.support.media import make_clip
from tests.support.proxy import ForwardProxy, Socks5Proxy
from tests.support.publishing import ingest_context

COOKIE_VALUE = "s3cr3t-7f9a"


@pytest.fixture(scope="session")
def clip(media_dir: Path) -> Path:
    return make_clip(media_dir / "access-clip.mp4", duration=1.0, title="Access")


def video_page(video_url: str, track_url: str | None = None) -> str:
    track = f'<track kind="subtitles" srclang="en" src="{track_url}">' if track_url else ""
    return (
        f'<html><body><video controls><source src="{video_url}" type="video/mp4">{track}'
        "</video></body></html>"
    )


def with_sites(tmp_path: Path, sites: list[dict[str, Any]], **ingest: Any) -> Settings:
    return make_settings(tmp_path, sources={"sites": sites}, ingest=ingest)


def run_ingest(settings: Settings, url: str) -> Path:
    ctx = ingest_context(JobSpec(source=url), settings)
    ctx.host_gate = InMemoryHostGate(settings.sources.backoff)  # as the local executor's
    ingest.run(ctx)
    return ctx.out


def recorded(log: list[dict[str, Any]], body: bytes, content_type: str) -> Any:
    """A route answering ``body`` and noting each request's headers and arrival."""

    def route(handler: _Handler) -> Response:
        log.append({"at": time.monotonic(), **{k.lower(): v for k, v in handler.headers.items()}})
        return Response(200, body, {"Content-Type": content_type})

    return route


# -- settings --------------------------------------------------------------------------------


def test_site_for_picks_the_most_specific_entry_and_covers_subdomains(tmp_path: Path) -> None:
    settings = with_sites(
        tmp_path,
        [
            {"hosts": ["Example-Tube.com"], "user_agent": "wide"},
            {"hosts": ["m.example-tube.com", "cdn.example.net"], "user_agent": "narrow"},
        ],
    )
    sources = settings.sources
    assert sources.site_for("www.example-tube.com").user_agent == "wide"
    assert sources.site_for("example-tube.com").user_agent == "wide"
    assert sources.site_for("a.m.example-tube.com").user_agent == "narrow"
    assert sources.site_for("cdn.example.net").user_agent == "narrow"
    assert sources.site_for("notexample-tube.com") == SiteAccess(), "no match: defaults"
    assert sources.site_for_url("https://M.Example-Tube.com/watch?v=1").user_agent == "narrow"
    addresses = with_sites(tmp_path, [{"hosts": ["[::1]", "10.0.0.7"], "user_agent": "lan"}])
    assert addresses.sources.site_for_url("http://[::1]:8080/a").user_agent == "lan"
    assert addresses.sources.site_for("10.0.0.7").user_agent == "lan"
    assert addresses.sources.site_for("x.10.0.0.7") == SiteAccess(), "an address is only itself"


def test_bad_site_settings_fail_at_start_naming_the_key(tmp_path: Path) -> None:
    cases = {
        "sources.sites.0.cookies_file": {"hosts": ["a.com"], "cookies_file": "/nonexistent"},
        "sources.sites.0.proxy": {"hosts": ["a.com"], "proxy": "ftp://proxy:21"},
        "sources.sites.0.hosts": {"hosts": ["https://a.com/"]},
        "sources.sites.0.rate_limit": {"hosts": ["a.com"], "rate_limit": "fast"},
        "pace_min_s must not be more than pace_max_s": {
            "hosts": ["a.com"],
            "pace_min_s": 2,
            "pace_max_s": 1,
        },
    }
    for expected, site in cases.items():
        with pytest.raises(ConfigError) as raised:
            with_sites(tmp_path, [site])
        assert expected in str(raised.value), raised.value
    with pytest.raises(ConfigError, match="listed by two sites"):
        with_sites(tmp_path, [{"hosts": ["a.com"]}, {"hosts": ["A.com"]}])
    unreadable = tmp_path / "cookies.txt"
    unreadable.write_text("# Netscape HTTP Cookie File\n")
    assert with_sites(tmp_path, [{"hosts": ["a.com"], "cookies_file": str(unreadable)}])


def test_sites_come_from_the_environment_as_json(monkeypatch: pytest.MonkeyPatch) -> None:
    sites = [{"hosts": ["example-tube.com"], "proxy": "socks5://10.0.0.5:1080", "rate_limit": "2M"}]
    monkeypatch.setenv("RECAST_SOURCES__SITES", json.dumps(sites))
    site = load_settings().sources.site_for("www.example-tube.com")
    assert (site.proxy, site.rate_limit_bytes) == ("socks5://10.0.0.5:1080", 2 * 1024 * 1024)


# -- cookies ---------------------------------------------------------------------------------


def test_a_site_that_wants_a_cookie_gets_it_and_the_cookies_file_is_left_alone(
    tmp_path: Path, server: MediaServer, clip: Path, caplog: pytest.LogCaptureFixture
) -> None:
    seen: list[str] = []
    page = video_page(server.put_file("members/talk.mp4", clip)).encode()

    def members_only(handler: _Handler) -> Response:
        cookie = handler.headers.get("Cookie") or ""
        seen.append(cookie)
        if f"session={COOKIE_VALUE}" not in cookie:
            return Response(403, b"log in first", {"Content-Type": "text/plain"})
        # A site refreshing its cookie: it must not be written back into the shared file.
        headers = {"Content-Type": "text/html", "Set-Cookie": "refreshed=1; Path=/"}
        return Response(200, page, headers)

    url = server.route("members/page.html", members_only)
    without = make_settings(tmp_path / "without", sources={"backoff": {"enabled": False}})
    with pytest.raises(RecastError) as refused:  # the refusal itself, not the host's backoff
        run_ingest(without, url)
    assert refused.value.code is ErrorCode.SOURCE_BLOCKED
    assert seen == [""], "no cookie without the setting"

    cookies = tmp_path / "cookies.txt"
    cookies.write_text(
        "# Netscape HTTP Cookie File\n"
        f"127.0.0.1\tFALSE\t/\tFALSE\t0\tsession\t{COOKIE_VALUE}\n"
        "a line yt-dlp would print back, cookie and all\n"
    )
    cookies.chmod(0o400)
    before = cookies.read_bytes()
    settings = with_sites(tmp_path, [{"hosts": ["127.0.0.1"], "cookies_file": str(cookies)}])
    caplog.set_level(logging.DEBUG)
    out = run_ingest(settings, url)
    assert f"session={COOKIE_VALUE}" in seen[-1], "the request log shows the cookie"
    assert read_source_info(out).media_file == "media.mp4"
    assert cookies.read_bytes() == before, "the cookies file is only read"
    assert COOKIE_VALUE not in caplog.text, "no cookie in any log"
    assert not list(out.rglob("*cookie*"))


# -- proxy -----------------------------------------------------------------------------------


def test_requests_go_through_the_proxy_whose_targets_still_obey_the_url_policy(
    tmp_path: Path, clip: Path
) -> None:
    with (
        MediaServer(tmp_path / "origin", host="127.0.0.2") as origin,
        MediaServer(tmp_path / "private", host="127.0.0.3") as private,
        ForwardProxy("127.0.0.1") as proxy,
    ):
        video = origin.put_file("talk.mp4", clip)
        page = origin.add("page.html", video_page(video))
        # The proxy (127.0.0.1) is trusted although no allowed network holds it; the sources
        # fetched through it must be allowed (127.0.0.2), and 127.0.0.3 is not.
        settings = make_settings(
            tmp_path,
            ingest={"allowed_private_networks": ["127.0.0.2/32"]},
            sources={"sites": [{"hosts": ["127.0.0.2"], "proxy": proxy.url}]},
        )
        out = run_ingest(settings, page)
        assert read_source_info(out).media_file == "media.mp4"
        relayed = [r.url for r in proxy.requests]
        assert page in relayed and video in relayed, relayed
        assert origin.hits("page.html") and origin.hits("talk.mp4")

        hidden = private.add("admin.html", video_page(video))
        origin.redirect("go.html", hidden)
        with pytest.raises(RecastError) as refused:
            run_ingest(settings, origin.url("go.html"))
        assert refused.value.code is ErrorCode.SOURCE_FORBIDDEN, refused.value
        assert origin.url("go.html") in [r.url for r in proxy.requests]
        assert hidden not in [r.url for r in proxy.requests], "the redirect was not followed"
        assert private.requests == []


def test_a_socks_proxy_carries_the_requests_too(tmp_path: Path, clip: Path) -> None:
    with (
        MediaServer(tmp_path / "origin", host="127.0.0.2") as origin,
        Socks5Proxy("127.0.0.1") as proxy,
    ):
        page = origin.add("page.html", video_page(origin.put_file("talk.mp4", clip)))
        settings = make_settings(
            tmp_path,
            ingest={"allowed_private_networks": ["127.0.0.2/32"]},
            sources={"sites": [{"hosts": ["127.0.0.2"], "proxy": proxy.url}]},
        )
        out = run_ingest(settings, page)
    assert read_source_info(out).media_file == "media.mp4"
    assert f"127.0.0.2:{origin.port}" in proxy.connections


# -- user agent, pacing, rate cap --------------------------------------------------------------


def test_each_host_gets_its_sites_user_agent_and_others_the_sources(
    tmp_path: Path, clip: Path
) -> None:
    page_log: list[dict[str, Any]] = []
    video_log: list[dict[str, Any]] = []
    caption_log: list[dict[str, Any]] = []
    with (
        MediaServer(tmp_path / "a") as site,
        MediaServer(tmp_path / "b", host="127.0.0.2") as cdn,
        MediaServer(tmp_path / "c", host="127.0.0.3") as other,
    ):
        video = cdn.route("v.mp4", recorded(video_log, clip.read_bytes(), "video/mp4"))
        vtt = b"WEBVTT\n\n00:00:00.000 --> 00:00:01.000\nHello.\n"
        track = other.route("en.vtt", recorded(caption_log, vtt, "text/vtt"))
        page = video_page(video, track).encode()
        url = site.route("page.html", recorded(page_log, page, "text/html"))
        settings = make_settings(
            tmp_path,
            ingest={
                "user_agent": "Global/0",
                "allowed_private_networks": ["127.0.0.1/32", "127.0.0.2/32", "127.0.0.3/32"],
            },
            sources={
                "sites": [
                    {"hosts": ["127.0.0.1"], "user_agent": "Site/1"},
                    {"hosts": ["127.0.0.2"], "user_agent": "Cdn/2"},
                ]
            },
        )
        run_ingest(settings, url)
    assert {r["user-agent"] for r in page_log} == {"Site/1"}
    assert video_log and {r["user-agent"] for r in video_log} == {"Cdn/2"}
    assert caption_log and {r["user-agent"] for r in caption_log} == {"Site/1"}


def test_requests_to_a_paced_site_are_spaced(
    tmp_path: Path, server: MediaServer, clip: Path
) -> None:
    log: list[dict[str, Any]] = []
    video = server.route("paced/v.mp4", recorded(log, clip.read_bytes(), "video/mp4"))
    url = server.route("paced/page.html", recorded(log, video_page(video).encode(), "text/html"))
    settings = with_sites(
        tmp_path, [{"hosts": ["127.0.0.1"], "pace_min_s": 0.25, "pace_max_s": 0.3}]
    )
    run_ingest(settings, url)
    times = [r["at"] for r in log]
    assert len(times) >= 2
    gaps = [later - earlier for earlier, later in itertools.pairwise(times)]
    assert min(gaps) >= 0.2, gaps


def test_downloads_from_a_site_are_capped_at_its_rate(
    tmp_path: Path, server: MediaServer, clip: Path
) -> None:
    size = clip.stat().st_size
    video = server.put_file("capped/v.mp4", clip)
    settings = with_sites(tmp_path, [{"hosts": ["127.0.0.1"], "rate_limit": str(int(size / 0.6))}])
    access = SourceAccess.for_source(settings.sources, video)
    finished: list[dict[str, Any]] = []
    options = ytdlp_options(settings.ingest, site=access.job_site) | {
        "outtmpl": {"default": str(tmp_path / "dl.%(ext)s")},
        "progress_hooks": [lambda s: finished.append(s) if s["status"] == "finished" else None],
    }
    with RecastYoutubeDL(options, ingest.url_policy(settings), access) as ydl:
        ydl.download([video])
    assert finished and finished[-1]["downloaded_bytes"] == size
    assert finished[-1]["elapsed"] >= 0.5, "about 0.6 s at the site's rate"
