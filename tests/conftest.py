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
    # No reader of a replaced card needs its old files for seconds here (tests of the grace
    # itself set it).
    base["publish"].update(gc_grace_s=0.0)
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


# Files that take longest go first, so that with `-n 2` (scripts/test) the long ones do not
# start last and leave one process idle at the end. Measured on this 2-core machine.
LONGEST_FIRST = (
    "test_workers.py",
    "test_cli_and_card.py",
    "test_transcode.py",
    "test_asr.py",
    "test_ops.py",
    "test_storage_faults.py",
    "test_workers_rabbitmq.py",
    "test_pages_browser.py",
    "test_workers_s3.py",
    "test_transcript.py",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    def rank(item: pytest.Item) -> int:
        name = item.path.name
        return LONGEST_FIRST.index(name) if name in LONGEST_FIRST else len(LONGEST_FIRST)

    items.sort(key=rank)  # stable: the order within a file stays as written
