"""ffmpeg and ffprobe open only the one local file they are given, in a plain media container,
with frames no larger than ``media.max_pixels``.

The hostile inputs are real files: an HLS playlist, a DASH manifest and an ffconcat script saved
under a video's name, each naming a local media file that carries a secret marker in its
metadata. A control run of plain ffprobe shows that each one does read that file; Recast's
probe, its ffmpeg runs and whole jobs (a local file, a download from the test server) refuse
them, and the marker appears nowhere in what they leave.
"""

from __future__ import annotations

import io
import os
import struct
import subprocess
import warnings
import zlib
from collections.abc import Callable
from pathlib import Path

import pytest
from PIL import Image

from pipeline.core.dag import Dag
from pipeline.core.errors import ErrorCode, RecastError
from pipeline.core.job import JobSpec, JobState, JobStatus, StageStatus
from pipeline.core.mediainfo import MediaInfo, VideoInfo
from pipeline.core.settings import Settings
from pipeline.engine.local import LocalExecutor
from pipeline.stages.ingest import STAGE as INGEST
from pipeline.stages.probe import STAGE as PROBE
from pipeline.stages.probe import check_frame_size, probe_file
from pipeline.stages.thumbnails import make_thumbnails
from pipeline.tools import ffmpeg_tools
from pipeline.tools.ffmpeg_tools import Graph, Output
from pipeline.tools.images import to_jpeg
from tests.conftest import make_settings
from tests.support.httpserver import MediaServer
from tests.support.media import make_clip, run_ffmpeg

MARKER = "RECAST-SECRET-7f3a9c"
"""In the referenced file's metadata; never in its path, so only its content can leak it."""

ATTACKS: dict[str, str] = {
    # kind: what the refusal says the file is
    "hls-path": "an HLS playlist",
    "hls-file-url": "an HLS playlist",
    "hls-ffconcat": "an HLS playlist",
    "hls-image-sequence": "an HLS playlist",
    "dash": "a DASH manifest",
    "concat": "an ffconcat script",
}
CONTROL_EVIDENCE = {
    "hls-path": MARKER,
    "hls-file-url": MARKER,
    "hls-ffconcat": "list.ffconcat",
    "hls-image-sequence": "frame%03d.png",
    "dash": '"codec_name": "h264"',
    "concat": MARKER,
}
"""What plain ffprobe's output shows for each kind: the secret itself, the streams of the clip
the manifest names (the manifest names no codec), or the referenced file it went to open (the
HLS demuxer of ffmpeg 5.1 then gives up on .ffconcat and .png segments by itself)."""


