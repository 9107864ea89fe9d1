"""The `recast process` command end to end: exit codes, messages, idempotence, and the preview
card as a CMS reads it (schema-valid, text preserved exactly)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest
from PIL import Image

from pipeline.cli.main import main
from pipeline.core.card import card_json_schema_text
from pipeline.core.settings import Settings
from tests.support.httpserver import MediaServer
from tests.support.media import make_clip

pytestmark = pytest.mark.slow  # end to end with real tools: not in the fast set

ROOT = Path(__file__).resolve().parent.parent
SCHEMA = json.loads((ROOT / "docs" / "card.schema.json").read_text())

HOSTILE_TITLE = '</script><b onmouseover="x()">Munich</b> "Quick Take" & Co — Sicherheitskonferenz'
HOSTILE_DESCRIPTION = (
    "Ukraine, NATO & the 'Zeitenwende': <i>what's next?</i> Мюнхенская конференция. "
    "ميونخ للأمن. 慕尼黑安全会议。 The panel debated deterrence, energy and aid for an hour, "
    "and the audience asked sharp questions about budgets and timelines in Europe."
)


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_clip(tmp_path_factory.mktemp("cli") / "clip.mp4", duration=2.0)


def process(settings: Settings, *args: str) -> int:
    """`recast process` in this process with the test settings' directories and allow-list."""
    os.environ["RECAST_INGEST__ALLOWED_PRIVATE_NETWORKS"] = '["127.0.0.1/32"]'
    # These tests are about the command and the card's text: no speech in the clips to
    # recognise, and the fastest x264 preset (test_readme_run_command runs everything).
    os.environ["RECAST_TRANSCRIPT__ENGINE"] = "none"
    os.environ["RECAST_MEDIA__PRESET"] = "ultrafast"
    os.environ["RECAST_PUBLISH__GC_GRACE_S"] = "0"  # no reader of an older card to wait for
    try:
        return main(
            [
                "process",
                *args,
                "--out",
                settings.storage.output,
                "--work",
                settings.storage.workspace,
            ]
        )
    finally:
        for key in (
            "INGEST__ALLOWED_PRIVATE_NETWORKS",
            "TRANSCRIPT__ENGINE",
            "MEDIA__PRESET",
            "PUBLISH__GC_GRACE_S",
        ):
            del os.environ[f"RECAST_{key}"]


def cards(settings: Settings) -> list[Path]:
    out = Path(settings.storage.output)
    return sorted(out.rglob("card.json")) if out.exists() else []


def test_committed_schema_is_the_generated_one() -> None:
    assert (ROOT / "docs" / "card.schema.json").read_text() == card_json_schema_text(), (
        "regenerate with: recast schema > docs/card.schema.json"
    )


