"""The 9:16 social cut on real media, through ffmpeg, the stage, the publisher and Chromium.

- geometry: a 640x360 source gives 360x640 (the largest size not past the source's own
  resolution), a 1920x1080 one exactly 1080x1920; the window is centred, or where the
  producer's crop_x puts it (read back from the pixels of a red|blue source);
- captions burned in change the caption area only while their cue is shown;
- the stage: skipped without the option, ``social.invalid`` for a crop outside the frame or a
  malformed option; its MP4 is H.264 High + AAC, faststart, keyframes every
  ``media.keyframe_interval_s``, loudness at ``media.loudness_target_lufs``;
- published: ``streams.social`` on the card, the file in the manifest, and the watch page
  switches to the vertical player in Chromium, which plays it at the rendition's size.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from numpy.typing import NDArray
from PIL import Image
from playwright.sync_api import BrowserContext, Page, Request

from pipeline.core.card import Card
from pipeline.core.errors import ErrorCode, RecastError
from pipeline.core.fsutil import atomic_write_json
from pipeline.core.job import JobSpec, StageStatus
from pipeline.core.manifest import Manifest
from pipeline.core.settings import Settings
from pipeline.core.stage import AssetRole, OutputAsset, StageContext, StageResult
from pipeline.core.workspace import RESULT_FILE, Workspace
from pipeline.engine.runner import run_afresh
from pipeline.media.social import crop_window
from pipeline.publish import webhooks
from pipeline.publish.keys import SOCIAL_CUT_KEY
from pipeline.stages import default_dag
from pipeline.stages.probe import STAGE as PROBE
from pipeline.stages.probe import probe_file
from pipeline.stages.publish import run_publish
from pipeline.stages.social import STAGE as SOCIAL
from pipeline.stages.social import SocialOptions, make_social_cut, social_options
from tests.conftest import make_settings
from tests.support.browser import ARTIFACTS, chromium
from tests.support.httpserver import MediaServer
from tests.support.media import make_clip, run_ffmpeg
from tests.support.publishing import (
    CAPTIONS_VTT,
    DURATION,
    Job,
    make_info,
    stage_context,
)

CAPTIONS = """WEBVTT

