"""Ingest's downloaders, with real yt-dlp, ffmpeg and two local servers: media is fetched only by
yt-dlp's own downloaders under the URL policy (encrypted HLS included, its keys and init
segments too), what would need ffmpeg or an external downloader is refused, the ffmpeg of
yt-dlp's postprocessors reads downloaded files as media only, and the size limit stops every
kind of download early. The "internal" server (127.0.0.2, not allowed) must never be reached."""

from __future__ import annotations

import errno
import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from pipeline.core.errors import ErrorCode, RecastError
from pipeline.core.job import JobStatus
from pipeline.core.readers import read_source_info
from pipeline.core.settings import Settings
from pipeline.core.workspace import Workspace
from pipeline.stages.ingest import url_policy
from pipeline.tools.ffmpeg_tools import probe
from pipeline.tools.ytdlp import RecastYoutubeDL, ytdlp_options
from tests.conftest import make_settings
from tests.support.httpserver import LoggedRequest, MediaServer, Response
from tests.support.media import make_encrypted_hls, make_hls, make_split_hls
from tests.test_ingest import assert_failed, ingest, ingest_dir, no_card

MB = 1024 * 1024


@pytest.fixture
def internal(tmp_path: Path) -> Iterator[MediaServer]:
    """A server on 127.0.0.2: loopback, so private, and not in the tests' allow-list."""
    with MediaServer(tmp_path / "internal", host="127.0.0.2") as srv:
        yield srv


@pytest.fixture(scope="session")
def encrypted_hls(media_dir: Path) -> Path:
    return make_encrypted_hls(media_dir / "aes", duration=2.0, segment=1.0).parent


@pytest.fixture(scope="session")
def split_hls(media_dir: Path) -> Path:
    return make_split_hls(media_dir / "split", duration=2.0, segment=1.0).parent


@pytest.fixture(scope="session")
def plain_hls(media_dir: Path) -> Path:
    return make_hls(media_dir / "plain", duration=4.0, segment=1.0).parent


def serve_tree(server: MediaServer, directory: Path, prefix: str) -> None:
    for file in directory.rglob("*"):
        if file.is_file():
            server.put_file(f"{prefix}/{file.relative_to(directory)}", file)


def playlist(directory: Path, name: str = "index.m3u8") -> str:
    return (directory / name).read_text()


def serve_playlist(server: MediaServer, path: str, text: str) -> str:
    return server.add(path, text, "application/vnd.apple.mpegurl")


# -- encrypted HLS -----------------------------------------------------------------------------


def test_aes128_hls_is_decrypted_by_the_native_downloader(
    settings: Settings, server: MediaServer, encrypted_hls: Path
) -> None:
    serve_tree(server, encrypted_hls, "aes")
    state = ingest(settings, server.url("aes/index.m3u8"))
    assert state.status is JobStatus.SUCCEEDED, state.error
    info = read_source_info(ingest_dir(settings, state))
    assert info.media_duration == pytest.approx(2.0, abs=0.2)
    streams = probe(ingest_dir(settings, state) / "media.mp4")["streams"]
    assert {s["codec_type"] for s in streams} == {"video", "audio"}, "decrypted, demuxable"
    assert len(server.hits("aes/key.bin")) == 1, "the key came through yt-dlp's urlopen"
    assert [len(server.hits(f"aes/seg00{i}.ts")) for i in (0, 1)] == [1, 1]


def _key_on(internal: MediaServer, text: str) -> str:
    return text.replace('URI="key.bin"', f'URI="{internal.url("key.bin")}"')


def _init_on(internal: MediaServer, text: str) -> str:
    return text.replace(
        "#EXT-X-KEY:", f'#EXT-X-MAP:URI="{internal.url("init.mp4")}"\n#EXT-X-KEY:', 1
    )


def _segment_on(internal: MediaServer, text: str) -> str:
    return text.replace("seg001.ts", internal.url("seg001.ts"))


@pytest.mark.parametrize("redirect", [_key_on, _init_on, _segment_on], ids=["key", "init", "seg"])
def test_encrypted_hls_pointing_inside_is_refused_before_reaching_it(
    settings: Settings,
    server: MediaServer,
    internal: MediaServer,
    encrypted_hls: Path,
    redirect: Callable[[MediaServer, str], str],
) -> None:
    serve_tree(server, encrypted_hls, "aes")
    serve_tree(internal, encrypted_hls, "")
    internal.put_file("init.mp4", encrypted_hls / "seg000.ts")
    url = serve_playlist(server, "aes/inside.m3u8", redirect(internal, playlist(encrypted_hls)))
    state = ingest(settings, url)
    assert_failed(state, ErrorCode.SOURCE_FORBIDDEN)
    assert server.hits("aes/inside.m3u8"), "the playlist itself was read"
    assert internal.requests == [], "no request reached the internal address"
    assert no_card(settings)