def test_running_twice_downloads_once(
    settings: Settings, server: MediaServer, clip: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = server.put_file("talk.mp4", clip)
    assert process(settings, url, "--json") == 0
    first = json.loads(capsys.readouterr().out)["jobs"][0]
    downloads = [r for r in server.hits("talk.mp4") if r.bytes_sent == clip.stat().st_size]
    assert process(settings, url, "--json") == 0
    second = json.loads(capsys.readouterr().out)["jobs"][0]
    assert first["job_id"] == second["job_id"] and second["status"] == "succeeded"
    again = [r for r in server.hits("talk.mp4") if r.bytes_sent == clip.stat().st_size]
    assert len(downloads) >= 1
    assert again == downloads, "the second run fetched no media"


def test_html_quotes_and_non_latin_survive_exactly_and_card_validates(
    settings: Settings, server: MediaServer, clip: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from html import escape

    server.put_file("v/panel.mp4", clip)
    thumb = server.root / "v" / "thumb.png"
    Image.new("RGB", (960, 540), (200, 40, 40)).save(thumb)
    page = (
        "<html><head>"
        f'<meta property="og:title" content="{escape(HOSTILE_TITLE)}">'
        f'<meta property="og:description" content="{escape(HOSTILE_DESCRIPTION)}">'
        f'<meta property="og:image" content="{server.url("v/thumb.png")}">'
        f'<meta property="og:video" content="{server.url("v/panel.mp4")}">'
        "</head><body></body></html>"
    )
    url = server.add("v/page.html", page)
    assert process(settings, url, "--event", "MSC 2026 — Day 1", "--json") == 0
    [path] = cards(settings)
    card = json.loads(path.read_text(encoding="utf-8"))
    jsonschema.Draft202012Validator(SCHEMA).validate(card)
    assert card["title"] == HOSTILE_TITLE
    assert card["description"] == HOSTILE_DESCRIPTION
    assert card["excerpt"].endswith(" [...]")
    assert len(card["excerpt"]) <= 200 + len(" [...]")
    assert HOSTILE_DESCRIPTION.startswith(card["excerpt"][: -len(" [...]")])
    assert card["jsonld"]["name"] == HOSTILE_TITLE
    assert card["event"]["slug"] == "msc-2026-day-1"
    assert card["source"]["platform"] == "Web"
    assert card["duration"]["iso8601"] == "PT2S" and card["duration"]["display"] == "0:02"
    source = json.loads((path.parent / "source.json").read_text(encoding="utf-8"))
    assert source["title"] == HOSTILE_TITLE
    manifest = json.loads((path.parent / "manifest.json").read_text())
    for asset in manifest["assets"]:
        assert (path.parent / asset["path"]).stat().st_size == asset["size"]


def bad_files(tmp_path: Path, clip: Path) -> dict[str, Path]:
    corrupt = tmp_path / "corrupt.mp4"
    data = bytearray(clip.read_bytes())
    data[: len(data) // 2] = bytes(len(data) // 2)
    corrupt.write_bytes(bytes(data))
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    text = tmp_path / "notes.mp4"
    text.write_text("These are the producer's notes, not a video.\n" * 20)
    return {"corrupt": corrupt, "empty": empty, "text": text}


@pytest.mark.parametrize("kind", ["corrupt", "empty", "text"])
def test_bad_local_files_exit_2_with_media_invalid(
    settings: Settings,
    clip: Path,
    tmp_path: Path,
    kind: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    path = bad_files(tmp_path, clip)[kind]
    assert process(settings, str(path)) == 2
    err = capsys.readouterr().err
    assert "media.invalid" in err
    assert cards(settings) == []


@pytest.mark.parametrize("url", ["file:///etc/passwd", "http://169.254.169.254/"])
def test_forbidden_urls_exit_2(
    settings: Settings, url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert process(settings, url) == 2
    err = capsys.readouterr().err
    assert "source.forbidden" in err
    assert "Use a public http(s) URL" in err, "the message says what to do"
    assert cards(settings) == []


def test_transient_failure_exits_1(
    settings: Settings, server: MediaServer, capsys: pytest.CaptureFixture[str]
) -> None:
    url = server.status("down.mp4", 503)
    assert process(settings, url) == 1
    assert "network.server_error" in capsys.readouterr().err


def test_json_output_reports_failures(
    settings: Settings, server: MediaServer, clip: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    good = server.put_file("ok.mp4", clip)
    bad = server.status("missing.mp4", 404)
    assert process(settings, good, bad, "--json") == 2
    jobs = json.loads(capsys.readouterr().out)["jobs"]
    assert [j["status"] for j in jobs] == ["succeeded", "failed"]
    assert jobs[1]["error"]["code"] == "source.unavailable"


def test_readme_run_command_makes_a_preview_card(tmp_path: Path) -> None:
    env = dict(os.environ, RECAST_OUT=str(tmp_path / "out"), RECAST_WORK=str(tmp_path / "work"))
    env["PATH"] = f"{Path(sys.executable).parent}:{env['PATH']}"
    completed = subprocess.run(
        [str(ROOT / "scripts" / "demo")],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert completed.returncode == 0, completed.stderr[-2000:]
    [card_path] = sorted((tmp_path / "out").rglob("card.json"))
    card = json.loads(card_path.read_text())
    jsonschema.Draft202012Validator(SCHEMA).validate(card)
    assert card["title"] == "Recast sample: Quick Take"
    assert (card_path.parent / "source.json").is_file()
    assert (card_path.parent / "manifest.json").is_file()
    media = list((tmp_path / "work").glob("*/ingest/media.mp4"))
    assert media, "the downloaded media is in the workspace"
