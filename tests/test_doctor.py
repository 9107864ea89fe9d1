"""``recast doctor`` for real: it passes on this set-up, and each piece taken away (ffmpeg,
the JavaScript runtime, hls.js, the speech model, a usable output directory, Redis) is named
on its own line and fails the run, while what only workers need is a warning by default."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path
from typing import Any

import pytest

from pipeline.cli.main import main
from pipeline.core.settings import load_settings
from pipeline.ops import doctor
from pipeline.tools import speech_models
from tests.support.s3server import S3Server
from tests.support.workers import RedisServer, free_port

ROOT = Path(__file__).resolve().parents[1]
RECAST = str(Path(sys.executable).parent / "recast")
MACHINE_CHECKS = (
    "ffmpeg",
    "ffprobe",
    "js runtime",
    "hls.js",
    "speech model",
    "output",
    "workspace",
)


def run_doctor(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    *args: str,
    **env: str,
) -> tuple[int, list[dict[str, Any]]]:
    """``recast doctor --json`` in this process, output and workspace under ``tmp_path``
    unless ``env`` (RECAST_* variables) says otherwise."""
    settings_env = {
        "RECAST_STORAGE__OUTPUT": str(tmp_path / "out"),
        "RECAST_STORAGE__WORKSPACE": str(tmp_path / "work"),
        **env,
    }
    for key, value in settings_env.items():
        monkeypatch.setenv(key, value)
    code = main(["doctor", "--json", *args])
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] is (code == 0)
    return code, report["checks"]


def only(checks: list[dict[str, Any]], name: str) -> dict[str, Any]:
    found = [check for check in checks if check["name"] == name]
    assert len(found) == 1, checks
    return found[0]


def failed(checks: list[dict[str, Any]]) -> list[str]:
    return [check["name"] for check in checks if check["status"] == "fail"]


def bin_dir(tmp_path: Path, *tools: str) -> Path:
    """A PATH of one folder with only ``tools`` in it (ffmpeg and deno may share /usr/bin)."""
    folder = tmp_path / "bin"
    folder.mkdir()
    for tool in tools:
        found = shutil.which(tool)
        assert found is not None, f"{tool} is part of this set-up"
        (folder / tool).symlink_to(found)
    return folder


def run_command(tmp_path: Path, command: list[str], path: Path) -> subprocess.CompletedProcess[str]:
    """``command`` run with only ``path`` on PATH, output and workspace under ``tmp_path``."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("RECAST_") and key != "PATH"
    }
    env |= {
        "PATH": str(path),
        "RECAST_STORAGE__OUTPUT": str(tmp_path / "out"),
        "RECAST_STORAGE__WORKSPACE": str(tmp_path / "work"),
    }
    return subprocess.run(
        command,
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_passes_on_this_setup_and_prints_a_line_per_check(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code, checks = run_doctor(monkeypatch, capsys, tmp_path)
    assert code == 0, checks
    for name in ("settings", *MACHINE_CHECKS):
        assert only(checks, name)["status"] == "ok", checks
    assert "libx264" in only(checks, "ffmpeg")["detail"]
    assert only(checks, "js runtime")["detail"].startswith("deno at ")
    # A missing output or workspace is made by the first job, not by the doctor.
    assert "to be created" in only(checks, "output")["detail"]
    assert not (tmp_path / "out").exists() and not (tmp_path / "work").exists()
    assert not list(tmp_path.iterdir())  # and its test file is gone

    assert main(["doctor"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == len(checks)
    assert lines[1].startswith("ok   ffmpeg: ")
    assert all(re.match(r"(ok  |warn|FAIL) [\w .-]+: ", line) for line in lines), lines


def test_deep_hashes_and_loads_the_model(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code, checks = run_doctor(monkeypatch, capsys, tmp_path, "--deep")
    assert code == 0
    assert "checksums and a load" in only(checks, "speech model")["detail"]


def test_without_ffmpeg_it_names_ffmpeg_and_exits_1(tmp_path: Path) -> None:
    result = run_command(tmp_path, [RECAST, "doctor"], bin_dir(tmp_path, "ffprobe"))
    assert result.returncode == 1, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert [line for line in lines if line.startswith("FAIL")] == [
        next(line for line in lines if line.startswith("FAIL ffmpeg: cannot run 'ffmpeg'"))
    ]
    assert any(line.startswith("ok   ffprobe: ") for line in lines)


def test_without_a_js_runtime_it_names_it_and_exits_1(tmp_path: Path) -> None:
    # A Python environment like .venv but without the deno package's executable beside it,
    # and no deno on PATH: where js_runtime() looks.
    env_dir = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(env_dir)], check=True)
    python = env_dir / "bin" / "python"
    site_dir = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    project_packages = sysconfig.get_path("purelib")
    (Path(site_dir) / "project.pth").write_text(
        f"import site; site.addsitedir({project_packages!r})\n"
    )
    command = [str(python), "-m", "pipeline.cli.main", "doctor"]
    result = run_command(tmp_path, command, bin_dir(tmp_path, "ffmpeg", "ffprobe"))
    assert result.returncode == 1, result.stdout + result.stderr
    fails = [line for line in result.stdout.splitlines() if line.startswith("FAIL")]
    assert len(fails) == 1 and fails[0].startswith("FAIL js runtime: "), result.stdout
    assert "deno" in fails[0]


def test_a_bad_setting_is_a_failed_check(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code, checks = run_doctor(monkeypatch, capsys, tmp_path, RECAST_INGEST__MAX_HEIGHT="tall")
    assert code == 1
    assert [check["name"] for check in checks] == ["settings"] == failed(checks)
    assert "ingest.max_height" in checks[0]["detail"]


def test_missing_hls_js_is_named(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    missing = tmp_path / "nowhere" / "hls.min.js"
    code, checks = run_doctor(monkeypatch, capsys, tmp_path, RECAST_PUBLISH__HLS_JS=str(missing))
    assert code == 1
    assert failed(checks) == ["hls.js"]
    assert str(missing) in only(checks, "hls.js")["detail"]


def test_missing_or_damaged_speech_model_is_named(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    installed = speech_models.offline_model_dir(speech_models.cache_dir(load_settings().transcript))
    empty = tmp_path / "models"
    empty.mkdir()
    code, checks = run_doctor(
        monkeypatch, capsys, tmp_path, RECAST_TRANSCRIPT__MODEL_CACHE_DIR=str(empty)
    )
    assert code == 1
    assert failed(checks) == ["speech model"]
    detail = only(checks, "speech model")["detail"]
    assert str(empty / "whisper-base") in detail and "recast models install" in detail

    # The cheap check reads the install's record: a model.bin gone is found without hashing.
    damaged = tmp_path / "damaged"
    (damaged / installed.name).mkdir(parents=True)
    for name in (speech_models.RECORD_FILE, *speech_models.SIDE_FILES):
        shutil.copyfile(installed / name, damaged / installed.name / name)
    code, checks = run_doctor(
        monkeypatch, capsys, tmp_path, RECAST_TRANSCRIPT__MODEL_CACHE_DIR=str(damaged)
    )
    assert code == 1
    assert "model.bin is missing" in only(checks, "speech model")["detail"]

    code, checks = run_doctor(monkeypatch, capsys, tmp_path, RECAST_TRANSCRIPT__ENGINE="none")
    assert code == 0
    assert only(checks, "speech model")["detail"] == "not used (transcript.engine = none)"


def test_an_install_without_speech_recognition_warns_unless_asr_is_required(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    monkeypatch.setitem(sys.modules, "faster_whisper", None)  # what `import` sees without it
    code, checks = run_doctor(monkeypatch, capsys, tmp_path)
    assert code == 0
    check = only(checks, "speech model")
    assert check["status"] == "warn"
    assert check["detail"].startswith("speech recognition not installed (API-only install)")

    code, checks = run_doctor(monkeypatch, capsys, tmp_path, RECAST_TRANSCRIPT__ENGINE="asr")
    assert code == 1
    assert failed(checks) == ["speech model"]


@pytest.mark.parametrize("where", ["a file", "under a file"])
def test_unusable_output_directory_is_named(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path, where: str
) -> None:
    a_file = tmp_path / "taken"
    a_file.write_text("not a folder")
    output = a_file if where == "a file" else a_file / "cards"
    code, checks = run_doctor(monkeypatch, capsys, tmp_path, RECAST_STORAGE__OUTPUT=str(output))
    assert code == 1
    assert failed(checks) == ["output"]
    detail = only(checks, "output")["detail"]
    assert str(output) in detail and "storage.output" in detail


def test_low_free_space_is_a_warning(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code, checks = run_doctor(monkeypatch, capsys, tmp_path, RECAST_OPS__MIN_FREE_DISK_GB="1e9")
    assert code == 0
    for name in ("output", "workspace"):
        assert only(checks, name)["status"] == "warn"
        assert "ops.min_free_disk_gb" in only(checks, name)["detail"]


def cluster_env(redis_url: str, broker_url: str | None = None) -> dict[str, str]:
    return {
        "RECAST_CLUSTER__REDIS_URL": redis_url,
        "RECAST_CLUSTER__BROKER_URL": broker_url or redis_url,
        "RECAST_CLUSTER__RESULT_BACKEND": redis_url,
    }


def test_unreachable_redis_warns_and_fails_with_cluster(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    nobody = f"redis://worker:sekrit@127.0.0.1:{free_port()}/0"
    env = cluster_env(nobody)
    code, checks = run_doctor(monkeypatch, capsys, tmp_path, **env)
    assert code == 0
    redis_check = only(checks, "redis")
    assert redis_check["status"] == "warn"
    assert "needed only for workers and the API" in redis_check["detail"]
    assert "sekrit" not in json.dumps(checks)

    code, checks = run_doctor(monkeypatch, capsys, tmp_path, "--cluster", **env)
    assert code == 1
    assert failed(checks) == ["redis"]
    assert "unreachable" in only(checks, "redis")["detail"]

    amqp = f"amqp://guest:guest@127.0.0.1:{free_port()}//"
    code, checks = run_doctor(
        monkeypatch, capsys, tmp_path, "--cluster", **env | cluster_env(nobody, amqp)
    )
    assert code == 1
    assert failed(checks) == ["redis", "broker"]


def test_reachable_redis_passes_with_cluster(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    with RedisServer(tmp_path / "redis") as server:
        code, checks = run_doctor(
            monkeypatch, capsys, tmp_path / "run", "--cluster", **cluster_env(server.url)
        )
    assert code == 0, checks
    redis_check = only(checks, "redis")
    assert redis_check["status"] == "ok"
    assert "cluster.redis_url, cluster.broker_url, cluster.result_backend" in redis_check["detail"]


def test_s3_output_is_checked_with_head_bucket(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    with S3Server() as s3:
        bucket = s3.bucket("cards")
        env = {
            f"RECAST_PUBLISH__{key.upper()}": value for key, value in s3.publish_settings().items()
        }
        code, checks = run_doctor(
            monkeypatch, capsys, tmp_path, RECAST_STORAGE__OUTPUT=f"s3://{bucket}/site", **env
        )
        assert code == 0, checks
        assert only(checks, "output")["status"] == "ok"
        code, checks = run_doctor(
            monkeypatch, capsys, tmp_path, RECAST_STORAGE__OUTPUT="s3://no-such-bucket/site", **env
        )
    assert code == 1
    assert failed(checks) == ["output"]
    assert "no such bucket" in only(checks, "output")["detail"]


def test_the_required_ffmpeg_parts_cover_what_the_stages_use() -> None:
    """Every encoder, format and filter named in pipeline/ is in the doctor's tables."""
    source = "\n".join(path.read_text("utf-8") for path in (ROOT / "pipeline").rglob("*.py"))
    encoders = set(re.findall(r'"(?:c:v|c:a|acodec|vcodec)": "(\w+)"', source)) - {"copy"}
    muxers = set(re.findall(r'"f": "(\w+)"', source))
    filters = set(re.findall(r'Filter\(\s*"(\w+)"', source))
    assert encoders and muxers and filters
    assert encoders <= set(doctor.REQUIRED_ENCODERS)
    assert muxers <= set(doctor.REQUIRED_MUXERS)
    assert filters <= set(doctor.REQUIRED_FILTERS)
