"""The transcode and playable stages on real (tiny) media, every claim checked with ffprobe or
by decoding: rendition sizes and rates, aligned keyframes, segment boundaries, a master
playlist that matches its files, loudness, the progressive MP4, odd sources, and a kill in the
middle of the encode followed by a re-run.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest

from pipeline.core.dag import Dag
from pipeline.core.errors import ErrorCode, RecastError
from pipeline.core.job import JobSpec, JobStatus, StageStatus
from pipeline.core.mediainfo import MediaInfo
from pipeline.core.settings import Settings
from pipeline.core.stage import AssetRole, OutputAsset
from pipeline.core.workspace import Workspace
from pipeline.engine.local import LocalExecutor
from pipeline.stages.ingest import STAGE as INGEST
from pipeline.stages.playable import STAGE as PLAYABLE
from pipeline.stages.playable import copy_to_hls, why_not_playable
from pipeline.stages.probe import STAGE as PROBE
from pipeline.stages.probe import probe_file
from pipeline.stages.transcode import STAGE as TRANSCODE
from pipeline.stages.transcode import transcode
from tests.conftest import make_settings

pytestmark = pytest.mark.slow  # end to end with real tools: not in the fast set

HDR10 = ("-pix_fmt", "yuv420p10le", "-color_trc", "smpte2084", "-color_primaries", "bt2020")
VP9 = ("-c:v", "libvpx-vp9", "-deadline", "realtime", "-cpu-used", "8")
TINY_LADDER = [
    {"height": 180, "bitrate_kbps": 300, "peak_kbps": 450},
    {"height": 90, "bitrate_kbps": 120, "peak_kbps": 180},
]


def media_settings(tmp_path: Path, **media: Any) -> Settings:
    return make_settings(tmp_path, media={"ladder": TINY_LADDER, **media})


def ffmpeg(*args: str) -> None:
    subprocess.run(["ffmpeg", "-hide_banner", "-loglevel", "error", "-y", *args], check=True)


def ffprobe(*args: str) -> dict[str, Any]:
    done = subprocess.run(
        ["ffprobe", "-v", "error", "-of", "json", *args], capture_output=True, check=True
    )
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def make_source(
    path: Path,
    *,
    size: str = "320x180",
    duration: float = 4.0,
    rate: str = "25",
    audio: str | None = "anoisesrc=color=pink:amplitude=0.03:sample_rate=44100",
    video: bool = True,
    vfilter: str = "",
    extra: tuple[str, ...] = (),
    rotate: int = 0,
) -> Path:
    """A clip of a moving test pattern and (quiet pink noise) audio, as the tests need it;
    ``rotate`` sets a display matrix (as phones do) on a stream copy."""
    args: list[str] = []
    if video:
        args += ["-f", "lavfi", "-i", f"testsrc2=size={size}:rate={rate}:duration={duration}"]
    if audio:
        args += ["-f", "lavfi", "-t", str(duration), "-i", audio]
    if video:
        if vfilter:
            args += ["-vf", vfilter]
        args += ["-c:v", "libx264", "-preset", "ultrafast", "-g", "50"]
        if "-pix_fmt" not in extra:
            args += ["-pix_fmt", "yuv420p"]
    if audio:
        args += ["-c:a", "aac", "-b:a", "96k"]
    ffmpeg(*args, *extra, str(path))
    if rotate:
        upright = path.with_suffix(f".upright{path.suffix}")
        path.rename(upright)
        ffmpeg("-i", str(upright), "-c", "copy", "-metadata:s:v:0", f"rotate={rotate}", str(path))
        upright.unlink()
    return path


def video_stream(target: str | Path) -> dict[str, Any]:
    data = ffprobe("-select_streams", "v:0", "-show_streams", str(target))
    stream: dict[str, Any] = data["streams"][0]
    return stream


def joined(files: list[Path], target: Path) -> Path:
    target.write_bytes(b"".join(f.read_bytes() for f in files))
    return target


def playlist_entries(playlist: Path) -> tuple[int, str, list[tuple[float, str]]]:
    text = playlist.read_text()
    target = int(re.search(r"#EXT-X-TARGETDURATION:(\d+)", text).group(1))  # type: ignore[union-attr]
    init = re.search(r'#EXT-X-MAP:URI="([^"]+)"', text).group(1)  # type: ignore[union-attr]
    segments = [(float(d), uri) for d, uri in re.findall(r"#EXTINF:([0-9.]+),?\s*\n(\S+)", text)]
    return target, init, segments


def packets(path: Path, stream: str = "v:0") -> list[tuple[float, bool]]:
    data = ffprobe("-select_streams", stream, "-show_entries", "packet=pts_time,flags", str(path))
    return [(float(p["pts_time"]), "K" in p["flags"]) for p in data["packets"]]


def master_variants(master: Path) -> list[tuple[dict[str, str], str]]:
    lines = master.read_text().splitlines()
    variants = []
    for number, line in enumerate(lines):
        if line.startswith("#EXT-X-STREAM-INF:"):
            attrs = dict(re.findall(r'([A-Z-]+)=("[^"]*"|[^,]*)', line.split(":", 1)[1]))
            variants.append(({k: v.strip('"') for k, v in attrs.items()}, lines[number + 1]))
    return variants


def loudness(path: Path) -> tuple[float, float]:
    """Integrated loudness (LUFS) and true peak (dBTP) measured by ffmpeg's ebur128 filter."""
    command = ["ffmpeg", "-hide_banner", "-nostats", "-i", str(path), "-map", "0:a:0"]
    done = subprocess.run(
        [*command, "-af", "ebur128=peak=true", "-f", "null", "-"],
        capture_output=True,
        text=True,
        check=True,
    )
    summary = done.stderr[done.stderr.rindex("Summary:") :]
    integrated = float(re.search(r"I:\s+(-?[0-9.]+) LUFS", summary).group(1))  # type: ignore[union-attr]
    peak = float(re.search(r"Peak:\s+(-?[0-9.inf]+) dBFS", summary).group(1))  # type: ignore[union-attr]
    return integrated, peak


