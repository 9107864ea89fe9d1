"""Captions that are not WebVTT made WebVTT by yt-dlp's converter at ingest (real yt-dlp and
ffmpeg against the local server): TTML, YouTube's json3 and srv3 give human captions, the
transcript takes them without recognition, and a caption file that is really a playlist is not
followed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipeline.core.errors import RecastError
from pipeline.core.job import JobSpec, JobStatus
from pipeline.core.readers import read_source_info
from pipeline.core.stage import AssetRole
from pipeline.media.captions import parse_caption_file
from pipeline.stages import ingest
from pipeline.tools import asr
from tests.conftest import make_settings
from tests.support.httpserver import MediaServer
from tests.support.media import make_clip
from tests.support.publishing import ingest_context
from tests.support.speech import run_transcript_job, stage_result

TTML = """<?xml version="1.0" encoding="utf-8"?>
<tt xmlns="http://www.w3.org/ns/ttml" xml:lang="en"><body><div>
<p begin="00:00:00.250" end="00:00:01.500">Welcome to Munich.</p>
<p begin="00:00:01.500" end="00:00:02.750">Defence &amp; diplomacy<br/>today.</p>
</div></body></tt>
"""
JSON3 = json.dumps(
    {
        "wireMagic": "pb3",
        "events": [
            {"tStartMs": 0, "dDurationMs": 2750, "id": 1, "wpWinPosId": 1},
            {"tStartMs": 250, "dDurationMs": 1250, "segs": [{"utf8": "Welcome to Munich."}]},
            {
                "tStartMs": 1500,
                "dDurationMs": 1250,
                "segs": [{"utf8": "Defence & diplomacy"}, {"utf8": "\ntoday."}],
            },
        ],
    }
)
SRV3 = """<?xml version="1.0" encoding="utf-8" ?><timedtext format="3">
<body><p t="250" d="1250">Welcome to Munich.</p>
<p t="1500" d="1250">Defence &amp; <s>diplomacy</s>
today.</p></body></timedtext>
"""
EXPECTED = [
    (0.25, 1.5, ("Welcome to Munich.",)),
    (1.5, 2.75, ("Defence & diplomacy", "today.")),
]
"""The cues each of them gives, as parsed from the WebVTT ingest leaves."""


@pytest.fixture(scope="session")
def clip(media_dir: Path) -> Path:
    return make_clip(media_dir / "captions-clip.mp4", duration=3.0, title="Captioned")


def page_with_track(server: MediaServer, clip: Path, name: str, caption: str) -> str:
    video = server.put_file(f"{name}/talk.mp4", clip)
    track = server.add(f"{name}/talk.en.{name}", caption, "application/octet-stream")
    return server.add(
        f"{name}/page.html",
        f'<html><body><video controls><source src="{video}" type="video/mp4">'
        f'<track kind="subtitles" srclang="en" label="English" src="{track}"></video>'
        "</body></html>",
    )


@pytest.mark.parametrize(("ext", "caption"), [("json3", JSON3), ("srv3", SRV3)])
def test_youtube_timed_text_becomes_human_webvtt(
    tmp_path: Path, server: MediaServer, clip: Path, ext: str, caption: str
) -> None:
    ctx = ingest_context(
        JobSpec(source=page_with_track(server, clip, ext, caption)), make_settings(tmp_path)
    )
    ingest.run(ctx)
    info = read_source_info(ctx.out)
    assert [(t.lang, t.automatic, t.file) for t in info.subtitles] == [
        ("en", False, "captions/en.vtt")
    ]
    cues = parse_caption_file(ctx.out / "captions" / "en.vtt").cues
    assert [(c.start, c.end, c.lines) for c in cues] == EXPECTED
    assert sorted(p.name for p in ctx.out.iterdir()) == ["captions", "info.json", "media.mp4"]


def test_a_source_with_only_ttml_captions_gives_human_captions_without_recognition(
    tmp_path: Path, server: MediaServer, clip: Path
) -> None:
    settings = make_settings(tmp_path, transcript={"model_cache_dir": str(tmp_path / "models")})
    before = asr.STATS.snapshot()
    state, workspace = run_transcript_job(settings, page_with_track(server, clip, "ttml", TTML))
    assert state.status is JobStatus.SUCCEEDED, state.error
    ingested = workspace.stage_dir("ingest")
    info = read_source_info(ingested)
    assert [(t.lang, t.automatic, t.ext) for t in info.subtitles] == [("en", False, "vtt")]
    vtt = ingested / "captions" / "en.vtt"
    assert vtt.read_text("utf-8").startswith("WEBVTT")
    assert [(c.start, c.end, c.lines) for c in parse_caption_file(vtt).cues] == EXPECTED
    assert asr.STATS.snapshot() == before, "no model loaded, nothing recognised"
    result = stage_result(workspace)
    assert (result.data["engine"], result.data["automatic"]) == ("captions", False)
    track = next(a for a in result.assets if a.key == "captions/en.vtt")
    assert (track.role, track.automatic) == (AssetRole.CAPTIONS, False), "a human track"


def test_a_caption_file_that_is_really_a_playlist_is_not_followed(
    tmp_path: Path, server: MediaServer, clip: Path
) -> None:
    secret = tmp_path / "elsewhere" / "secret.vtt"
    secret.parent.mkdir()
    secret.write_text("WEBVTT\n\n00:00:00.000 --> 00:00:01.000\nSECRET of another job\n")
    playlist = (
        "#EXTM3U\n#EXT-X-TARGETDURATION:1\n#EXT-X-MEDIA-SEQUENCE:0\n"
        f"#EXTINF:1,\n{secret}\n#EXT-X-ENDLIST\n"
    )
    settings = make_settings(tmp_path)
    for name, text in (("srt", playlist), ("ass", f"ffconcat version 1.0\nfile '{secret}'\n")):
        ctx = ingest_context(JobSpec(source=page_with_track(server, clip, name, text)), settings)
        try:
            ingest.run(ctx)
        except RecastError as error:  # the download must not fail on a bad caption track
            pytest.fail(f"{name}: {error}")
        for path in ctx.out.rglob("*"):
            if path.is_file():
                assert b"SECRET" not in path.read_bytes(), path
        info = read_source_info(ctx.out)
        assert [t.file for t in info.subtitles] == [None], f"{name}: the track is left out"