00:00:00.500 --> 00:00:01.200
Defence &amp; {diplomacy}
"""


def halves(path: Path, duration: float = 2.0) -> Path:
    """A silent 640x360 source at 10 fps whose left half is red and right half blue."""
    run_ffmpeg(
        "-f", "lavfi", "-i", f"color=c=red:s=320x360:r=10:d={duration}",
        "-f", "lavfi", "-i", f"color=c=blue:s=320x360:r=10:d={duration}",
        "-filter_complex", "[0:v][1:v]hstack", "-c:v", "libx264", "-preset", "ultrafast",
        "-pix_fmt", "yuv420p", str(path),
    )  # fmt: skip
    return path


def ffprobe(path: Path, *args: str) -> dict[str, object]:
    completed = subprocess.run(
        ["ffprobe", "-v", "error", "-of", "json", *args, str(path)],
        capture_output=True,
        text=True,
        check=True,
    )
    data: dict[str, object] = json.loads(completed.stdout)
    return data


def frames(path: Path, numbers: list[int], work: Path) -> list[NDArray[np.float64]]:
    """The frames numbered ``numbers`` of ``path``, decoded to RGB."""
    work.mkdir(parents=True, exist_ok=True)
    chosen = "+".join(f"eq(n\\,{n})" for n in numbers)
    run_ffmpeg(
        "-i", str(path), "-vf", f"select={chosen}", "-fps_mode", "vfr",
        str(work / "frame-%02d.png"),
    )  # fmt: skip
    pictures = sorted(work.glob("frame-*.png"))
    assert len(pictures) == len(numbers)
    return [np.asarray(Image.open(p).convert("RGB"), dtype=np.float64) for p in pictures]


def colour(pixel: NDArray[np.float64]) -> str:
    red, green, blue = pixel
    if red > 180 and blue < 80 and green < 80:
        return "red"
    if blue > 180 and red < 80 and green < 80:
        return "blue"
    return f"other{tuple(int(v) for v in pixel)}"


@dataclass
class Rendered:
    path: Path
    width: int
    height: int
    data: dict[str, object]


def render(
    source: Path, out: Path, settings: Settings, options: SocialOptions, captions: Path | None
) -> Rendered:
    asset, data = make_social_cut(
        source, probe_file(source), out, settings.media, options, captions
    )
    path = out / asset.file
    stream = ffprobe(path, "-show_streams", "-select_streams", "v:0")["streams"][0]
    assert (stream["width"], stream["height"]) == (asset.width, asset.height)
    assert not (out / ".work").exists(), "the caption script is not left behind"
    return Rendered(path, stream["width"], stream["height"], data)


@pytest.fixture(scope="module")
def red_blue(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return halves(tmp_path_factory.mktemp("source") / "red-blue.mp4")


@pytest.fixture(scope="module")
def centred_with_captions(
    red_blue: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Rendered, Path]:
    tmp = tmp_path_factory.mktemp("centred")
    captions = tmp / "en.vtt"
    captions.write_text(CAPTIONS, encoding="utf-8")
    settings = make_settings(tmp)
    rendered = render(red_blue, tmp / "out", settings, SocialOptions(captions=True), captions)
    return rendered, tmp


def test_a_640x360_source_gives_the_largest_size_not_past_its_own_centred(
    centred_with_captions: tuple[Rendered, Path],
) -> None:
    rendered, tmp = centred_with_captions
    assert (rendered.width, rendered.height) == (360, 640), "the source's short side, 9:16"
    assert rendered.width % 2 == 0 and rendered.height % 2 == 0
    assert rendered.data["crop"] == {"x": 219, "y": 0, "width": 202, "height": 360}
    (frame,) = frames(rendered.path, [2], tmp / "centre")
    top = frame[40]  # a row far above the captions
    # The centred window straddles the middle of the frame: red on its left, blue on its right.
    assert colour(top[20]) == "red" and colour(top[160]) == "red"
    assert colour(top[200]) == "blue" and colour(top[340]) == "blue"


def test_a_producers_crop_x_picks_that_window(tmp_path: Path, settings: Settings) -> None:
    source = halves(tmp_path / "short.mp4", duration=0.4)
    rendered = render(source, tmp_path / "out", settings, SocialOptions(crop_x=438), None)
    assert rendered.data["crop"] == {"x": 438, "y": 0, "width": 202, "height": 360}
    (frame,) = frames(rendered.path, [2], tmp_path / "frames")
    for y in (20, 320, 620):
        for x in (2, 180, 357):
            assert colour(frame[y, x]) == "blue", (x, y)  # the window is all right half


def test_a_crop_outside_the_frame_is_refused_with_the_range_allowed() -> None:
    assert crop_window(640, 360, 438).x == 438
    with pytest.raises(RecastError) as refused:
        crop_window(640, 360, 439)
    assert refused.value.code is ErrorCode.SOCIAL_INVALID
    assert "0 to 438" in refused.value.message and "640x360" in refused.value.message


def test_a_1080p_source_gives_exactly_1080x1920(tmp_path: Path, settings: Settings) -> None:
    source = tmp_path / "1080p.mp4"
    run_ffmpeg(
        "-f", "lavfi", "-i", "testsrc2=size=1920x1080:rate=5:duration=0.6",
        "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", str(source),
    )  # fmt: skip
    rendered = render(source, tmp_path / "out", settings, SocialOptions(), None)
    assert (rendered.width, rendered.height) == (1080, 1920)
    assert rendered.data["crop"] == {"x": 656, "y": 0, "width": 608, "height": 1080}


def test_captions_change_the_caption_area_only_while_their_cue_shows(
    centred_with_captions: tuple[Rendered, Path],
) -> None:
    rendered, tmp = centred_with_captions
    assert rendered.data["captions"] is True
    # 10 fps: frame 2 is before the cue (0.5-1.2 s), frame 8 inside it, frame 16 after it.
    before, during, after = frames(rendered.path, [2, 8, 16], tmp / "captions")
    height = rendered.height
    caption_rows = slice(int(height * 0.62), int(height * 0.80))
    picture_rows = slice(0, int(height * 0.55))

    def change(a: NDArray[np.float64], b: NDArray[np.float64], rows: slice) -> float:
        return float(np.abs(a[rows] - b[rows]).mean())

    assert change(before, after, slice(None)) < 2, "no caption outside the cue"
    assert change(before, during, caption_rows) > 15, "the cue is drawn in the caption area"
    assert change(before, during, picture_rows) < 2, "and nowhere else"
    text = during[caption_rows]
    assert (text.min(axis=2) > 200).sum() > 100, "white text"


# -- the stage, published ------------------------------------------------------------------


def social_context(job: Job, settings: Settings, options: dict[str, object]) -> StageContext:
    """The social stage's context for ``job`` with the job's options replaced."""
    spec = job.spec.model_copy(update={"options": options})
    return StageContext(
        job_id=job.spec.job_id,
        stage=SOCIAL.name,
        spec=spec,
        settings=settings,
        workspace=job.workspace,
        out=Path(),
    )


@dataclass
class Published:
    job: Job
    settings: Settings
    result: StageResult
    card: Card
    out: Path


def lay_out_job(settings: Settings, root: Path) -> Job:
    """A finished ingest (a 4 s 320x180 recording, 10 fps, with a tone), a transcode that
    made only its MP4 (the watch page needs something to play) and a transcript with a
    caption track, as the stages leave them."""
    clip = make_clip(root / "clip.mp4", duration=DURATION, rate=10)
    meta = make_info()
    spec = JobSpec(source=meta.webpage_url)
    workspace = Workspace.for_job(settings.storage.workspace, spec.job_id)

    def finish(
        stage: str, files: dict[str, bytes], assets: list[OutputAsset], **data: object
    ) -> None:
        directory = workspace.stage_dir(stage)
        for name, content in files.items():
            (directory / name).parent.mkdir(parents=True, exist_ok=True)
            (directory / name).write_bytes(content)
        result = StageResult.done(directory, assets=assets, **data)
        atomic_write_json(directory / RESULT_FILE, result.model_dump(mode="json"))

    video = clip.read_bytes()
    finish("ingest", {"media.mp4": video, "info.json": meta.model_dump_json().encode()}, [])
    mp4 = OutputAsset(
        file="mp4/180p.mp4", key="mp4/180p.mp4", role=AssetRole.MP4, width=320, height=180
    )
    finish("transcode", {mp4.file: video}, [mp4])
    track = OutputAsset(
        file="captions/en.vtt", key="captions/en.vtt", role=AssetRole.CAPTIONS, lang="en"
    )
    finish("transcript", {track.file: CAPTIONS_VTT.encode()}, [track], language="en")
    return Job(spec=spec, workspace=workspace, card_id=meta.card_id, meta=meta)


@pytest.fixture(scope="module")
def published(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Published]:
    """A recording with captions: probed, its social cut made with the captions burned in by
    the stage, and its ready card published."""
    tmp = tmp_path_factory.mktemp("published")
    settings = make_settings(tmp)
    job = lay_out_job(settings, tmp / "media")
    probe = StageContext(job.spec.job_id, PROBE.name, job.spec, settings, job.workspace, Path())
    run_afresh(PROBE, probe)
    result = run_afresh(SOCIAL, social_context(job, settings, {"social": {"captions": True}}))
    run_publish(stage_context(job, settings))
    webhooks.stop_dispatchers()
    out = Path(settings.storage.output)
    card = Card.model_validate_json((out / job.card_id / "card.json").read_text())
    yield Published(job, settings, result, card, out)


def test_the_social_stage_is_in_the_dag_and_skipped_without_the_option(
    published: Published,
) -> None:
    dag = default_dag()
    assert dag["social"].requires == ("ingest", "probe", "transcript")
    assert "social" in dag["publish"].requires
    for options in ({}, {"social": None}, {"social": False}):
        context = social_context(published.job, published.settings, options)
        assert SOCIAL.run(context).status is StageStatus.SKIPPED, options
    assert social_options(published.job.spec.model_copy(update={"options": {"social": True}}))


@pytest.mark.parametrize(
    ("option", "said"),
    [
        ({"crop_x": 300}, "0 to 218"),  # the 320x180 source's window is 102 wide
        ({"crop_x": -1}, "crop_x"),
        ({"crop_x": "left"}, "crop_x"),
        ({"captions": "yes"}, "captions"),
        ({"crop": 0}, "crop"),
        ("vertical", "social"),
    ],
)
def test_a_bad_social_option_fails_the_stage_with_social_invalid(
    published: Published, option: object, said: str
) -> None:
    context = social_context(published.job, published.settings, {"social": option})
    context.requires = SOCIAL.requires
    context.out = published.job.workspace.begin_stage("social-refused")
    with pytest.raises(RecastError) as refused:
        SOCIAL.run(context)
    assert refused.value.code is ErrorCode.SOCIAL_INVALID
    assert said in refused.value.message
    assert refused.value.is_input_error and not refused.value.transient


def test_the_stage_renders_h264_aac_faststart_keyframed_and_normalised(
    published: Published,
) -> None:
    result = published.result
    assert result.status is StageStatus.DONE
    assert result.data["captions"] is True, "the transcript's track was burned in"
    (asset,) = result.assets
    assert (asset.role, asset.key, asset.width, asset.height) == (
        AssetRole.SOCIAL_CUT,
        SOCIAL_CUT_KEY,
        180,
        320,
    )
    path = published.job.workspace.stage_dir("social") / asset.file
    streams = ffprobe(path, "-show_streams")["streams"]
    kinds = {s["codec_type"]: s for s in streams}
    assert kinds["video"]["codec_name"] == "h264" and kinds["video"]["profile"] == "High"
    assert kinds["video"]["pix_fmt"] == "yuv420p"
    assert kinds["audio"]["codec_name"] == "aac" and kinds["audio"]["channels"] == 2
    data = path.read_bytes()
    assert 0 < data.find(b"moov") < data.find(b"mdat"), "faststart: the index first"
    keyframes = ffprobe(
        path, "-skip_frame", "nokey", "-select_streams", "v:0", "-show_entries", "frame=pts_time"
    )["frames"]
    times = [round(float(f["pts_time"]), 2) for f in keyframes]
    interval = published.settings.media.keyframe_interval_s
    assert times == [round(interval * n, 2) for n in range(len(times))] and len(times) >= 2
    report = subprocess.run(
        [
            "ffmpeg",
            "-hide_banner",
            "-nostats",
            "-i",
            str(path),
            "-af",
            "ebur128",
            "-f",
            "null",
            "-",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stderr
    integrated = float(report.rsplit("I:", 1)[1].split()[0])
    assert abs(integrated - published.settings.media.loudness_target_lufs) < 1.5, integrated


def test_the_card_lists_the_social_cut_and_the_manifest_its_file(published: Published) -> None:
    card, out = published.card, published.out
    social = card.streams.social
    assert social is not None
    assert (social.width, social.height, social.type, social.captions) == (
        180,
        320,
        "video/mp4",
        True,
    )
    assert (out / card.id / social.src).is_file()
    assert social.src.endswith(SOCIAL_CUT_KEY)
    manifest = Manifest.model_validate_json((out / card.id / "manifest.json").read_text())
    (entry,) = manifest.find(str(AssetRole.SOCIAL_CUT))
    assert (entry.path, entry.width, entry.height) == (SOCIAL_CUT_KEY, 180, 320)
    page = (out / card.id / "watch.html").read_text()
    assert "data-recast-vertical-toggle" in page and "Vertical MP4 (9:16)" in page


@pytest.mark.slow  # Chromium's start-up alone takes seconds (as in test_pages_browser.py)
def test_the_watch_page_switches_to_the_vertical_cut_and_chromium_plays_it(
    published: Published, tmp_path: Path
) -> None:
    card = published.card
    social = card.streams.social
    assert social is not None
    problems: list[str] = []
    with MediaServer(published.out) as server, chromium(tmp_path / "profile", 1000, 900) as browser:
        page = open_page(browser, server.url(f"{card.id}/watch.html"), problems)
        toggle = page.locator("[data-recast-vertical-toggle]")
        assert toggle.inner_text() == "Vertical (9:16)"
        assert page.locator("[data-recast-vertical]").is_hidden()
        toggle.click()
        page.locator("[data-recast-vertical] video").wait_for(state="visible", timeout=5000)
        assert page.locator("video[data-recast-player]").is_hidden()
        assert toggle.get_attribute("aria-pressed") == "true"
        page.evaluate(
            """() => { const v = document.querySelector('[data-recast-vertical] video');
                       v.muted = true; return v.play(); }"""
        )
        page.wait_for_function(
            "() => document.querySelector('[data-recast-vertical] video').currentTime > 0.5",
            timeout=15000,
        )
        playing = page.evaluate(
            """() => { const v = document.querySelector('[data-recast-vertical] video');
                       return {src: v.currentSrc, w: v.videoWidth, h: v.videoHeight}; }"""
        )
        assert playing["src"].endswith(SOCIAL_CUT_KEY)
        assert (playing["w"], playing["h"]) == (social.width, social.height)
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "watch-vertical.png"))
        toggle.click()
        assert page.locator("video[data-recast-player]").is_visible()
        assert page.locator("[data-recast-vertical]").is_hidden()
        paused = page.evaluate(
            "() => document.querySelector('[data-recast-vertical] video').paused"
        )
        assert paused, "the vertical player stops when the main one comes back"
    assert not problems, problems


def open_page(browser: BrowserContext, url: str, problems: list[str]) -> Page:
    """The page at ``url``; what goes wrong in it (errors, failed loads, CSP refusals) is
    added to ``problems``."""
    page = browser.new_page()
    page.on("pageerror", lambda error: problems.append(f"error: {error}"))

    def failed(request: Request) -> None:
        # Chromium's media loader cancels a download it has enough of for now (paused, or
        # buffered ahead) and asks for ranges later: not a failure of the page.
        if request.resource_type == "media" and request.failure == "net::ERR_ABORTED":
            return
        problems.append(f"failed: {request.url} ({request.failure})")

    page.on("requestfailed", failed)
    page.on(
        "console",
        lambda m: problems.append(m.text) if "Content Security Policy" in m.text else None,
    )
    page.on(
        "response",
        lambda r: problems.append(f"HTTP {r.status}: {r.url}") if r.status >= 400 else None,
    )
    page.goto(url)
    return page
