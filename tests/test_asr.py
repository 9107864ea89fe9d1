"""Speech recognition for real: the offline model install, and the transcript stage running
faster-whisper on speech synthesized by espeak-ng, muxed into a video, served by the local
server and fetched by yt-dlp (ingest), exactly as a job runs."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from pipeline.cli.main import main
from pipeline.core.job import JobStatus, StageStatus
from pipeline.core.stage import AssetRole
from pipeline.core.workspace import Workspace
from pipeline.tools import asr
from pipeline.tools.speech_models import (
    install_offline_model,
    offline_model_dir,
    read_record,
    verify,
)
from tests.support.httpserver import MediaServer
from tests.support.media import make_clip, make_speech_clip, run_ffmpeg, speak
from tests.support.speech import (
    GERMAN,
    PARAGRAPH,
    SHORT_EN,
    run_transcript_job,
    shared_model_cache,
    stage_result,
    transcript_settings,
    wer,
)
from tests.support.webvtt_strict import check_rules, check_webvtt

pytestmark = pytest.mark.slow  # end to end with real tools: not in the fast set

LEAD_S = 1.0


@pytest.fixture(scope="session")
def model_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return shared_model_cache(tmp_path_factory)


@pytest.fixture(scope="session")
def paragraph_clip(media_dir: Path) -> tuple[Path, float]:
    """The paragraph spoken after a second of silence; returns the clip and when speech ends."""
    wav = speak(media_dir / "paragraph.wav", PARAGRAPH)
    seconds = float(
        subprocess.run(
            ["ffprobe", "-v", "error", "-show_entries", "format=duration", "-of", "csv=p=0", wav],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    )
    clip = make_speech_clip(media_dir / "paragraph.mp4", PARAGRAPH, lead_silence=LEAD_S)
    return clip, LEAD_S + seconds


def serve(server: MediaServer, clip: Path, name: str) -> str:
    return server.put_file(f"media/{name}", clip)


def vtt_of(workspace: Workspace, lang: str) -> str:
    return (workspace.stage_dir("transcript") / "captions" / f"{lang}.vtt").read_text("utf-8")


def transcript_json(workspace: Workspace) -> dict:  # type: ignore[type-arg]
    path = workspace.stage_dir("transcript") / "captions" / "transcript.json"
    return json.loads(path.read_text("utf-8"))  # type: ignore[no-any-return]


# -- the offline model ---------------------------------------------------------------------------


def test_offline_model_install_is_verified_idempotent_and_repaired(tmp_path: Path) -> None:
    first = install_offline_model(tmp_path)
    model_bin = first.path / "model.bin"
    assert first.installed and first.path == offline_model_dir(tmp_path)
    assert model_bin.stat().st_size == first.record.files["model.bin"].size == 145_217_607
    assert sorted(p.name for p in first.path.iterdir()) == [
        "config.json",
        "model.bin",
        "recast-model.json",
        "tokenizer.json",
        "vocabulary.json",
    ]
    inode = model_bin.stat().st_ino
    again = install_offline_model(tmp_path)
    assert not again.installed and model_bin.stat().st_ino == inode, "nothing redone"
    assert list(tmp_path.iterdir()) == [first.path], "no staging directory left behind"

    with model_bin.open("r+b") as handle:  # same size, one byte different
        handle.seek(1_000_000)
        byte = handle.read(1)
        handle.seek(1_000_000)
        handle.write(bytes([byte[0] ^ 0xFF]))
    assert verify(first.path) == [], "the quick check looks at sizes only"
    assert any("SHA-256" in p for p in verify(first.path, deep=True))

    with model_bin.open("r+b") as handle:
        handle.truncate(1000)
    assert verify(first.path) != []
    repaired = install_offline_model(tmp_path)
    assert repaired.installed and verify(repaired.path, deep=True) == []
    assert read_record(repaired.path) is not None


def test_models_command(model_cache: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["models", "install", "--cache-dir", str(model_cache), "--json"]) == 0
    reply = json.loads(capsys.readouterr().out)
    assert reply["installed"] is False and reply["path"] == str(model_cache / "whisper-base")
    assert main(["models", "verify", "--cache-dir", str(model_cache)]) == 0
    assert capsys.readouterr().out.startswith("ok: ")
    assert main(["models", "verify", "--cache-dir", str(model_cache / "nowhere")]) == 1


# -- recognition through the pipeline -------------------------------------------------------------


def test_speech_is_transcribed_accurately_with_cues_inside_the_speech(
    tmp_path: Path, server: MediaServer, model_cache: Path, paragraph_clip: tuple[Path, float]
) -> None:
    clip, speech_end = paragraph_clip
    settings = transcript_settings(tmp_path, model_cache)
    state, workspace = run_transcript_job(settings, serve(server, clip, "talk.mp4"))
    assert state.status is JobStatus.SUCCEEDED, state.error
    result = stage_result(workspace)
    assert result.data["engine"] == "asr" and result.data["language"] == "en"
    assert result.data["language_source"] == "detected"

    document = transcript_json(workspace)
    error_rate = wer(PARAGRAPH, document["text"])
    assert error_rate <= 0.25, (error_rate, document["text"])
    assert document["model"].startswith("whisper-base") and document["automatic"] is True
    words = [w for s in document["segments"] for w in s["words"]]
    assert len(words) >= 60
    assert all(w["start"] <= w["end"] and 0 < w["confidence"] <= 1 for w in words)

    cues = check_webvtt(vtt_of(workspace, "en"))
    check_rules(cues)
    assert cues[0].start >= LEAD_S - 0.05, "no caption before anyone speaks"
    assert cues[-1].end <= speech_end + 0.3, "no caption after the speech ends"
    assert all(LEAD_S - 0.05 <= c.start < c.end <= speech_end + 0.3 for c in cues)
    assert wer(PARAGRAPH, " ".join(c.text for c in cues)) == error_rate, "captions = transcript"

    text = (workspace.stage_dir("transcript") / "captions" / "transcript.txt").read_text()
    assert text.startswith("Good morning") and text.endswith("\n")
    assert result.data["opening"].startswith("Good morning and welcome to the conference.")
    roles = {(a.role, a.key) for a in result.assets}
    assert roles == {
        (AssetRole.CAPTIONS, "captions/en.vtt"),
        (AssetRole.CAPTIONS, "captions/en.srt"),
        (AssetRole.TRANSCRIPT_TXT, "captions/transcript.txt"),
        (AssetRole.TRANSCRIPT_JSON, "captions/transcript.json"),
    }
    vtt = next(a for a in result.assets if a.key.endswith(".vtt"))
    assert (vtt.lang, vtt.label, vtt.automatic) == ("en", "English", True)
    assert vtt.extra == {"format": "vtt", "srt": "captions/en.srt", "kind": "captions"}


def test_two_jobs_in_one_process_load_the_model_once(
    tmp_path: Path, server: MediaServer, model_cache: Path, media_dir: Path
) -> None:
    first = make_speech_clip(media_dir / "short-a.mp4", SHORT_EN, lead_silence=0.5)
    second = make_speech_clip(media_dir / "short-b.mp4", SHORT_EN, lead_silence=1.5)
    settings = transcript_settings(tmp_path, model_cache)
    asr.unload_models()
    before = asr.STATS.snapshot()
    state_a, ws_a = run_transcript_job(settings, serve(server, first, "a.mp4"))
    state_b, ws_b = run_transcript_job(settings, serve(server, second, "b.mp4"), language="en")
    assert state_a.status is state_b.status is JobStatus.SUCCEEDED
    after = asr.STATS.snapshot()
    assert after["model_loads"] - before["model_loads"] == 1
    assert after["transcriptions"] - before["transcriptions"] == 2

    assert stage_result(ws_a).data["language_source"] == "detected"
    given = transcript_json(ws_b)
    assert (given["language"], given["language_source"]) == ("en", "job")
    assert given["language_probability"] is None
    for workspace in (ws_a, ws_b):
        check_rules(check_webvtt(vtt_of(workspace, "en")))
        assert wer(SHORT_EN, transcript_json(workspace)["text"]) <= 0.25

    again, _ = run_transcript_job(settings, serve(server, first, "a.mp4"))
    assert again.stages["transcript"].reused
    assert asr.STATS.snapshot()["transcriptions"] == after["transcriptions"], "resumed, not redone"


def test_german_is_detected_recorded_and_transcribed_in_german(
    tmp_path: Path, server: MediaServer, model_cache: Path, media_dir: Path
) -> None:
    clip = make_speech_clip(media_dir / "german.mp4", GERMAN, voice="de", lead_silence=0.5)
    # the English translation has its own tests (test_translate.py): not paid for twice
    settings = transcript_settings(tmp_path, model_cache, translate_to_english=False)
    state, workspace = run_transcript_job(settings, serve(server, clip, "de.mp4"))
    assert state.status is JobStatus.SUCCEEDED, state.error
    document = transcript_json(workspace)
    assert (document["language"], document["language_source"]) == ("de", "detected")
    assert document["language_probability"] > 0.5
    assert wer(GERMAN, document["text"]) <= 0.4, document["text"]
    assert "konferenz" in document["text"].lower()
    result = stage_result(workspace)
    assert result.data["language"] == "de"
    vtt = next(a for a in result.assets if a.role is AssetRole.CAPTIONS and a.key.endswith("vtt"))
    assert (vtt.key, vtt.lang, vtt.label) == ("captions/de.vtt", "de", "German")
    check_rules(check_webvtt(vtt_of(workspace, "de")))


# -- edge cases -----------------------------------------------------------------------------------


def test_no_audio_stream_is_skipped_not_failed(
    tmp_path: Path, server: MediaServer, model_cache: Path, media_dir: Path
) -> None:
    clip = media_dir / "mute.mp4"
    if not clip.exists():
        make_clip(clip, duration=2.0, audio=False)
    before = asr.STATS.snapshot()["transcriptions"]
    state, _ = run_transcript_job(
        transcript_settings(tmp_path, model_cache),
        serve(server, clip, "mute.mp4"),
    )
    assert state.status is JobStatus.SUCCEEDED, state.error
    transcript = state.stages["transcript"]
    assert (transcript.status, transcript.detail) == (StageStatus.SKIPPED, "no audio")
    assert asr.STATS.snapshot()["transcriptions"] == before


@pytest.mark.parametrize("sound", ["silence", "tone"])
def test_silence_or_music_gives_an_empty_transcript(
    tmp_path: Path, server: MediaServer, model_cache: Path, media_dir: Path, sound: str
) -> None:
    clip = media_dir / f"{sound}.mp4"
    if sound == "tone":
        make_clip(clip, duration=4.0)
    else:
        run_ffmpeg(
            *("-f", "lavfi", "-i", "testsrc2=size=320x180:rate=25:duration=4"),
            *("-f", "lavfi", "-i", "anullsrc=r=48000:cl=mono", "-t", "4"),
            *("-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-c:a", "aac"),
            str(clip),
        )
    state, workspace = run_transcript_job(
        transcript_settings(tmp_path, model_cache), serve(server, clip, f"{sound}.mp4")
    )
    assert state.status is JobStatus.SUCCEEDED, state.error
    assert state.stages["transcript"].status is StageStatus.DONE
    result = stage_result(workspace)
    assert result.data["word_count"] == 0 and result.data["opening"] == ""
    document = transcript_json(workspace)
    assert document["segments"] == [] and document["text"] == ""
    assert (workspace.stage_dir("transcript") / "captions" / "transcript.txt").read_text() == ""
    assert not [a for a in result.assets if a.role is AssetRole.CAPTIONS], "no empty track"
