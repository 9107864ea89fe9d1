"""A finished job's workspace for the publish tests, made of real media.

``JobMedia`` makes, once, with ffmpeg and Pillow: a 4 s 320x180 clip, an HLS stream copy
(``hls-copy/``), an HLS rendition (``hls/``), an MP4 and an M4A, posters in JPEG and WebP,
a storyboard sprite with its WebVTT, a preview clip, captions (VTT, SRT) and a transcript
(TXT, JSON). ``make_job`` lays them out as the stages ``ingest``, ``playable``, ``transcode``,
``thumbnails`` and ``transcript`` leave them (stage directories with ``_stage.json`` results
listing ``OutputAsset``s), under the job's workspace, so the publish stages run on them as
they would after the real stages.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from pipeline.core.dag import Dag
from pipeline.core.fsutil import atomic_write_json
from pipeline.core.job import JobSpec
from pipeline.core.settings import Settings
from pipeline.core.source import Chapter, SourceInfo
from pipeline.core.stage import (
    AssetRole,
    OutputAsset,
    Queue,
    Stage,
    StageContext,
    StageFunction,
    StageResult,
)
from pipeline.core.workspace import RESULT_FILE, Workspace
from pipeline.stages import default_dag
from pipeline.stages.publish import PUBLISH, PUBLISH_PLAYABLE
from tests.support.media import make_clip, run_ffmpeg

DURATION = 4.0
TRICKY_TITLE = '</script><script>alert(1)</script> "Munich" & Co — Sicherheitskonferenz'

CAPTIONS_VTT = """WEBVTT

00:00:00.000 --> 00:00:01.500
Welcome to the Munich Security Conference.

00:00:01.500 --> 00:00:02.500
Defence &amp; <i>diplomacy</i> today.

00:00:03.000 --> 00:00:04.000
Thank you.
"""

CAPTIONS_SRT = """1
00:00:00,000 --> 00:00:01,500
Welcome to the Munich Security Conference.

2
00:00:01,500 --> 00:00:02,500
Defence & diplomacy today.

