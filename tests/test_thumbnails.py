"""The thumbnails stage on real media: a poster from the content (not the black opening, the
blurred part or the fade-out), srcset sizes, the square crop, the placeholder, a storyboard
whose cues cover the duration, the hover preview, and the audio-only waveform poster.
Every image and clip is decoded."""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

import blurhash
import numpy as np
import pytest
from PIL import Image

from pipeline.core.dag import Dag
from pipeline.core.job import JobSpec, JobStatus
from pipeline.core.settings import ThumbnailSettings
from pipeline.core.stage import AssetRole, OutputAsset
from pipeline.core.workspace import Workspace
from pipeline.engine.local import LocalExecutor
from pipeline.media.storyboard import tile_count, tile_interval
from pipeline.stages.ingest import STAGE as INGEST
from pipeline.stages.probe import STAGE as PROBE
from pipeline.stages.probe import probe_file
from pipeline.stages.thumbnails import STAGE as THUMBNAILS
from pipeline.stages.thumbnails import Candidate, make_thumbnails, score
from tests.conftest import make_settings
from tests.test_transcode import decode_errors, ffmpeg, ffprobe, make_source

pytestmark = pytest.mark.slow  # end to end with real tools: not in the fast set

CUE = re.compile(
    r"(\d\d):(\d\d):(\d\d)\.(\d{3}) --> (\d\d):(\d\d):(\d\d)\.(\d{3})\n"
    r"(\S+)#xywh=(\d+),(\d+),(\d+),(\d+)"
)
BLACK_UNTIL, BLUR_UNTIL, FADE_FROM, DURATION = 2.0, 3.5, 6.0, 8.0


def seconds(h: str, m: str, s: str, ms: str) -> float:
    return int(h) * 3600 + int(m) * 60 + int(s) + int(ms) / 1000


def decoded(path: Path) -> Image.Image:
    image = Image.open(path)
    image.load()  # decodes every pixel; raises on a broken file
    return image


def stats(path: Path) -> tuple[float, float]:
    pixels = np.asarray(decoded(path).convert("L"), dtype=np.float64)
    return float(pixels.mean()), float(pixels.std())