def decode_errors(target: Path) -> str:
    done = subprocess.run(
        ["ffmpeg", "-v", "error", "-i", str(target), "-map", "0", "-f", "null", "-"],
        capture_output=True,
        text=True,
        check=False,
    )
    return done.stderr.strip() if done.returncode == 0 else f"exit {done.returncode}"


def run_transcode(
    source: Path, out: Path, settings: Settings
) -> tuple[MediaInfo, list[OutputAsset], dict[str, Any]]:
    media = probe_file(source)
    assets, data = transcode(source, media, out, settings.media, None)
    return media, assets, data


def rung_sizes(out: Path) -> dict[str, tuple[int, int, str]]:
    found = {}
    for playlist in sorted((out / "hls").glob("*p/index.m3u8")):
        stream = video_stream(playlist)
        found[playlist.parent.name] = (
            stream["width"],
            stream["height"],
            stream["sample_aspect_ratio"],
        )
    return found


# -- the 16:9 ladder, examined in detail ------------------------------------------------


@pytest.fixture(scope="module")
def ladder(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A 14 s 16:9 source with quiet audio, through the transcode with default segments,
    keyframe interval and preset, and a two-rung ladder."""
    root = tmp_path_factory.mktemp("ladder")
    source = make_source(root / "source.mp4", duration=14)
    out = root / "out"
    out.mkdir()
    settings = media_settings(root)
    media, assets, data = run_transcode(source, out, settings)
    return {"out": out, "media": media, "assets": assets, "data": data, "settings": settings}


def test_16x9_rendition_sizes_and_rates(ladder: dict[str, Any]) -> None:
    out = ladder["out"]
    assert rung_sizes(out) == {"180p": (320, 180, "1:1"), "90p": (160, 90, "1:1")}
    for rung in ("180p", "90p"):
        stream = video_stream(out / "hls" / rung / "index.m3u8")
        assert stream["codec_name"] == "h264" and stream["profile"] == "High"
        assert stream["pix_fmt"] == "yuv420p"
        assert Fraction(stream["r_frame_rate"]) == 25


def test_keyframes_are_aligned_and_segments_start_with_one(
    ladder: dict[str, Any], tmp_path: Path
) -> None:
    out = ladder["out"]
    keyframe_times = {}
    for rung in ("180p", "90p"):
        directory = out / "hls" / rung
        target, init, segments = playlist_entries(directory / "index.m3u8")
        assert target == 6
        assert [d for d, _ in segments][:-1] == [6.0, 6.0], "6 s segments up to the last"
        starts = []
        for duration, uri in segments:
            assert duration <= 6.0 + 1e-6
            piece = packets(joined([directory / init, directory / uri], tmp_path / "piece.mp4"))
            first = min(piece, key=lambda p: p[0])
            assert first[1], f"{rung}/{uri} does not start with a keyframe"
            starts.append(first[0])
            span = max(p[0] for p in piece) + 1 / 25 - first[0]
            assert span <= 6.0 + 1e-3, f"{rung}/{uri} lasts {span:.3f} s"
        whole = joined(
            [directory / init] + [directory / uri for _, uri in segments], tmp_path / "all.mp4"
        )
        frames = packets(whole)
        first = min(t for t, _ in frames)
        keys = sorted(t for t, key in frames if key)
        keyframe_times[rung] = keys
        assert starts == sorted(starts) and all(s in keys for s in starts)
        relative = [k - first for k in keys]
        assert relative == pytest.approx([0, 2, 4, 6, 8, 10, 12], abs=0.001), "every 2 s only"
    assert keyframe_times["180p"] == keyframe_times["90p"]


def test_master_playlist_matches_the_files(ladder: dict[str, Any]) -> None:
    hls = ladder["out"] / "hls"
    master = (hls / "master.m3u8").read_text()
    assert "#EXT-X-INDEPENDENT-SEGMENTS" in master
    assert re.search(r'#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID="audio".*URI="audio/index.m3u8"', master)
    _, _, audio_segments = playlist_entries(hls / "audio" / "index.m3u8")
    audio_rates = [(hls / "audio" / u).stat().st_size * 8 / d for d, u in audio_segments]
    audio_bits = sum((hls / "audio" / u).stat().st_size * 8 for _, u in audio_segments)
    variants = master_variants(hls / "master.m3u8")
    assert [uri for _, uri in variants] == ["180p/index.m3u8", "90p/index.m3u8"]
    for attrs, uri in variants:
        directory = hls / uri.split("/")[0]
        _, _, segments = playlist_entries(hls / uri)
        rates = [(directory / u).stat().st_size * 8 / d for d, u in segments]
        combined_peak = max(v + a for v, a in zip(rates, audio_rates, strict=False))
        bits = sum((directory / u).stat().st_size * 8 for _, u in segments) + audio_bits
        average = bits / sum(d for d, _ in segments)
        assert int(attrs["BANDWIDTH"]) >= combined_peak
        assert int(attrs["BANDWIDTH"]) <= 1.1 * (max(rates) + max(audio_rates))
        assert int(attrs["AVERAGE-BANDWIDTH"]) == pytest.approx(average, rel=0.1)
        stream = video_stream(hls / uri)
        assert attrs["RESOLUTION"] == f"{stream['width']}x{stream['height']}"
        assert float(attrs["FRAME-RATE"]) == pytest.approx(float(Fraction(stream["r_frame_rate"])))
        video_codec, audio_codec = attrs["CODECS"].split(",")
        assert video_codec.startswith("avc1.64"), "High profile"
        assert int(video_codec[-2:], 16) == stream["level"]
        assert audio_codec == "mp4a.40.2"
        assert attrs["AUDIO"] == "audio"


def test_hls_decodes_from_the_master_and_lasts_as_long_as_the_source(
    ladder: dict[str, Any],
) -> None:
    hls = ladder["out"] / "hls"
    assert decode_errors(hls / "master.m3u8") == ""
    source_duration = ladder["media"].duration
    for rung in ("180p", "90p"):
        _, _, segments = playlist_entries(hls / rung / "index.m3u8")
        data = ffprobe(
            "-count_frames",
            "-select_streams",
            "v:0",
            "-show_entries",
            "stream=nb_read_frames",
            str(hls / rung / "index.m3u8"),
        )
        decoded = int(data["streams"][0]["nb_read_frames"]) / 25
        assert abs(decoded - source_duration) <= len(segments) / 25, rung
    _, _, audio_segments = playlist_entries(hls / "audio" / "index.m3u8")
    assert sum(d for d, _ in audio_segments) == pytest.approx(source_duration, abs=0.05)


def test_loudness_is_normalised(ladder: dict[str, Any]) -> None:
    out = ladder["out"]
    source_lufs = ladder["data"]["loudness_source_lufs"]
    assert source_lufs < -25, "the source is quiet, so normalising has work to do"
    for target in (out / "mp4" / "audio.m4a", out / "mp4" / "180p.mp4"):
        integrated, peak = loudness(target)
        assert integrated == pytest.approx(-16.0, abs=1.0), target.name
        assert peak <= -0.5, target.name


def test_progressive_mp4_and_audio(ladder: dict[str, Any]) -> None:
    out = ladder["out"]
    mp4 = out / "mp4" / "180p.mp4"
    head = mp4.read_bytes()[:4096]
    assert 0 <= head.find(b"moov") < 200, "faststart: moov before the media data"
    data = ffprobe("-show_streams", "-show_format", str(mp4))
    kinds = {s["codec_type"]: s for s in data["streams"]}
    assert kinds["video"]["width"] == 320 and kinds["video"]["height"] == 180
    assert kinds["audio"]["codec_name"] == "aac" and kinds["audio"]["channels"] == 2
    assert float(data["format"]["duration"]) == pytest.approx(14.0, abs=0.1)
    audio = ffprobe("-show_streams", str(out / "mp4" / "audio.m4a"))["streams"]
    assert [s["codec_type"] for s in audio] == ["audio"]
    assert audio[0]["sample_rate"] == "48000"
    assert decode_errors(mp4) == ""


def test_every_file_is_an_asset_with_its_role(ladder: dict[str, Any]) -> None:
    out: Path = ladder["out"]
    assets: list[OutputAsset] = ladder["assets"]
    files = {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()}
    assert {a.file for a in assets} == files
    by_key = {a.key: a for a in assets}
    assert by_key["hls/master.m3u8"].role is AssetRole.HLS_MASTER
    assert by_key["hls/180p/init.mp4"].role is AssetRole.HLS_MEDIA
    assert by_key["hls/audio/seg_00000.m4s"].role is AssetRole.HLS_MEDIA
    assert by_key["hls/180p/index.m3u8"].width == 320
    mp4 = by_key["mp4/180p.mp4"]
    assert mp4.role is AssetRole.MP4 and (mp4.width, mp4.height) == (320, 180)
    assert mp4.duration == pytest.approx(14.0, abs=0.1) and mp4.bitrate
    assert by_key["mp4/audio.m4a"].role is AssetRole.AUDIO


# -- odd sources -------------------------------------------------------------------------


WITH_120 = [*TINY_LADDER, {"height": 120, "bitrate_kbps": 200, "peak_kbps": 300}]


@pytest.mark.parametrize(
    ("name", "kwargs", "ladder", "expected"),
    [
        (
            "vertical 9:16",
            {"size": "180x320"},
            TINY_LADDER,
            {"180p": (180, 320, "1:1"), "90p": (90, 160, "1:1")},
        ),
        (
            "4:3 with non-square pixels",
            {"size": "180x120", "vfilter": "setsar=8/9"},
            WITH_120,
            {"120p": (160, 120, "1:1"), "90p": (120, 90, "1:1")},
        ),
        (
            "rotated phone video",
            {"rotate": 90},
            TINY_LADDER,
            {"180p": (180, 320, "1:1"), "90p": (90, 160, "1:1")},
        ),
        (
            "odd size",
            {"vfilter": "scale=359:203,setsar=1", "extra": ("-pix_fmt", "yuv444p")},
            TINY_LADDER,
            {"180p": (318, 180, "1:1"), "90p": (160, 90, "1:1")},
        ),
        ("never upscaled", {"size": "160x90"}, TINY_LADDER, {"90p": (160, 90, "1:1")}),
        ("smaller than every rung", {"size": "128x72"}, TINY_LADDER, {"72p": (128, 72, "1:1")}),
    ],
)
def test_rendition_sizes_for_odd_shapes(
    tmp_path: Path,
    name: str,
    kwargs: dict[str, Any],
    ladder: list[dict[str, int]],
    expected: dict[str, tuple[int, int, str]],
) -> None:
    source = make_source(tmp_path / "source.mp4", duration=2, audio=None, **kwargs)
    out = tmp_path / "out"
    run_transcode(source, out, media_settings(tmp_path, ladder=ladder))
    assert rung_sizes(out) == expected, name
    for rung in expected:
        stream = video_stream(out / "hls" / rung / "index.m3u8")
        rotation = [s.get("rotation", 0) for s in stream.get("side_data_list", [])]
        assert not any(rotation), "frames are turned upright, no display matrix left"
    assert decode_errors(out / "hls" / "master.m3u8") == ""


@pytest.mark.parametrize(
    ("name", "kwargs", "rate"),
    [
        (
            "variable frame rate",
            {"vfilter": "select='not(between(n,10,20))'", "extra": ("-fps_mode", "vfr")},
            25,
        ),
        (
            "interlaced",
            {"extra": ("-flags", "+ildct+ilme", "-x264-params", "interlaced=1:tff=1")},
            25,
        ),
        ("10-bit", {"extra": ("-pix_fmt", "yuv420p10le", "-profile:v", "high10")}, 25),
        ("50 fps capped at 30", {"rate": "50"}, 25),
        (
            "HDR10",
            {"extra": HDR10},
            25,
        ),
    ],
)
def test_awkward_sources_give_standard_output(
    tmp_path: Path, name: str, kwargs: dict[str, Any], rate: int
) -> None:
    source = make_source(tmp_path / "source.mp4", duration=2, audio=None, **kwargs)
    media = probe_file(source)
    assert media.video is not None
    if name == "interlaced":
        assert media.video.interlaced
    if name in ("10-bit", "HDR10"):
        assert media.video.bit_depth == 10
    assert media.video.hdr == (name == "HDR10")
    if name == "variable frame rate":
        assert media.video.variable_frame_rate
    out = tmp_path / "out"
    settings = media_settings(tmp_path, max_frame_rate=30.0)
    run_transcode(source, out, settings)
    for rung in ("180p", "90p"):
        stream = video_stream(out / "hls" / rung / "index.m3u8")
        assert stream["pix_fmt"] == "yuv420p" and stream["profile"] == "High", name
        assert stream.get("field_order", "progressive") in ("progressive", "unknown"), name
        assert Fraction(stream["r_frame_rate"]) == rate, name
        assert stream.get("color_transfer", "bt709") not in ("smpte2084", "arib-std-b67"), name
        times = sorted(t for t, _ in packets(out / "hls" / rung / "index.m3u8"))
        gaps = [b - a for a, b in itertools.pairwise(times)]
        assert gaps == pytest.approx([1 / rate] * len(gaps), abs=1e-3), "constant frame rate"
    assert decode_errors(out / "hls" / "master.m3u8") == ""


def test_source_without_audio_gets_a_video_only_ladder(tmp_path: Path) -> None:
    source = make_source(tmp_path / "silent.mp4", duration=2, audio=None)
    out = tmp_path / "out"
    _, assets, data = run_transcode(source, out, media_settings(tmp_path))
    master = (out / "hls" / "master.m3u8").read_text()
    assert "EXT-X-MEDIA" not in master and "AUDIO=" not in master and "mp4a" not in master
    assert not (out / "hls" / "audio").exists() and not (out / "mp4" / "audio.m4a").exists()
    assert AssetRole.AUDIO not in {a.role for a in assets}
    streams = ffprobe("-show_streams", str(out / "mp4" / "180p.mp4"))["streams"]
    assert [s["codec_type"] for s in streams] == ["video"]
    assert data["audio"] is False
    assert decode_errors(out / "hls" / "master.m3u8") == ""


def test_digital_silence_is_encoded_without_normalising(tmp_path: Path) -> None:
    source = make_source(tmp_path / "silence.mp4", duration=2, audio="anullsrc=r=48000:cl=stereo")
    out = tmp_path / "out"
    _, _, data = run_transcode(source, out, media_settings(tmp_path))
    assert "loudness_source_lufs" not in data, "nothing to measure, nothing amplified"
    assert (out / "mp4" / "audio.m4a").is_file()
    assert decode_errors(out / "hls" / "master.m3u8") == ""


def test_audio_only_source_gets_audio_renditions(tmp_path: Path) -> None:
    loud = "aevalsrc=0.8*sin(2*PI*220*t)|0.7*sin(2*PI*330*t):s=44100"
    source = make_source(tmp_path / "talk.m4a", duration=5, video=False, audio=loud)
    out = tmp_path / "out"
    media, assets, data = run_transcode(source, out, media_settings(tmp_path))
    assert not media.has_video and data["renditions"] == []
    variants = master_variants(out / "hls" / "master.m3u8")
    assert [(v["CODECS"], uri) for v, uri in variants] == [("mp4a.40.2", "audio/index.m3u8")]
    assert "RESOLUTION" not in variants[0][0]
    roles = {a.key: a.role for a in assets}
    assert roles["mp4/audio.m4a"] is AssetRole.AUDIO
    assert AssetRole.MP4 not in roles.values()
    assert data["loudness_source_lufs"] > -14, "a loud source, turned down"
    integrated, _ = loudness(out / "mp4" / "audio.m4a")
    assert integrated == pytest.approx(-16.0, abs=1.0)
    assert decode_errors(out / "hls" / "master.m3u8") == ""


# -- the first playable stream -----------------------------------------------------------


@pytest.mark.parametrize("container", ["mp4", "ts"])
def test_stream_copy_is_playable_hls(tmp_path: Path, container: str) -> None:
    source = make_source(tmp_path / f"source.{container}", duration=5)
    settings = media_settings(tmp_path)
    media = probe_file(source)
    assert why_not_playable(media) is None
    out = tmp_path / "out"
    assets = copy_to_hls(source, media, out, settings.media, None)
    master = out / "hls-copy" / "master.m3u8"
    assert assets[0].key == "hls-copy/master.m3u8" and assets[0].role is AssetRole.HLS_MASTER
    assert all(a.extra.get("provisional") for a in assets)
    assert {a.file for a in assets} == {
        p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()
    }
    ((attrs, uri),) = master_variants(master)
    assert attrs["RESOLUTION"] == "320x180" and attrs["CODECS"].endswith(",mp4a.40.2")
    copied = packets(out / "hls-copy" / uri)
    original = packets(source)
    assert len(copied) == len(original), "every packet copied, none re-encoded"
    assert decode_errors(master) == ""


def test_only_h264_with_aac_or_silence_is_copied(tmp_path: Path) -> None:
    silent = make_source(tmp_path / "silent.mp4", duration=1, audio=None)
    assert why_not_playable(probe_file(silent)) is None
    mp3 = make_source(tmp_path / "mp3.mkv", duration=1, extra=("-c:a", "libmp3lame"))
    assert "not AAC" in (why_not_playable(probe_file(mp3)) or "")
    vp9 = make_source(tmp_path / "vp9.webm", duration=1, audio=None, extra=VP9)
    assert "not H.264" in (why_not_playable(probe_file(vp9)) or "")


# -- through the executor: stages, skips, kill and re-run ----------------------------------


def media_dag() -> Dag:
    return Dag.of([INGEST, PROBE, PLAYABLE, TRANSCODE])


def test_stages_run_in_the_dag_and_playable_skips_what_it_cannot_copy(tmp_path: Path) -> None:
    source = make_source(tmp_path / "source.mkv", duration=2, audio=None, extra=VP9)
    settings = media_settings(tmp_path)
    state = LocalExecutor(settings, dag=media_dag()).run(JobSpec(source=str(source)))
    assert state.status is JobStatus.SUCCEEDED, state.error
    assert state.stages["playable"].status is StageStatus.SKIPPED
    assert state.stages["transcode"].status is StageStatus.DONE
    workspace = Workspace.for_job(settings.storage.workspace, state.id)
    assert decode_errors(workspace.stage_dir("transcode") / "hls" / "master.m3u8") == ""


def ffmpeg_pids_under(directory: Path) -> list[int]:
    """ffmpeg processes this test's job started (their command line names its workspace)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            command = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if (
            command
            and command[0].endswith(b"ffmpeg")
            and str(directory).encode() in b" ".join(command)
        ):
            pids.append(int(entry.name))
    return pids