3
00:00:03,000 --> 00:00:04,000
Thank you.
"""

TRANSCRIPT_SEGMENTS = [
    {"id": 0, "start": 0.0, "end": 1.5, "text": "Welcome to the Munich Security Conference."},
    {"id": 1, "start": 1.5, "end": 2.5, "text": "Defence & <diplomacy> today."},
    {"id": 2, "start": 3.0, "end": 4.0, "text": "Thank you."},
]


def _ffmpeg_hls(source: Path, directory: Path, master: str = "master.m3u8") -> None:
    directory.mkdir(parents=True, exist_ok=True)
    run_ffmpeg(
        "-i", str(source), "-c", "copy", "-f", "hls", "-hls_time", "1",
        "-hls_playlist_type", "vod", "-hls_segment_filename", str(directory / "seg%03d.ts"),
        "-master_pl_name", master, str(directory / "index.m3u8"),
    )  # fmt: skip


class JobMedia:
    """Real media files for a job, made once into ``root``."""

    def __init__(
        self, root: Path, duration: float = DURATION, *, size: str = "320x180", rate: int = 25
    ):
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        self.clip = make_clip(
            root / "clip.mp4",
            duration=duration,
            size=size,
            rate=rate,
            extra=("-movflags", "+faststart"),
        )
        self.thumbnail = root / "thumbnail.jpg"
        run_ffmpeg("-ss", "1", "-i", str(self.clip), "-frames:v", "1", str(self.thumbnail))
        self.hls_copy = root / "hls-copy"
        _ffmpeg_hls(self.clip, self.hls_copy / "stream")
        shutil.move(self.hls_copy / "stream" / "master.m3u8", self.hls_copy / "master.m3u8")
        text = (self.hls_copy / "master.m3u8").read_text()
        (self.hls_copy / "master.m3u8").write_text(text.replace("index.m3u8", "stream/index.m3u8"))
        self.hls = root / "hls"
        _ffmpeg_hls(self.clip, self.hls / "180p")
        shutil.move(self.hls / "180p" / "master.m3u8", self.hls / "master.m3u8")
        text = (self.hls / "master.m3u8").read_text()
        (self.hls / "master.m3u8").write_text(text.replace("index.m3u8", "180p/index.m3u8"))
        self.audio = root / "audio.m4a"
        run_ffmpeg("-i", str(self.clip), "-vn", "-c:a", "copy", str(self.audio))
        self.preview_clip = root / "preview.mp4"
        run_ffmpeg("-i", str(self.clip), "-t", "2", "-an", "-c:v", "copy", str(self.preview_clip))
        self.sprite = root / "storyboard.jpg"
        run_ffmpeg(
            "-i", str(self.clip), "-vf", "fps=1,scale=80:45,tile=4x1", "-frames:v", "1",
            str(self.sprite),
        )  # fmt: skip
        with Image.open(self.thumbnail) as image:
            frame = image.convert("RGB")
        self.posters: list[tuple[Path, int, int]] = []
        for width in (320, 160):
            height = round(frame.height * width / frame.width)
            resized = frame.resize((width, height))
            for fmt, ext in (("JPEG", "jpg"), ("WEBP", "webp")):
                path = root / f"poster-{width}.{ext}"
                resized.save(path, fmt, quality=80)
                self.posters.append((path, width, height))


def _stage_dir(workspace: Workspace, name: str) -> Path:
    directory = workspace.stage_dir(name)
    if directory.exists():
        shutil.rmtree(directory)
    directory.mkdir(parents=True)
    return directory


def _finish(directory: Path, assets: list[OutputAsset], **data: object) -> None:
    result = StageResult.done(directory, assets=assets, **data)
    atomic_write_json(directory / RESULT_FILE, result.model_dump(mode="json"))


def _asset(key: str, role: AssetRole, **facts: object) -> OutputAsset:
    return OutputAsset.model_validate({"file": key, "key": key, "role": role, **facts})


def _copy(source: Path, directory: Path, relative: str) -> str:
    target = directory / relative
    target.parent.mkdir(parents=True, exist_ok=True)
    if source.is_dir():
        shutil.copytree(source, target)
    else:
        shutil.copyfile(source, target)
    return relative


@dataclass
class Job:
    spec: JobSpec
    workspace: Workspace
    card_id: str
    meta: SourceInfo


def make_info(
    *,
    source_id: str = "msc2026qt1",
    title: str = "Quick Take: Europe's defence",
    description: str = (
        "A conversation about Europe's defence at the Munich Security Conference. "
        "The panel discusses budgets, industry and the transatlantic relationship in detail, "
        "with questions from the audience and a look ahead to the summit in the summer."
    ),
    published: str | None = "2026-02-14",
) -> SourceInfo:
    return SourceInfo(
        extractor="youtube",
        source_id=source_id,
        title=title,
        description=description,
        uploader="Munich Security Conference",
        uploader_url="https://www.youtube.com/@MunichSecurityConference",
        upload_date=published,
        duration=DURATION,
        chapters=[Chapter(title="Opening", start=0, end=2), Chapter(title="Q&A", start=2, end=4)],
        tags=["defence", "Europe"],
        webpage_url=f"https://www.youtube.com/watch?v={source_id}",
        language="en",
        media_file="media.mp4",
        thumbnail_file="thumbnail.jpg",
        media_duration=DURATION,
        width=320,
        height=180,
    )


def make_job(
    media: JobMedia,
    settings: Settings,
    *,
    info: SourceInfo | None = None,
    event: str | None = "Munich Security Conference 2026",
    callback_url: str | None = None,
    stages: tuple[str, ...] = ("ingest", "playable", "transcode", "thumbnails", "transcript"),
    rendition: str = "180p",
) -> Job:
    """A job whose ``stages`` are finished, from ``media``; publish stages not run yet.

    ``rendition`` names the HLS rendition's folder (``hls/<rendition>/``), so a second run can
    publish a ladder that differs from the first."""
    meta = info or make_info()
    spec = JobSpec(source=meta.webpage_url, event=event, callback_url=callback_url)
    workspace = Workspace.for_job(settings.storage.workspace, spec.job_id)
    if "ingest" in stages:
        d = _stage_dir(workspace, "ingest")
        _copy(media.clip, d, "media.mp4")
        _copy(media.thumbnail, d, "thumbnail.jpg")
        atomic_write_json(d / "info.json", meta.model_dump(mode="json"))
        _finish(d, [], card_id=meta.card_id)
    if "playable" in stages:
        d = _stage_dir(workspace, "playable")
        _copy(media.hls_copy, d, "hls-copy")
        assets = [
            OutputAsset(
                file="hls-copy/master.m3u8", key="hls-copy/master.m3u8",
                role=AssetRole.HLS_MASTER, width=320, height=180, duration=DURATION,
                extra={"provisional": True},
            )
        ]  # fmt: skip
        for path in sorted((d / "hls-copy" / "stream").iterdir()):
            key = path.relative_to(d).as_posix()
            assets.append(
                OutputAsset(
                    file=key, key=key, role=AssetRole.HLS_MEDIA, extra={"provisional": True}
                )
            )
        _finish(d, assets, provisional=True)
    if "transcode" in stages:
        d = _stage_dir(workspace, "transcode")
        _copy(media.hls / "180p", d, f"hls/{rendition}")
        master = (media.hls / "master.m3u8").read_text().replace("180p/", f"{rendition}/")
        (d / "hls" / "master.m3u8").write_text(master)
        assets = [_asset("hls/master.m3u8", AssetRole.HLS_MASTER)]
        for path in sorted((d / "hls" / rendition).iterdir()):
            key = path.relative_to(d).as_posix()
            assets.append(OutputAsset(file=key, key=key, role=AssetRole.HLS_MEDIA))
        _copy(media.clip, d, "mp4/180p.mp4")
        _copy(media.audio, d, "mp4/audio.m4a")
        assets += [
            _asset("mp4/180p.mp4", AssetRole.MP4, width=320, height=180, duration=DURATION),
            _asset("mp4/audio.m4a", AssetRole.AUDIO, duration=DURATION),
        ]
        _finish(d, assets)
    if "thumbnails" in stages:
        d = _stage_dir(workspace, "thumbnails")
        assets = []
        for path, width, height in media.posters:
            key = _copy(path, d, f"thumbs/{path.name}")
            assets.append(
                OutputAsset(file=key, key=key, role=AssetRole.POSTER, width=width, height=height)
            )
        _copy(media.sprite, d, "thumbs/storyboard.jpg")
        cues = "".join(
            f"\n00:00:0{i}.000 --> 00:00:0{i + 1}.000\nstoryboard.jpg#xywh={80 * i},0,80,45\n"
            for i in range(4)
        )
        (d / "thumbs" / "storyboard.vtt").write_text("WEBVTT\n" + cues)
        _copy(media.preview_clip, d, "thumbs/preview.mp4")
        assets += [
            _asset("thumbs/storyboard.jpg", AssetRole.STORYBOARD, width=320, height=45),
            _asset("thumbs/storyboard.vtt", AssetRole.STORYBOARD_VTT),
            _asset("thumbs/preview.mp4", AssetRole.PREVIEW_CLIP, width=320, height=180),
        ]
        _finish(d, assets)
    if "transcript" in stages:
        d = _stage_dir(workspace, "transcript")
        (d / "captions").mkdir(exist_ok=True)
        (d / "captions" / "en.vtt").write_text(CAPTIONS_VTT)
        (d / "captions" / "en.srt").write_text(CAPTIONS_SRT)
        text = " ".join(s["text"] for s in TRANSCRIPT_SEGMENTS)  # type: ignore[misc]
        (d / "captions" / "transcript.txt").write_text(text + "\n")
        (d / "captions" / "transcript.json").write_text(
            json.dumps(
                {"version": 1, "language": "en", "text": text, "segments": TRANSCRIPT_SEGMENTS}
            )
        )
        common: dict[str, object] = {"lang": "en", "label": "English", "automatic": False}
        assets = [
            _asset("captions/en.vtt", AssetRole.CAPTIONS, **common),
            _asset("captions/en.srt", AssetRole.CAPTIONS, **common),
            _asset("captions/transcript.txt", AssetRole.TRANSCRIPT_TXT, lang="en"),
            _asset("captions/transcript.json", AssetRole.TRANSCRIPT_JSON, lang="en"),
        ]
        _finish(d, assets, language="en", opening=text)
    return Job(spec=spec, workspace=workspace, card_id=meta.card_id, meta=meta)


def _already_done(ctx: StageContext) -> StageResult:
    raise AssertionError(f"{ctx.stage} should have been found finished")


def _not_in_this_job(ctx: StageContext) -> StageResult:
    return StageResult.skipped("not in this test's job")


STAND_IN_REQUIRES: dict[str, tuple[str, ...]] = {
    "ingest": (),
    "playable": ("ingest",),
    "transcode": ("ingest",),
    "thumbnails": ("ingest",),
    "transcript": ("ingest",),
    "chapters": ("ingest",),
    "social": ("ingest",),
}
"""The stages the publish stages require, as stand-ins (probe left out: nothing reads it here)."""
LAID_OUT = ("ingest", "playable", "transcode", "thumbnails", "transcript")
"""The stages :func:`make_job` lays out unless told otherwise."""


def publish_dag(
    stages: tuple[str, ...] = LAID_OUT,
    *,
    ingest: StageFunction | None = None,
) -> Dag:
    """The publish stages after stand-ins for every stage they require: those named in
    ``stages`` are found finished in the workspace (``make_job`` laid them out), the others are
    skipped, as a stage with nothing to do is. ``ingest`` runs instead of its stand-in."""
    stand_ins = [
        Stage(
            name,
            Queue.MEDIA,
            _already_done if name in stages else _not_in_this_job,
            requires,
        )
        for name, requires in STAND_IN_REQUIRES.items()
    ]
    if ingest is not None:
        stand_ins[0] = Stage("ingest", Queue.INGEST, ingest)
    return Dag.of([*stand_ins, PUBLISH_PLAYABLE, PUBLISH])


def stage_context(job: Job, settings: Settings, stage: str = "publish") -> StageContext:
    """A context to run a publish stage directly (its partial directory made fresh), allowed to
    read what the stage declares, as the runner allows it."""
    return StageContext(
        job_id=job.spec.job_id,
        stage=stage,
        spec=job.spec,
        settings=settings,
        workspace=job.workspace,
        out=job.workspace.begin_stage(stage),
        requires=default_dag()[stage].requires,
    )


def ingest_context(job_spec: JobSpec, settings: Settings) -> StageContext:
    """The ingest stage's context as the preview sees it: metadata and thumbnail in ctx.out."""
    workspace = Workspace.for_job(settings.storage.workspace, job_spec.job_id)
    return StageContext(
        job_id=job_spec.job_id,
        stage="ingest",
        spec=job_spec,
        settings=settings,
        workspace=workspace,
        out=workspace.stage_dir("ingest"),
    )


def ffprobe_ok(url_or_path: str) -> bool:
    """Whether ffprobe reads a stream from it (a playlist over HTTP, say)."""
    result = subprocess.run(
        [
            "ffprobe",
            "-v",
            "error",
            "-show_entries",
            "stream=codec_type",
            "-of",
            "json",
            url_or_path,
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    return result.returncode == 0 and bool(json.loads(result.stdout or "{}").get("streams"))
