"""The probe stage: ffprobe's view of real files as a typed MediaInfo, and the files it refuses
(unreadable, corrupt, truncated, without video or audio) with ``media.invalid``."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pipeline.core.dag import Dag
from pipeline.core.errors import ErrorCode, RecastError
from pipeline.core.job import JobSpec, JobStatus, StageStatus
from pipeline.core.readers import read_media_info
from pipeline.core.workspace import Workspace
from pipeline.engine.local import LocalExecutor
from pipeline.stages.ingest import STAGE as INGEST
from pipeline.stages.probe import STAGE as PROBE
from pipeline.stages.probe import probe_file
from tests.conftest import make_settings
from tests.test_transcode import ffmpeg, make_source


def test_describes_video_audio_and_subtitles(tmp_path: Path) -> None:
    clip = make_source(tmp_path / "clip.mp4", duration=3, rate="30000/1001")
    subtitles = tmp_path / "en.srt"
    subtitles.write_text("1\n00:00:00,000 --> 00:00:01,000\nHello\n")
    source = tmp_path / "with-subs.mp4"
    ffmpeg(
        "-i", str(clip), "-i", str(subtitles), "-map", "0", "-map", "1", "-c", "copy",
        "-c:s", "mov_text", "-metadata:s:s:0", "language=eng", str(source),
    )  # fmt: skip
    media = probe_file(source)
    assert media.container.startswith("mov,mp4")
    assert media.duration == pytest.approx(3.0, abs=0.1)
    assert media.bit_rate and media.size == source.stat().st_size
    video = media.video
    assert video is not None
    assert (video.codec, video.width, video.height, video.sar) == ("h264", 320, 180, "1:1")
    assert video.frame_rate == "30000/1001" and video.fps == pytest.approx(29.97, abs=0.01)
    assert not video.variable_frame_rate and not video.interlaced and not video.hdr
    assert (video.pix_fmt, video.bit_depth, video.rotation) == ("yuv420p", 8, 0)
    assert video.display_size == (320, 180) and video.display_aspect == "16:9"
    audio = media.audio
    assert audio is not None
    assert (audio.codec, audio.profile, audio.channels, audio.sample_rate) == (
        "aac",
        "LC",
        1,
        44100,
    )
    assert audio.channel_layout == "mono"
    assert [(s.codec, s.language) for s in media.subtitles] == [("mov_text", "eng")]


def test_rotation_pixel_aspect_and_hdr(tmp_path: Path) -> None:
    rotated = probe_file(make_source(tmp_path / "r.mp4", duration=1, rotate=90))
    assert rotated.video is not None and rotated.video.rotation in (90, 270)
    assert rotated.video.display_size == (180, 320)
    dvd = make_source(tmp_path / "d.mp4", duration=1, size="180x120", vfilter="setsar=8/9")
    video = probe_file(dvd).video
    assert video is not None and video.sar == "8:9" and video.display_size == (160, 120)
    hdr = make_source(
        tmp_path / "hdr.mp4",
        duration=1,
        audio=None,
        extra=("-pix_fmt", "yuv420p10le", "-color_trc", "smpte2084", "-color_primaries", "bt2020"),
    )
    video = probe_file(hdr).video
    assert video is not None and video.hdr and video.bit_depth == 10


def test_cover_art_is_not_video(tmp_path: Path) -> None:
    cover = tmp_path / "cover.png"
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=64x64:duration=1", "-frames:v", "1", str(cover))
    podcast = tmp_path / "episode.mp3"
    ffmpeg(
        "-f", "lavfi", "-t", "2", "-i", "sine=frequency=300", "-i", str(cover),
        "-map", "0", "-map", "1", "-c:a", "libmp3lame", "-c:v", "png",
        "-disposition:v", "attached_pic", str(podcast),
    )  # fmt: skip
    media = probe_file(podcast)
    assert media.video is None and media.audio is not None
    assert media.audio.codec == "mp3"


def corrupt_files(tmp_path: Path) -> dict[str, Path]:
    clip = make_source(tmp_path / "clip.mp4", duration=4)
    data = clip.read_bytes()
    moov = data.find(b"moov")
    files = {
        "empty": b"",
        "random bytes": os.urandom(50_000),
        "text": b"this is not a video\n" * 100,
        "mangled header": data[: moov - 4] + os.urandom(2000) + data[moov + 1996 :],
        "truncated, index at the end": data[: len(data) // 2],
    }
    faststart = tmp_path / "faststart.mp4"
    ffmpeg("-i", str(clip), "-c", "copy", "-movflags", "+faststart", str(faststart))
    files["truncated, index first"] = faststart.read_bytes()[: len(data) // 2]
    paths = {}
    for name, content in files.items():
        path = tmp_path / f"{name.replace(' ', '-').replace(',', '')}.mp4"
        path.write_bytes(content)
        paths[name] = path
    subtitles = tmp_path / "only-subtitles.srt"
    subtitles.write_text("1\n00:00:00,000 --> 00:00:01,000\nHello\n")
    paths["no video or audio"] = subtitles
    still = tmp_path / "still.png"
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=64x64:duration=1", "-frames:v", "1", str(still))
    paths["still image"] = still
    return paths


def test_unusable_files_fail_with_media_invalid(tmp_path: Path) -> None:
    for name, path in corrupt_files(tmp_path).items():
        with pytest.raises(RecastError) as failure:
            probe_file(path)
        assert failure.value.code is ErrorCode.MEDIA_INVALID, name
        assert not failure.value.transient, name


def probe_dag() -> Dag:
    return Dag.of([INGEST, PROBE])


def test_probe_stage_writes_media_json(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    source = make_source(tmp_path / "talk.mp4", duration=2)
    state = LocalExecutor(settings, dag=probe_dag()).run(JobSpec(source=str(source)))
    assert state.status is JobStatus.SUCCEEDED, state.error
    workspace = Workspace.for_job(settings.storage.workspace, state.id)
    media = read_media_info(workspace.stage_dir("probe"))
    assert media.has_video and media.has_audio
    assert state.stages["probe"].detail.startswith("2.0 s")


def test_truncated_download_fails_the_job_without_a_traceback(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    truncated = corrupt_files(tmp_path)["truncated, index first"]
    state = LocalExecutor(settings, dag=probe_dag()).run(JobSpec(source=str(truncated)))
    assert state.status is JobStatus.FAILED
    assert state.error is not None and state.error.code == ErrorCode.MEDIA_INVALID
    assert "truncated" in state.error.message
    assert state.stages["probe"].status is StageStatus.FAILED