def test_sample_aes_is_refused_and_never_handed_to_ffmpeg(
    settings: Settings, server: MediaServer, internal: MediaServer, encrypted_hls: Path
) -> None:
    serve_tree(internal, encrypted_hls, "")
    text = (
        _segment_on(internal, _key_on(internal, playlist(encrypted_hls)))
        .replace("METHOD=AES-128", "METHOD=SAMPLE-AES")
        .replace("seg000.ts", internal.url("seg000.ts"))
    )
    state = ingest(settings, serve_playlist(server, "sample-aes/index.m3u8", text))
    assert_failed(state, ErrorCode.SOURCE_UNSUPPORTED_PROTOCOL)
    assert state.error is not None and not state.error.transient
    assert internal.requests == [], "ffmpeg never ran on the playlist"
    assert no_card(settings)


# -- the downloader choice ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fmt", "options"),
    [
        ({"protocol": "m3u8_native", "ext": "mp4"}, {"external_downloader": {"m3u8": "ffmpeg"}}),
        ({"protocol": "https", "ext": "mp4"}, {"external_downloader": {"default": "ffmpeg"}}),
        ({"protocol": "https", "ext": "mp4"}, {"external_downloader": {"default": "curl"}}),
        ({"protocol": "https", "ext": "mp4", "section_start": 1.0}, {}),  # a cut: ffmpeg
        ({"protocol": "m3u8_native", "ext": "mp4", "is_live": True}, {}),  # live: ffmpeg
        ({"protocol": "rtmp", "ext": "flv"}, {}),  # rtmpdump
    ],
    ids=["hls-ffmpeg", "http-ffmpeg", "http-curl", "section", "live-hls", "rtmp"],
)
def test_every_non_native_downloader_is_refused(
    settings: Settings,
    internal: MediaServer,
    tmp_path: Path,
    fmt: dict[str, object],
    options: dict[str, object],
) -> None:
    url = internal.url("media.mp4")
    info = {"id": "x", "title": "x", "url": url, "format_id": "0", **fmt}
    params = ytdlp_options(settings.ingest) | options
    with RecastYoutubeDL(params, url_policy(settings)) as ydl, pytest.raises(RecastError) as err:
        ydl.dl(str(tmp_path / "media.mp4"), info)
    assert err.value.code is ErrorCode.SOURCE_UNSUPPORTED_PROTOCOL
    assert internal.requests == []


# -- yt-dlp's postprocessors -------------------------------------------------------------------


def test_split_renditions_are_merged_by_the_restricted_ffmpeg(
    settings: Settings, server: MediaServer, split_hls: Path
) -> None:
    serve_tree(server, split_hls, "split")
    state = ingest(settings, server.url("split/master.m3u8"))
    assert state.status is JobStatus.SUCCEEDED, state.error
    media = ingest_dir(settings, state) / "media.mp4"
    data = probe(media)
    assert {s["codec_type"] for s in data["streams"]} == {"video", "audio"}
    assert "mp4" in data["format"]["format_name"], "remuxed from MPEG-TS into MP4"


class ReadCanary:
    """A named pipe (``canary.ts``) that counts how often something opened it to read: a local
    file a disguised playlist names. Each reader is let go at once, with an empty read."""

    def __init__(self, directory: Path):
        self.path = directory / "canary.ts"
        os.mkfifo(self.path)
        self.opened = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def __enter__(self) -> ReadCanary:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _watch(self) -> None:
        while not self._stop.is_set():
            try:  # succeeds only while a reader has the pipe open
                writer = os.open(self.path, os.O_WRONLY | os.O_NONBLOCK)
            except OSError as err:
                assert err.errno == errno.ENXIO, err
                time.sleep(0.005)
                continue
            self.opened += 1
            os.close(writer)


def _playlist_disguised_as_segment(target: Path) -> bytes:
    """Bytes of a "segment" that are an HLS playlist naming a local file: ffmpeg or ffprobe,
    reading the downloaded file without restrictions, would open ``target``."""
    return (
        "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:2\n#EXT-X-PLAYLIST-TYPE:VOD\n"
        f"#EXTINF:2.0,\n{target}\n#EXT-X-ENDLIST\n"
    ).encode()


def test_the_canary_sees_an_unrestricted_reader(tmp_path: Path) -> None:
    with ReadCanary(tmp_path) as canary:
        canary.path.read_bytes()
    assert canary.opened >= 1