@pytest.fixture
def killer() -> Iterator[list[threading.Thread]]:
    threads: list[threading.Thread] = []
    yield threads
    for thread in threads:
        thread.join(timeout=30)


def test_killing_ffmpeg_mid_encode_then_rerunning_finishes_with_valid_output(
    tmp_path: Path, killer: list[threading.Thread]
) -> None:
    source = make_source(tmp_path / "source.mp4", size="480x270", duration=20)
    settings = media_settings(
        tmp_path, ladder=[{"height": 270, "bitrate_kbps": 500, "peak_kbps": 750}, *TINY_LADDER]
    )
    workspace_root = Path(settings.storage.workspace).resolve()
    killed: list[int] = []

    def kill_when_half_written() -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not killed:
            if any(True for _ in workspace_root.glob("*/.transcode.partial/hls/270p/seg_*.m4s")):
                for pid in ffmpeg_pids_under(workspace_root):
                    os.kill(pid, signal.SIGKILL)
                    killed.append(pid)
            time.sleep(0.02)

    killer.append(threading.Thread(target=kill_when_half_written, daemon=True))
    killer[0].start()
    spec = JobSpec(source=str(source))
    first = LocalExecutor(settings, dag=media_dag()).run(spec)
    killer[0].join(timeout=30)
    assert killed, "the encode was killed"
    assert first.status is JobStatus.FAILED
    assert first.error is not None and first.error.code == ErrorCode.STAGE_INTERRUPTED
    assert first.error.transient
    workspace = Workspace.for_job(settings.storage.workspace, first.id)
    assert not workspace.stage_dir("transcode").exists(), "no half-written rendition survives"

    second = LocalExecutor(settings, dag=media_dag()).run(spec)
    assert second.status is JobStatus.SUCCEEDED, second.error
    assert second.stages["probe"].reused, "not run again"
    out = workspace.stage_dir("transcode")
    assert not workspace.partial_dir("transcode").exists()
    assert decode_errors(out / "hls" / "master.m3u8") == ""
    for rung in ("270p", "180p", "90p"):
        _, _, segments = playlist_entries(out / "hls" / rung / "index.m3u8")
        assert sum(d for d, _ in segments) == pytest.approx(20.0, abs=0.05), rung
    mp4 = ffprobe("-show_format", str(out / "mp4" / "270p.mp4"))
    assert float(mp4["format"]["duration"]) == pytest.approx(20.0, abs=0.15)


