"""Shared fixtures: settings pointed at temporary directories, a local media server, and a
media factory. Everything runs for real: ffmpeg, yt-dlp, the HTTP server."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pipeline.core.settings import Settings, load_settings
from tests.support.httpserver import MediaServer


def make_settings(tmp_path: Path, **sections: dict[str, Any]) -> Settings:
    """Settings with output and workspace under ``tmp_path`` and the test server allowed."""
    base = load_settings().model_dump()
    base["storage"].update(output=str(tmp_path / "out"), workspace=str(tmp_path / "work"))
    base["ingest"].update(
        allowed_private_networks=["127.0.0.1/32"],
        http_retries=0,
        fragment_retries=0,
        socket_timeout_s=10,
    )
    base["executor"].update(retry_base_delay_s=0.0, max_attempts=1)
    for section, values in sections.items():
        base[section].update(values)
    return load_settings(**base)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return make_settings(tmp_path)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[MediaServer]:
    with MediaServer(tmp_path / "www") as srv:
        yield srv


@pytest.fixture(scope="session")
def media_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A session-wide folder for clips shared between tests (made once)."""
    return tmp_path_factory.mktemp("media")