def test_downloaded_playlist_is_not_read_by_the_merger(
    settings: Settings, server: MediaServer, split_hls: Path, tmp_path: Path
) -> None:
    serve_tree(server, split_hls, "split")
    canary = ReadCanary(tmp_path)
    server.add("split/video/evil.ts", _playlist_disguised_as_segment(canary.path), "video/mp2t")
    serve_playlist(
        server,
        "split/video/index.m3u8",
        "#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXT-X-PLAYLIST-TYPE:VOD\n"
        "#EXTINF:2.0,\nevil.ts\n#EXT-X-ENDLIST\n",
    )
    with canary:
        state = ingest(settings, server.url("split/master.m3u8"))
    assert_failed(state, ErrorCode.MEDIA_INVALID)
    assert server.hits("split/audio/seg001.ts"), "both formats were downloaded, then refused"
    assert canary.opened == 0, "neither ffprobe nor ffmpeg followed the disguised playlist"
    assert no_card(settings)


def test_downloaded_playlist_is_not_read_by_the_hls_fixup(
    settings: Settings, server: MediaServer, tmp_path: Path
) -> None:
    canary = ReadCanary(tmp_path)
    server.add("fixup/evil.ts", _playlist_disguised_as_segment(canary.path), "video/mp2t")
    url = serve_playlist(
        server,
        "fixup/index.m3u8",
        "#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXT-X-PLAYLIST-TYPE:VOD\n"
        "#EXTINF:2.0,\nevil.ts\n#EXT-X-ENDLIST\n",
    )
    with canary:
        state = ingest(settings, url)
    assert_failed(state, ErrorCode.MEDIA_INVALID)
    assert canary.opened == 0, "neither ffprobe nor ffmpeg followed the disguised playlist"
    assert no_card(settings)


# -- the size limit during the download --------------------------------------------------------


def _logged_gets(server: MediaServer, path: str, count: int) -> list[LoggedRequest]:
    """The GETs of ``path``, once ``count`` are logged: a request is logged when its response
    ends, which for a stream is when the client hangs up."""
    deadline = time.monotonic() + 5
    while len(server.hits(path)) < count and time.monotonic() < deadline:
        time.sleep(0.05)
    return server.hits(path)


def test_progressive_download_that_lies_about_its_size_is_stopped(
    server: MediaServer, tmp_path: Path
) -> None:
    settings = make_settings(tmp_path, ingest={"max_filesize_mb": 1})
    piece, pieces = b"\0" * 65536, 1024  # 64 MB, far more than socket buffers hold

    def lying(handler: object) -> Response:
        if getattr(handler, "command", "") == "HEAD":  # announces 1 kB
            return Response(200, b"\0" * 1024, {"Content-Type": "video/mp4"})
        return Response(200, headers={"Content-Type": "video/mp4"}, stream=[piece] * pieces)

    state = ingest(settings, server.route("lying.mp4", lying))
    assert_failed(state, ErrorCode.LIMIT_FILESIZE)
    assert server.hits("lying.mp4", "HEAD"), "the announced size passed the check before"
    gets = _logged_gets(server, "lying.mp4", 2)  # the extractor's look, then the download
    assert any(g.bytes_sent > MB for g in gets), "the download ran up to the limit"
    assert all(0 <= g.bytes_sent < len(piece) * pieces // 2 for g in gets), "and hung up there"
    workspace = Workspace.for_job(settings.storage.workspace, state.id)
    assert not workspace.partial_dir("ingest").exists(), "nothing of it was kept"
    assert no_card(settings)


def test_hls_over_the_limit_stops_before_its_last_segments(
    server: MediaServer, plain_hls: Path, tmp_path: Path
) -> None:
    segments = sorted(plain_hls.glob("seg*.ts"))
    limit = 1.5 * segments[0].stat().st_size  # passed during the second segment
    settings = make_settings(tmp_path, ingest={"max_filesize_mb": limit / MB})
    serve_tree(server, plain_hls, "big")
    state = ingest(settings, server.url("big/index.m3u8"))
    assert_failed(state, ErrorCode.LIMIT_FILESIZE)
    fetched = [s.name for s in segments if server.hits(f"big/{s.name}")]
    assert fetched == ["seg000.ts", "seg001.ts"], "stopped in the segment that passed the limit"
    assert no_card(settings)


def test_limit_counts_video_and_audio_of_a_merge_together(
    server: MediaServer, split_hls: Path, tmp_path: Path
) -> None:
    video = sum(f.stat().st_size for f in (split_hls / "video").glob("*.ts"))
    audio_segments = sorted((split_hls / "audio").glob("*.ts"))
    limit = video + audio_segments[0].stat().st_size / 2  # each format alone is under it
    assert sum(f.stat().st_size for f in audio_segments) < limit
    settings = make_settings(tmp_path, ingest={"max_filesize_mb": limit / MB})
    serve_tree(server, split_hls, "split")
    state = ingest(settings, server.url("split/master.m3u8"))
    assert_failed(state, ErrorCode.LIMIT_FILESIZE)
    assert server.hits("split/video/seg001.ts"), "the video was fetched whole"
    assert server.hits("split/audio/seg000.ts"), "the audio download started"
    assert not server.hits("split/audio/seg001.ts"), "and stopped in its first segment"