@pytest.fixture(scope="module")
def secrets(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder of local files an attacker would like read: a clip whose metadata holds the
    marker, an ffconcat script naming it, an image sequence."""
    folder = tmp_path_factory.mktemp("secrets")
    make_clip(
        folder / "private.mp4",
        duration=1.0,
        size="64x36",
        title=MARKER,
        extra=("-metadata", f"comment={MARKER}", "-metadata:s:v:0", f"handler_name={MARKER}"),
    )
    (folder / "list.ffconcat").write_text("ffconcat version 1.0\nfile private.mp4\n")
    run_ffmpeg(
        "-f",
        "lavfi",
        "-i",
        "testsrc2=size=32x32:rate=10:duration=0.2",
        str(folder / "frame%03d.png"),
    )
    return folder


def _hls(entry: str) -> str:
    return f"#EXTM3U\n#EXT-X-TARGETDURATION:10\n#EXTINF:1.0,\n{entry}\n#EXT-X-ENDLIST\n"


def _dash(base_url: str) -> str:
    return (
        '<?xml version="1.0" encoding="utf-8"?>\n'
        '<MPD xmlns="urn:mpeg:dash:schema:mpd:2011" type="static" '
        'mediaPresentationDuration="PT1S" minBufferTime="PT1S" '
        'profiles="urn:mpeg:dash:profile:isoff-on-demand:2011">\n'
        ' <Period><AdaptationSet mimeType="video/mp4">\n'
        f'  <Representation id="1" bandwidth="100000"><BaseURL>{base_url}</BaseURL>'
        "</Representation>\n"
        " </AdaptationSet></Period>\n</MPD>\n"
    )


def attack_text(kind: str, secrets: Path) -> str:
    private = secrets / "private.mp4"
    return {
        "hls-path": lambda: _hls(str(private)),
        "hls-file-url": lambda: _hls(private.as_uri()),
        "hls-ffconcat": lambda: _hls(str(secrets / "list.ffconcat")),
        "hls-image-sequence": lambda: _hls(str(secrets / "frame%03d.png")),
        "dash": lambda: _dash(private.as_uri()),
        # Relative: the concat demuxer's safe mode already refuses absolute paths.
        "concat": lambda: "ffconcat version 1.0\nfile private.mp4\n",
    }[kind]()


def attack_file(kind: str, secrets: Path) -> Path:
    """The hostile file, beside the secrets (so a relative reference resolves), as ``.mp4``."""
    path = secrets / f"{kind}.mp4"
    path.write_text(attack_text(kind, secrets))
    return path


def plain_ffprobe(path: Path) -> str:
    """What ffprobe without Recast's restrictions makes of ``path`` (the control): its output
    and its messages."""
    completed = subprocess.run(
        ["ffprobe", "-v", "error", "-show_format", "-show_streams", "-of", "json", str(path)],
        capture_output=True,
        check=False,
    )
    return (completed.stdout + completed.stderr).decode("utf-8", "replace")


def assert_refused(call: Callable[[], object], kind: str) -> RecastError:
    with pytest.raises(RecastError) as caught:
        call()
    error = caught.value
    assert error.code is ErrorCode.MEDIA_INVALID, error
    assert not error.transient
    assert MARKER not in str(error)
    assert f"is {ATTACKS[kind]}, not a media container Recast accepts" in error.message, error
    return error


def files_containing(marker: str, *roots: Path) -> list[Path]:
    hits = []
    for root in roots:
        for path in root.rglob("*") if root.exists() else []:
            if path.is_file() and marker.encode() in path.read_bytes():
                hits.append(path)
    return hits


# -- the whitelist itself ------------------------------------------------------------------


def test_source_demuxers_are_real_plain_containers() -> None:
    listing = subprocess.run(
        ["ffmpeg", "-hide_banner", "-demuxers"], capture_output=True, text=True, check=True
    ).stdout
    demuxers = {line.split()[1] for line in listing.splitlines() if line.startswith(" D")}
    for name in ffmpeg_tools.SOURCE_DEMUXERS:
        assert name in demuxers, f"{name!r} is not how this ffmpeg spells a demuxer"
    allowed = set(",".join(ffmpeg_tools.SOURCE_DEMUXERS).split(","))
    forbidden = {"hls", "dash", "concat", "image2", "lavfi", "webm_dash_manifest", "srt", "ass"}
    assert not allowed & forbidden
    assert ffmpeg_tools.SOURCE_INPUT.protocols == ("file",)


def test_every_input_gets_the_source_policy_unless_it_names_one() -> None:
    args = ffmpeg_tools.with_input_policy(["-i", "a.mp4", "-i", "b.mp4", "out.mp4"])
    assert args.count("-format_whitelist") == 2
    assert args.index("-format_whitelist") < args.index("-i")
    generated = ffmpeg_tools.GENERATED_INPUT.args()
    named = [*generated, "-i", "testsrc2", "out.mp4"]
    assert ffmpeg_tools.with_input_policy(named) == named
    graph = ffmpeg_tools.graph_args(Graph(source="in.mp4", outputs=[Output("o.mp4", video=0)]))
    assert graph[graph.index("-format_whitelist") + 1] == ",".join(ffmpeg_tools.SOURCE_DEMUXERS)
    with pytest.raises(ValueError, match="InputPolicy"):
        ffmpeg_tools.graph_args(
            Graph(
                source="in.mp4",
                input_options={"format_whitelist": "hls"},
                outputs=[Output("o.mp4", video=0)],
            )
        )


# -- hostile files -------------------------------------------------------------------------


@pytest.mark.parametrize("kind", list(ATTACKS))
def test_playlists_and_manifests_are_refused_before_they_open_anything(
    secrets: Path, tmp_path: Path, kind: str
) -> None:
    hostile = attack_file(kind, secrets)
    control = plain_ffprobe(hostile)
    assert CONTROL_EVIDENCE[kind] in control, "without the whitelist ffprobe follows the file"

    assert_refused(lambda: ffmpeg_tools.probe(hostile), kind)
    assert_refused(lambda: probe_file(hostile), kind)
    target = tmp_path / "out.mp4"
    graph = Graph(source=str(hostile), outputs=[Output(str(target), {"c": "copy"}, video=0)])
    run = ffmpeg_tools.run
    assert_refused(lambda: run(ffmpeg_tools.graph_args(graph), timeout_s=30, what="x"), kind)
    copy = ffmpeg_tools.copy_args([str(hostile)], str(target))
    assert_refused(lambda: run(copy, timeout_s=30, what="x"), kind)
    by_hand = ["-i", str(hostile), "-c", "copy", str(target)]
    assert_refused(lambda: run(by_hand, timeout_s=30, what="x"), kind)
    assert not target.exists()


def test_own_outputs_have_their_own_narrow_policies(secrets: Path, tmp_path: Path) -> None:
    joined = f"concat:{secrets / 'private.mp4'}"
    target = tmp_path / "joined.mp4"
    with pytest.raises(RecastError) as refused:
        ffmpeg_tools.run(ffmpeg_tools.copy_args([joined], str(target)), timeout_s=30)
    assert refused.value.code is ErrorCode.MEDIA_INVALID
    assert not target.exists()
    own = ffmpeg_tools.copy_args([joined], str(target), policy=ffmpeg_tools.OWN_SEGMENTS_INPUT)
    ffmpeg_tools.run(own, timeout_s=30)
    assert target.stat().st_size > 0
    # An own output is an fMP4 file and nothing else: a playlist is refused there too.
    hostile = attack_file("hls-path", secrets)
    for policy in (ffmpeg_tools.OWN_OUTPUT_INPUT, ffmpeg_tools.OWN_SEGMENTS_INPUT):
        assert_refused(lambda p=policy: ffmpeg_tools.probe(hostile, policy=p), "hls-path")


def _failed_job(settings: Settings, source: str) -> JobState:
    state = LocalExecutor(settings).run(JobSpec(source=source))
    assert state.status is JobStatus.FAILED, state
    assert state.error is not None
    return state


def _assert_nothing_published_or_leaked(settings: Settings) -> None:
    out, work = Path(settings.storage.output), Path(settings.storage.workspace)
    assert list(out.rglob("card.json")) == []
    assert files_containing(MARKER, out, work) == []


@pytest.mark.parametrize("kind", ["hls-path", "hls-file-url", "dash"])
def test_a_local_playlist_fails_the_job_and_leaks_nothing(
    secrets: Path, tmp_path: Path, kind: str
) -> None:
    settings = make_settings(tmp_path)
    state = _failed_job(settings, str(attack_file(kind, secrets)))
    assert state.error is not None and state.error.code == ErrorCode.MEDIA_INVALID
    assert ATTACKS[kind] in state.error.message
    _assert_nothing_published_or_leaked(settings)


def test_a_downloaded_playlist_fails_the_job_and_leaks_nothing(
    secrets: Path, tmp_path: Path, server: MediaServer
) -> None:
    settings = make_settings(tmp_path)
    url = server.add("video.mp4", attack_text("hls-path", secrets), "video/mp4")
    state = _failed_job(settings, url)
    assert state.error is not None and state.error.code == ErrorCode.MEDIA_INVALID
    assert "is an HLS playlist, not a media container Recast accepts" in state.error.message
    assert server.hits("video.mp4"), "the playlist came through the HTTP server"
    _assert_nothing_published_or_leaked(settings)


# -- frame size ----------------------------------------------------------------------------


def huge_frame_file(path: Path, size: int = 16000) -> Path:
    """A Matroska file with one MJPEG frame that says it is ``size`` x ``size``: a 256x256
    frame whose size fields (the track's and the JPEG's, two bytes each) are rewritten: a bomb's
    shape, tiny on disk and made at once (a decoder is asked for a 16000x16000 buffer)."""
    small = path.with_suffix(".small.mkv")
    run_ffmpeg(
        *("-f", "lavfi", "-i", "color=c=gray:size=256x256:rate=10:duration=0.1"),
        *("-frames:v", "1", "-c:v", "mjpeg", "-pix_fmt", "yuvj420p", str(small)),
    )
    data = small.read_bytes()
    small.unlink()
    big = struct.pack(">H", size)
    fields = {
        b"\xb0\x82\x01\x00": b"\xb0\x82" + big,  # Matroska PixelWidth
        b"\xba\x82\x01\x00": b"\xba\x82" + big,  # Matroska PixelHeight
        b"\xff\xc0\x00\x11\x08\x01\x00\x01\x00": b"\xff\xc0\x00\x11\x08" + big + big,  # SOF0
    }
    for old, new in fields.items():
        assert data.count(old) == 1, old
        data = data.replace(old, new)
    path.write_bytes(data)
    return path


def test_a_16000x16000_source_is_refused_at_probe(tmp_path: Path) -> None:
    huge = huge_frame_file(tmp_path / "huge.mkv")
    assert huge.stat().st_size < 10_000
    with pytest.raises(RecastError) as caught:
        probe_file(huge)
    error = caught.value
    assert error.code is ErrorCode.LIMIT_PIXELS, error
    assert error.is_input_error and not error.transient
    assert "16000x16000" in error.message and "media.max_pixels" in error.message


def test_a_16000x16000_job_fails_with_the_pixel_code_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from pipeline.cli.main import main

    settings = make_settings(tmp_path)
    huge = huge_frame_file(tmp_path / "huge.mkv")
    code = main(
        [
            "process",
            str(huge),
            "--out",
            settings.storage.output,
            "--work",
            settings.storage.workspace,
        ]
    )
    assert code == 2
    assert "limit.pixels" in capsys.readouterr().err
    assert not list(Path(settings.storage.output).rglob("card.json"))


def test_the_probe_stage_is_the_gate_for_the_setting(tmp_path: Path) -> None:
    clip = make_clip(tmp_path / "talk.mp4", duration=1.0, size="320x180")
    settings = make_settings(tmp_path, media={"max_pixels": 320 * 180 - 1})
    dag = Dag.of([INGEST, PROBE])
    state = LocalExecutor(settings, dag=dag).run(JobSpec(source=str(clip)))
    assert state.status is JobStatus.FAILED
    assert state.error is not None and state.error.code == ErrorCode.LIMIT_PIXELS
    assert "320x180" in state.error.message
    assert state.stages["ingest"].status is StageStatus.DONE
    assert state.stages["probe"].status is StageStatus.FAILED


def _media_with_frame(width: int, height: int, coded: tuple[int, int] = (0, 0)) -> MediaInfo:
    video = VideoInfo(
        index=0,
        codec="h264",
        width=width,
        height=height,
        coded_width=coded[0],
        coded_height=coded[1],
    )
    return MediaInfo(container="mov,mp4,m4a,3gp,3g2,mj2", duration=1.0, video=video)


def test_the_gate_admits_exactly_the_limit() -> None:
    limit = ffmpeg_tools.DEFAULT_MAX_PIXELS
    check_frame_size(_media_with_frame(7680, 4320), limit)
    check_frame_size(_media_with_frame(4320, 7680), limit)
    for width, height, coded in [(7681, 4320, (0, 0)), (7680, 4321, (0, 0))]:
        with pytest.raises(RecastError) as caught:
            check_frame_size(_media_with_frame(width, height, coded), limit)
        assert caught.value.code is ErrorCode.LIMIT_PIXELS
    # The coded size counts: 1920x1080 is stored in 1920x1088.
    with pytest.raises(RecastError):
        check_frame_size(_media_with_frame(1920, 1080, (1920, 1088)), 1920 * 1080)
    assert ffmpeg_tools.decoder_pixel_cap(limit) > limit
    assert ffmpeg_tools.decoder_pixel_cap(10**9) < 2**31


def test_a_real_file_at_the_limit_passes_and_one_pixel_less_is_refused(tmp_path: Path) -> None:
    clip = make_clip(tmp_path / "clip.mp4", duration=1.0, size="320x180", audio=False)
    assert probe_file(clip).video is not None
    pixels = probe_file(clip).video.pixels  # type: ignore[union-attr]
    assert probe_file(clip, max_pixels=pixels).video is not None
    with pytest.raises(RecastError) as caught:
        probe_file(clip, max_pixels=pixels - 1)
    assert caught.value.code is ErrorCode.LIMIT_PIXELS


def test_decoders_refuse_frames_that_grow_after_the_part_the_probe_read(tmp_path: Path) -> None:
    """An H.264 stream that switches from 160x90 to 320x180 after two seconds: the probe sees
    the small frames and lets it through; the thumbnails' decoding reaches the larger ones,
    which the decoder cap refuses, and the stage fails with ``limit.pixels``."""
    parts = []
    for number, (size, duration) in enumerate([("160x90", 2.0), ("320x180", 0.4)]):
        part = tmp_path / f"part{number}.ts"
        run_ffmpeg(
            *("-f", "lavfi", "-i", f"testsrc2=size={size}:rate=25:duration={duration}"),
            *("-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p"),
            *("-output_ts_offset", str(2.0 * number), str(part)),
        )
        parts.append(part.read_bytes())
    grown = tmp_path / "grown.ts"
    grown.write_bytes(b"".join(parts))
    # Room for the small frames in the decoder's buffers (their width rounded up for
    # alignment: 192x90), none for the large ones.
    limit = 2 * 160 * 90
    media = probe_file(grown, max_pixels=limit)
    assert media.video is not None and (media.video.width, media.video.height) == (160, 90)
    settings = make_settings(tmp_path, media={"max_pixels": limit}).media
    with pytest.raises(RecastError) as caught:
        make_thumbnails(grown, media, tmp_path / "thumbs", settings)
    assert caught.value.code is ErrorCode.LIMIT_PIXELS, caught.value
    assert "320x180" in caught.value.message
    # The control: the same decode with room for the larger frames goes through.
    roomy = Graph(
        source=str(grown),
        input_policy=ffmpeg_tools.source_input(320 * 180),
        outputs=[Output("-", {"f": "null"}, video=0)],
    )
    ffmpeg_tools.run(ffmpeg_tools.graph_args(roomy), timeout_s=60)


# -- a source's thumbnail ------------------------------------------------------------------


def png_header_only(width: int, height: int) -> bytes:
    """A PNG that declares ``width`` x ``height`` and holds one row: a decompression bomb's
    shape at a few hundred bytes."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = zlib.crc32(kind + body)
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    row = zlib.compress(b"\x00" * (3 * width + 1))
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", row) + chunk(b"IEND", b"")


@pytest.mark.parametrize("side", [8000, 10_000, 20_000, 60_000])
def test_a_huge_thumbnail_is_no_thumbnail(tmp_path: Path, side: int) -> None:
    target = tmp_path / "thumbnail.jpg"
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)  # nor may it escape
        assert to_jpeg(png_header_only(side, side), target) is False
    assert not target.exists()


def test_a_normal_thumbnail_converts_and_other_formats_do_not(tmp_path: Path) -> None:
    target = tmp_path / "thumbnail.jpg"
    for fmt in ("PNG", "WEBP", "JPEG"):
        buffer = io.BytesIO()
        Image.new("RGB", (64, 36), (200, 30, 30)).save(buffer, fmt)
        assert to_jpeg(buffer.getvalue(), target), fmt
        with Image.open(target) as written:
            assert (written.format, written.size) == ("JPEG", (64, 36))
        os.unlink(target)
    tiff = io.BytesIO()
    Image.new("RGB", (64, 36)).save(tiff, "TIFF")
    assert to_jpeg(tiff.getvalue(), target) is False
    assert not target.exists()