@pytest.fixture(scope="module")
def thumbs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A 16:9 720p source: black for 2 s, blurred to 3.5 s, sharp content, fading out from 6 s."""
    root = tmp_path_factory.mktemp("thumbs")
    effects = (
        f"drawbox=color=black:t=fill:enable='lt(t,{BLACK_UNTIL})',"
        f"boxblur=12:enable='between(t,{BLACK_UNTIL},{BLUR_UNTIL})',"
        f"fade=t=out:st={FADE_FROM}:d={DURATION - FADE_FROM}"
    )
    source = make_source(root / "talk.mp4", size="1280x720", duration=DURATION, vfilter=effects)
    settings = make_settings(
        root,
        media={
            "thumbnails": {
                "storyboard_min_interval_s": 0.5,
                "storyboard_columns": 4,
                "storyboard_rows": 2,
            }
        },
    )
    media = probe_file(source)
    out = root / "out"
    assets, data = make_thumbnails(source, media, out, settings.media)
    return {"out": out, "assets": assets, "data": data, "source": source, "root": root}


def by_key(assets: list[OutputAsset]) -> dict[str, OutputAsset]:
    return {a.key: a for a in assets}


def test_poster_comes_from_the_content(thumbs: dict[str, Any]) -> None:
    data, out = thumbs["data"], thumbs["out"]
    assert BLUR_UNTIL <= data["poster_time"] <= FADE_FROM, data["poster_time"]
    brightness, contrast = stats(out / "thumbs" / "poster-1280.jpg")
    assert brightness > 60 and contrast > 40, "not black, not blank"
    reference = thumbs["root"] / "reference.png"
    ffmpeg("-ss", "5", "-i", str(thumbs["source"]), "-frames:v", "1", str(reference))
    ref_brightness, ref_contrast = stats(reference)
    assert brightness == pytest.approx(ref_brightness, rel=0.15), "as bright as the content"
    assert contrast == pytest.approx(ref_contrast, rel=0.15), "as crisp as the content"


def test_poster_sizes_square_and_placeholder(thumbs: dict[str, Any]) -> None:
    out, assets = thumbs["out"], by_key(thumbs["assets"])
    for width in (1280, 640, 320):
        for ext, fmt in (("jpg", "JPEG"), ("webp", "WEBP")):
            key = f"thumbs/poster-{width}.{ext}"
            image = decoded(out / key)
            assert (image.format, image.size) == (fmt, (width, width * 9 // 16)), key
            assert assets[key].role is AssetRole.POSTER
            assert (assets[key].width, assets[key].height) == image.size
    square = decoded(out / "thumbs" / "poster-square.jpg")
    assert square.size == (640, 640)
    assert assets["thumbs/poster-square.jpg"].role is AssetRole.POSTER_SQUARE
    assert stats(out / "thumbs" / "poster-square.jpg")[1] > 40, "the crop holds detail"
    placeholder = thumbs["data"]["placeholder"]
    assert blurhash.is_valid_blurhash(placeholder)
    assert assets["thumbs/poster-320.jpg"].extra["placeholder"] == placeholder
    tiny = blurhash.decode(placeholder, 32, 18)
    assert tiny.size == (32, 18)


def test_storyboard_covers_the_whole_duration(thumbs: dict[str, Any]) -> None:
    out, assets = thumbs["out"], by_key(thumbs["assets"])
    vtt = (out / "thumbs" / "storyboard.vtt").read_text()
    assert vtt.startswith("WEBVTT")
    cues = CUE.findall(vtt)
    interval = thumbs["data"]["storyboard_interval"]
    assert interval == 0.5
    assert len(cues) == tile_count(DURATION, interval) == 16
    sheets: dict[str, Image.Image] = {}
    previous_end = 0.0
    for cue in cues:
        start, end = seconds(*cue[0:4]), seconds(*cue[4:8])
        assert start == pytest.approx(previous_end, abs=1e-3), "no gap, no overlap"
        assert end > start
        previous_end = end
        sheet_name = cue[8]
        assert "/" not in sheet_name, "named relative to the track, where both are published"
        if sheet_name not in sheets:
            sheets[sheet_name] = decoded(out / "thumbs" / sheet_name)
        x, y, w, h = map(int, cue[9:13])
        assert (w, h) == (160, 90)
        assert x + w <= sheets[sheet_name].width and y + h <= sheets[sheet_name].height
    assert previous_end == pytest.approx(DURATION, abs=1e-3)
    assert sorted(sheets) == ["storyboard-1.jpg", "storyboard-2.jpg"], "8 tiles a sheet"
    assert sheets["storyboard-1.jpg"].size == (640, 180)
    for name, sheet in sheets.items():
        asset = assets[f"thumbs/{name}"]
        assert asset.role is AssetRole.STORYBOARD and asset.width == sheet.width
    assert assets["thumbs/storyboard.vtt"].role is AssetRole.STORYBOARD_VTT
    first_tile = sheets["storyboard-1.jpg"].crop((0, 0, 160, 90)).convert("L")
    assert np.asarray(first_tile).mean() < 20, "tile 0 shows the black opening: tiles keep time"


def test_preview_clip_is_short_muted_and_decodes(thumbs: dict[str, Any]) -> None:
    out, assets = thumbs["out"], by_key(thumbs["assets"])
    mp4 = out / "thumbs" / "preview.mp4"
    data = ffprobe("-show_streams", "-show_format", str(mp4))
    assert [s["codec_type"] for s in data["streams"]] == ["video"], "muted"
    assert float(data["format"]["duration"]) == pytest.approx(3.0, abs=0.2)
    assert data["streams"][0]["width"] == 480
    assert decode_errors(mp4) == ""
    webp = decoded(out / "thumbs" / "preview.webp")
    assert webp.format == "WEBP" and getattr(webp, "n_frames", 1) > 10
    for frame in range(webp.n_frames):
        webp.seek(frame)
        webp.load()
    assert assets["thumbs/preview.mp4"].role is AssetRole.PREVIEW_CLIP
    assert assets["thumbs/preview.webp"].role is AssetRole.PREVIEW_CLIP


def test_every_file_is_an_asset(thumbs: dict[str, Any]) -> None:
    out = thumbs["out"]
    files = {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()}
    assert files == {a.file for a in thumbs["assets"]}
    assert all(a.key == a.file and a.key.startswith("thumbs/") for a in thumbs["assets"])


def frame(pixels: np.ndarray[Any, Any], path: Path) -> Candidate:
    Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(path)
    return Candidate(path, time=0.0)


def test_scoring_rejects_black_blank_blurred_and_faded_frames(tmp_path: Path) -> None:
    rng = np.random.default_rng(7)
    detail = np.kron(rng.integers(0, 256, (18, 32)), np.ones((10, 10)))
    blurred = np.asarray(
        Image.fromarray(detail.astype(np.uint8)).resize((16, 9)).resize((320, 180))
    ).astype(float)
    candidates = [
        frame(np.zeros((180, 320)), tmp_path / "black.png"),
        frame(np.full((180, 320), 250.0), tmp_path / "white.png"),
        frame(np.full((180, 320), 120.0), tmp_path / "flat.png"),
        frame(blurred, tmp_path / "blurred.png"),
        frame(detail * 0.5, tmp_path / "fading.png"),
        frame(detail, tmp_path / "sharp.png"),
    ]
    assert score(candidates).path.name == "sharp.png"


def test_storyboard_interval_adapts_to_the_duration() -> None:
    settings = ThumbnailSettings()
    assert tile_interval(30, settings) == 1.0, "short videos: one tile a second"
    assert tile_interval(600, settings) == 6.0
    assert tile_interval(4 * 3600, settings) == 10.0, "long ones: the longest interval"
    tiles = tile_count(4 * 3600, 10.0)
    per_sheet = settings.storyboard_columns * settings.storyboard_rows
    assert math.ceil(tiles / per_sheet) == 15, "several sheets for long recordings"


def test_vertical_video_posters_are_never_wider_than_the_video(tmp_path: Path) -> None:
    source = make_source(tmp_path / "phone.mp4", size="180x320", duration=2, audio=None)
    settings = make_settings(tmp_path)
    assets, _ = make_thumbnails(source, probe_file(source), tmp_path / "out", settings.media)
    posters = {(a.width, a.height) for a in assets if a.role is AssetRole.POSTER}
    assert posters == {(180, 320)}
    sheet = decoded(tmp_path / "out" / "thumbs" / "storyboard-1.jpg")
    assert sheet.size == (2 * 160, 284), "two tiles of 160 x 284 (9:16)"


def test_audio_only_gets_a_waveform_poster_or_the_source_thumbnail(tmp_path: Path) -> None:
    talk = "aevalsrc=0.5*sin(2*PI*200*t)*sin(2*PI*0.5*t):s=44100"
    source = make_source(tmp_path / "talk.m4a", duration=4, video=False, audio=talk)
    settings = make_settings(tmp_path)
    media = probe_file(source)
    assets, data = make_thumbnails(source, media, tmp_path / "a", settings.media)
    roles = {a.key: a.role for a in assets}
    assert roles["thumbs/waveform.png"] is AssetRole.WAVEFORM
    assert data["poster_from"] == "waveform"
    waveform = decoded(tmp_path / "a" / "thumbs" / "waveform.png")
    assert waveform.size == (1280, 720) and stats(tmp_path / "a" / "thumbs" / "waveform.png")[1] > 5
    assert decoded(tmp_path / "a" / "thumbs" / "poster-1280.jpg").size == (1280, 720)
    assert (
        AssetRole.STORYBOARD not in roles.values() and AssetRole.PREVIEW_CLIP not in roles.values()
    )
    thumbnail = tmp_path / "thumbnail.jpg"
    Image.new("RGB", (640, 480), (200, 40, 40)).save(thumbnail)
    assets, data = make_thumbnails(source, media, tmp_path / "b", settings.media, None, thumbnail)
    assert data["poster_from"] == "source thumbnail"
    poster = decoded(tmp_path / "b" / "thumbs" / "poster-640.jpg").convert("RGB")
    assert poster.getpixel((10, 10))[0] > 150, "the source's own picture"


def test_thumbnails_stage_runs_in_the_dag(tmp_path: Path) -> None:
    source = make_source(tmp_path / "clip.mp4", duration=3)
    settings = make_settings(tmp_path)
    state = LocalExecutor(settings, dag=Dag.of([INGEST, PROBE, THUMBNAILS])).run(
        JobSpec(source=str(source))
    )
    assert state.status is JobStatus.SUCCEEDED, state.error
    workspace = Workspace.for_job(settings.storage.workspace, state.id)
    result = workspace.result_file("thumbnails").read_text()
    assert '"placeholder"' in result and "poster-320.jpg" in result
    assert not (workspace.stage_dir("thumbnails") / ".work").exists()
