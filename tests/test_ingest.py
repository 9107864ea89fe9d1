"""Ingest against the local HTTP server, with real yt-dlp and ffmpeg: the kinds of source,
captions, limits, error classes, and the URL policy proved by the servers' request logs."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image

from pipeline.core.dag import Dag
from pipeline.core.errors import ErrorCode, RecastError, retry_decision
from pipeline.core.job import JobSpec, JobState, JobStatus
from pipeline.core.readers import read_source_info
from pipeline.core.settings import Settings
from pipeline.core.workspace import Workspace
from pipeline.engine.local import LocalExecutor
from pipeline.publish.publisher import CardPublisher
from pipeline.stages.ingest import STAGE as INGEST_STAGE
from pipeline.stages.ingest import expand
from tests.conftest import make_settings
from tests.support.httpserver import MediaServer, Response
from tests.support.media import make_clip, make_hls

VTT = "WEBVTT\n\n00:00:00.000 --> 00:00:01.500\nWelcome to Munich.\n"


@pytest.fixture(scope="session")
def clip(media_dir: Path) -> Path:
    return make_clip(media_dir / "clip.mp4", duration=2.0, title="Quick Take")


@pytest.fixture(scope="session")
def hls_vod(media_dir: Path) -> Path:
    return make_hls(media_dir / "hls", duration=4.0, segment=1.0).parent


@pytest.fixture(scope="session")
def thumbnail(media_dir: Path) -> Path:
    path = media_dir / "thumb.jpg"
    Image.new("RGB", (1280, 720), (20, 90, 160)).save(path)
    return path


INGEST_ONLY = Dag.of([INGEST_STAGE])


def ingest(settings: Settings, source: str, event: str | None = None) -> JobState:
    """The ingest stage alone (the rest of the DAG is other tests' business)."""
    publisher = CardPublisher(settings)
    executor = LocalExecutor(settings, dag=INGEST_ONLY, publisher=publisher)
    return executor.run(JobSpec(source=source, event=event))


def ingest_dir(settings: Settings, state: JobState) -> Path:
    return Workspace.for_job(settings.storage.workspace, state.id).stage_dir("ingest")


def og_page(server: MediaServer, video: str, thumb: str, title: str, description: str) -> str:
    from html import escape

    return (
        "<!doctype html><html><head>"
        f'<meta property="og:title" content="{escape(title)}">'
        f'<meta property="og:description" content="{escape(description)}">'
        f'<meta property="og:image" content="{server.url(thumb)}">'
        f'<meta property="og:video" content="{server.url(video)}">'
        '<meta property="og:video:type" content="video/mp4">'
        "</head><body><h1>Coverage</h1></body></html>"
    )


def assert_failed(state: JobState, code: ErrorCode) -> None:
    assert state.status is JobStatus.FAILED, state
    assert state.error is not None
    assert state.error.code == code, state.error
    assert state.error.message.endswith("."), "one sentence for a human"


def no_card(settings: Settings) -> bool:
    out = Path(settings.storage.output)
    return not out.exists() or not list(out.rglob("card.json"))


# -- kinds of source ---------------------------------------------------------------------------


def test_page_with_og_video(
    settings: Settings, server: MediaServer, clip: Path, thumbnail: Path
) -> None:
    server.put_file("media/talk.mp4", clip)
    server.put_file("img/poster.jpg", thumbnail)
    url = server.add(
        "event/quick-take.html",
        og_page(
            server,
            "media/talk.mp4",
            "img/poster.jpg",
            "Quick Take: Europe",
            "Our correspondent sums up the day. The panel argued about energy.",
        ),
    )
    state = ingest(settings, url, event="Munich Security Conference 2026")
    assert state.status is JobStatus.SUCCEEDED, state.error
    info = read_source_info(ingest_dir(settings, state))
    assert info.title == "Quick Take: Europe"
    assert info.media_file == "media.mp4"
    assert info.media_duration == pytest.approx(2.0, abs=0.1)
    assert info.thumbnail_file == "thumbnail.jpg"
    card = json.loads((Path(settings.storage.output) / state.card_id / "card.json").read_text())
    assert card["status"] == "preview"
    assert card["event"] == {
        "name": "Munich Security Conference 2026",
        "slug": "munich-security-conference-2026",
    }
    assert card["link"]["label"] == "Watch recording"
    widths = sorted(s["width"] for s in card["poster"]["sources"])
    assert widths == [320, 640]
    for source in card["poster"]["sources"]:
        image = Path(settings.storage.output) / state.card_id / source["src"]
        with Image.open(image) as decoded:
            assert decoded.width == source["width"]


def test_direct_mp4(settings: Settings, server: MediaServer, clip: Path) -> None:
    url = server.put_file("direct/recording.mp4", clip)
    state = ingest(settings, url)
    assert state.status is JobStatus.SUCCEEDED, state.error
    media = ingest_dir(settings, state) / "media.mp4"
    assert media.read_bytes() == clip.read_bytes()


def test_hls_vod_playlist(settings: Settings, server: MediaServer, hls_vod: Path) -> None:
    for file in hls_vod.iterdir():
        server.put_file(f"hls/{file.name}", file)
    state = ingest(settings, server.url("hls/index.m3u8"))
    assert state.status is JobStatus.SUCCEEDED, state.error
    info = read_source_info(ingest_dir(settings, state))
    assert info.media_duration == pytest.approx(4.0, abs=0.2)
    assert len(server.hits("hls/seg003.ts")) == 1


def test_local_file(settings: Settings, clip: Path, tmp_path: Path) -> None:
    local = tmp_path / "Panel Recording.mp4"
    shutil.copy(clip, local)
    state = ingest(settings, str(local))
    assert state.status is JobStatus.SUCCEEDED, state.error
    info = read_source_info(ingest_dir(settings, state))
    assert info.extractor == "file"
    assert info.title == "Quick Take", "the file's own title tag wins over its name"
    assert state.card_id is not None and state.card_id.startswith("file-")


def test_playlist_expands_and_one_broken_entry_does_not_stop_the_others(
    settings: Settings, server: MediaServer, clip: Path
) -> None:
    for name in ("one", "two", "three"):
        server.put_file(f"pl/{name}.mp4", clip)
    page = (
        "<html><body>"
        + "".join(
            f'<video controls><source src="{server.url(f"pl/{name}.mp4")}"></video>'
            for name in ("one", "missing", "three")
        )
        + "</body></html>"
    )
    url = server.add("event/recordings.html", page)
    sources = expand(url, settings)
    assert len(sources) == 3
    states = [ingest(settings, source) for source in sources]
    assert [s.status for s in states] == [
        JobStatus.SUCCEEDED,
        JobStatus.FAILED,
        JobStatus.SUCCEEDED,
    ]
    assert states[1].error is not None and states[1].error.code == "source.unavailable"


def test_captions_downloaded_when_offered(
    settings: Settings, server: MediaServer, clip: Path
) -> None:
    server.put_file("cap/talk.mp4", clip)
    server.add("cap/talk.en.vtt", VTT, "text/vtt")
    page = (
        "<html><body><video controls>"
        f'<source src="{server.url("cap/talk.mp4")}" type="video/mp4">'
        '<track kind="subtitles" srclang="en" label="English" '
        f'src="{server.url("cap/talk.en.vtt")}">'
        "</video></body></html>"
    )
    state = ingest(settings, server.add("cap/page.html", page))
    assert state.status is JobStatus.SUCCEEDED, state.error
    directory = ingest_dir(settings, state)
    info = read_source_info(directory)
    assert [(t.lang, t.automatic, t.file) for t in info.subtitles] == [
        ("en", False, "captions/en.vtt")
    ]
    assert (directory / "captions" / "en.vtt").read_text() == VTT


def test_human_captions_preferred_over_automatic() -> None:
    from pipeline.stages.ingest import _subtitle_tracks

    info = {
        "subtitles": {"en": [{"ext": "vtt", "name": "English"}]},
        "automatic_captions": {"en": [{"ext": "vtt"}], "de": [{"ext": "vtt"}]},
    }
    tracks = {(t.lang, t.automatic) for t in _subtitle_tracks(info, ["en", "de"])}
    assert tracks == {("en", False), ("de", True)}


# -- limits ------------------------------------------------------------------------------------


def test_too_long_is_refused_before_download(
    server: MediaServer, hls_vod: Path, tmp_path: Path
) -> None:
    settings = make_settings(tmp_path, ingest={"max_duration_s": 3})
    for file in hls_vod.iterdir():
        server.put_file(f"hls/{file.name}", file)
    state = ingest(settings, server.url("hls/index.m3u8"))
    assert_failed(state, ErrorCode.LIMIT_DURATION)
    assert server.hits("hls/seg000.ts") == [], "no media was fetched"
    assert no_card(settings)


def test_too_long_found_after_download_when_source_did_not_say(
    server: MediaServer, clip: Path, tmp_path: Path
) -> None:
    settings = make_settings(tmp_path, ingest={"max_duration_s": 1})
    state = ingest(settings, server.put_file("long.mp4", clip))
    assert_failed(state, ErrorCode.LIMIT_DURATION)
    assert no_card(settings), "the preview card of a failed job is withdrawn"


def test_too_large_is_refused_before_download(
    server: MediaServer, clip: Path, tmp_path: Path
) -> None:
    settings = make_settings(tmp_path, ingest={"max_filesize_mb": 0.001})
    url = server.put_file("big.mp4", clip)
    state = ingest(settings, url)
    assert_failed(state, ErrorCode.LIMIT_FILESIZE)
    full_gets = [
        r
        for r in server.hits("big.mp4")
        if r.bytes_sent == clip.stat().st_size and r.range is not None
    ]
    assert full_gets == [], "the media download never started"


def test_live_stream_is_refused(settings: Settings, server: MediaServer) -> None:
    live = (
        "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:2\n#EXT-X-MEDIA-SEQUENCE:40\n"
        "#EXTINF:2.0,\nseg040.ts\n#EXTINF:2.0,\nseg041.ts\n"
    )
    url = server.add("live/index.m3u8", live, "application/vnd.apple.mpegurl")
    state = ingest(settings, url)
    assert_failed(state, ErrorCode.SOURCE_LIVE)
    assert state.error is not None and "not available yet" in state.error.message
    assert server.hits("live/seg040.ts") == []


# -- error classes -----------------------------------------------------------------------------


def test_404_is_permanent(settings: Settings, server: MediaServer) -> None:
    state = ingest(settings, server.status("gone.mp4", 404))
    assert_failed(state, ErrorCode.SOURCE_UNAVAILABLE)
    assert state.error is not None and not state.error.transient


def test_page_without_video_is_permanent(settings: Settings, server: MediaServer) -> None:
    url = server.add(
        "about.html",
        "<html><head><title>About us</title></head><body><p>No video here.</p></body></html>",
    )
    state = ingest(settings, url)
    assert_failed(state, ErrorCode.SOURCE_NO_VIDEO)
    assert state.error is not None and not state.error.transient


@pytest.mark.parametrize(
    ("status", "code"),
    [(429, ErrorCode.NETWORK_RATE_LIMITED), (500, ErrorCode.NETWORK_SERVER_ERROR)],
)
def test_429_and_500_are_transient_and_retried(
    server: MediaServer, tmp_path: Path, status: int, code: ErrorCode
) -> None:
    # With the host backoff on, a 429 makes the job wait instead (tests/test_host_backoff.py);
    # off, it is retried within executor.max_attempts like any transient error.
    settings = make_settings(
        tmp_path,
        executor={"max_attempts": 3, "retry_base_delay_s": 0.01},
        sources={"backoff": {"enabled": False}},
    )
    headers = {"Retry-After": "0"} if status == 429 else {}
    url = server.status("busy.mp4", status, headers)
    state = ingest(settings, url)
    assert_failed(state, code)
    assert state.error is not None and state.error.transient
    assert state.stages["ingest"].attempts == 3, "retried up to executor.max_attempts"
    error = RecastError(code, "x")
    assert retry_decision(error, 1, max_attempts=3).retry
    assert not retry_decision(error, 3, max_attempts=3).retry


def test_recovers_when_the_server_comes_back(
    server: MediaServer, clip: Path, tmp_path: Path
) -> None:
    settings = make_settings(tmp_path, executor={"max_attempts": 3, "retry_base_delay_s": 0.01})
    answers = iter([Response(503, b"busy")])
    body = clip.read_bytes()

    def flaky(handler: object) -> Response:
        return next(answers, Response(200, body, {"Content-Type": "video/mp4"}))

    state = ingest(settings, server.route("flaky.mp4", flaky))
    assert state.status is JobStatus.SUCCEEDED, state.error
    assert state.stages["ingest"].attempts == 2


def test_hls_with_missing_segment_fails_and_is_never_truncated(
    settings: Settings, server: MediaServer, hls_vod: Path
) -> None:
    for file in hls_vod.iterdir():
        if file.name != "seg002.ts":
            server.put_file(f"broken/{file.name}", file)
    state = ingest(settings, server.url("broken/index.m3u8"))
    assert_failed(state, ErrorCode.SOURCE_INCOMPLETE)
    workspace = Workspace.for_job(settings.storage.workspace, state.id)
    assert not workspace.stage_dir("ingest").exists()
    assert not workspace.partial_dir("ingest").exists(), "no partial download is kept"
    assert no_card(settings)


# -- URL policy --------------------------------------------------------------------------------


@pytest.fixture
def private_server(tmp_path: Path) -> Iterator[MediaServer]:
    """A server on 127.0.0.2: loopback, so private, and not in the tests' allow-list."""
    with MediaServer(tmp_path / "private", host="127.0.0.2") as srv:
        yield srv


def test_loopback_refused_when_not_allowed(server: MediaServer, clip: Path, tmp_path: Path) -> None:
    strict = make_settings(tmp_path, ingest={"allowed_private_networks": []})
    url = server.put_file("local.mp4", clip)
    with pytest.raises(RecastError) as info:
        expand(url, strict)
    assert info.value.code is ErrorCode.SOURCE_FORBIDDEN
    state = ingest(strict, url)
    assert_failed(state, ErrorCode.SOURCE_FORBIDDEN)
    assert server.requests == [], "refused before any request reached the server"


@pytest.mark.parametrize("url", ["file:///etc/passwd", "http://169.254.169.254/latest/meta-data/"])
def test_forbidden_urls(settings: Settings, url: str) -> None:
    state = ingest(settings, url)
    assert_failed(state, ErrorCode.SOURCE_FORBIDDEN)
    assert no_card(settings)


def test_redirect_to_private_address_is_refused_before_reaching_it(
    settings: Settings, server: MediaServer, private_server: MediaServer, clip: Path
) -> None:
    target = private_server.put_file("secret.mp4", clip)
    url = server.redirect("go.mp4", target)
    state = ingest(settings, url)
    assert_failed(state, ErrorCode.SOURCE_FORBIDDEN)
    assert server.hits("go.mp4"), "the public hop was followed"
    assert private_server.requests == [], "no request reached the private address"


def test_page_pointing_at_private_media_is_refused(
    settings: Settings, server: MediaServer, private_server: MediaServer, clip: Path
) -> None:
    target = private_server.put_file("internal.mp4", clip)
    page = f'<html><body><video src="{target}"></video></body></html>'
    state = ingest(settings, server.add("embed.html", page))
    assert_failed(state, ErrorCode.SOURCE_FORBIDDEN)
    assert private_server.requests == []