class SlowPipe:
    """A named pipe serving the first bytes of a file, then nothing: ffmpeg waits forever."""

    def __init__(self, source: Path, path: Path):
        self.path = path
        os.mkfifo(path)
        self.data = source.read_bytes()[:65536]
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while not self.stop.is_set():
            try:
                with self.path.open("wb") as pipe:
                    pipe.write(self.data)
                    pipe.flush()
                    self.stop.wait(30)
            except OSError:
                continue

    def close(self) -> None:
        self.stop.set()
        try:  # unblock a writer still waiting for a reader
            fd = os.open(self.path, os.O_RDONLY | os.O_NONBLOCK)
            os.close(fd)
        except OSError:
            pass
        self.thread.join(timeout=5)


@pytest.mark.parametrize(
    ("overrides", "code"),
    [
        ({"stall_timeout_s": 1.0}, ErrorCode.STAGE_STALLED),
        ({"timeout_base_s": 1.0, "timeout_factor": 0.001}, ErrorCode.STAGE_TIMEOUT),
    ],
)
def test_watchdog_stops_a_stuck_ffmpeg_as_a_transient_failure(
    tmp_path: Path, overrides: dict[str, float], code: ErrorCode
) -> None:
    source = make_source(tmp_path / "source.mp4", duration=10)
    settings = media_settings(tmp_path, **overrides)
    media = probe_file(source)
    pipe = SlowPipe(source, tmp_path / "stuck.mp4")
    started = time.monotonic()
    try:
        with pytest.raises(RecastError) as failure:
            transcode(pipe.path, media, tmp_path / "out", settings.media, None)
    finally:
        pipe.close()
    assert failure.value.code is code and failure.value.transient
    assert time.monotonic() - started < 15
