"""The storage interface every back end implements, and waiting out a storage outage."""

from __future__ import annotations

import logging
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import TypeVar

from pipeline.core.errors import ErrorCode, RecastError, backoff_delay, storage_failure

log = logging.getLogger("recast.storage")

T = TypeVar("T")
RETRY_FIRST_DELAY_S = 0.1
RETRY_MAX_DELAY_S = 2.0
"""Waits between tries of :func:`retry_storage`: doubling from the first up to this."""

_PROCESS_LOCKS: dict[str, threading.Lock] = {}
_PROCESS_LOCKS_GUARD = threading.Lock()

Change = Callable[[bytes | None], bytes | None]
"""Given an object's current bytes (None: absent), its new bytes (None: leave it as it is)."""


class Storage(ABC):
    """Published objects under string keys such as ``<id>/card.json``."""

    def __init__(self, public_base_url: str = ""):
        self.public_base_url = public_base_url.rstrip("/")

    @abstractmethod
    def put_file(self, key: str, path: Path, content_type: str | None = None) -> None:
        """Store the file at ``path`` under ``key``, atomically."""

    @abstractmethod
    def put_bytes(self, key: str, data: bytes, content_type: str | None = None) -> None:
        """Store ``data`` under ``key``, atomically."""

    @abstractmethod
    def get_bytes(self, key: str) -> bytes | None:
        """The object's bytes, or None if there is none."""

    def local_path(self, key: str) -> Path | None:
        """The object as a file on this machine, to read without copying it, when the back end
        keeps objects as files; None otherwise (or when there is no such object)."""
        return None

    @abstractmethod
    def exists(self, key: str) -> bool: ...

    @abstractmethod
    def delete(self, key: str) -> None:
        """Remove the object; no error if it is absent."""

    @abstractmethod
    def list(self, prefix: str) -> list[str]:
        """Every key under ``prefix`` (a folder-like prefix ending in "/")."""

    def lock(self, name: str, timeout_s: float = 600.0) -> AbstractContextManager[None]:
        """An exclusive lock shared by everyone publishing to this storage (all processes).

        This default only excludes threads of this process; back ends SHALL override it.
        Raises the transient ``storage.unavailable`` when ``timeout_s`` passes.
        """
        return _process_lock(f"{id(self)}:{name}")

    def update(self, key: str, change: Change, content_type: str | None = None) -> bytes | None:
        """Read-modify-write ``key`` so that no concurrent update is lost; returns what is
        stored afterwards. ``change`` may run more than once (back ends that retry on conflict).
        """
        with self.lock(f"update/{key}"):
            current = self.get_bytes(key)
            new = change(current)
            if new is None:
                return current
            self.put_bytes(key, new, content_type)
            return new

    def url_for(self, key: str) -> str:
        """The link a reader uses: absolute under the public base URL when one is set."""
        if self.public_base_url:
            return f"{self.public_base_url}/{key}"
        return key

    def relative_url(self, key: str, from_key: str) -> str:
        """A link to ``key`` as written inside the object ``from_key`` (absolute if configured)."""
        if self.public_base_url:
            return self.url_for(key)
        base_parts = from_key.split("/")[:-1]
        target_parts = key.split("/")
        common = 0
        while (
            common < len(base_parts)
            and common < len(target_parts) - 1
            and base_parts[common] == target_parts[common]
        ):
            common += 1
        up = [".."] * (len(base_parts) - common)
        return "/".join(up + target_parts[common:])


@contextmanager
def _process_lock(name: str) -> Iterator[None]:
    with _PROCESS_LOCKS_GUARD:
        lock = _PROCESS_LOCKS.setdefault(name, threading.Lock())
    with lock:
        yield


def is_hidden(key: str) -> bool:
    """Keys with a part starting with "." (locks, temporary files) are not published objects."""
    return any(part.startswith(".") for part in key.split("/"))


def retry_storage(operation: Callable[[], T], deadline: float, *, what: str) -> T:
    """``operation()``, tried again while the storage is unavailable (a full, read-only or
    vanished disk: ``storage.unavailable``, or the OSError behind it) with capped exponential
    backoff and jitter, until ``deadline`` (:func:`time.monotonic`); then the error is raised.
    Any other error is raised at once."""
    failures = 0
    while True:
        try:
            return operation()
        except Exception as exc:
            error = exc if isinstance(exc, RecastError) else storage_failure(exc)
            if error is None or error.code is not ErrorCode.STORAGE_UNAVAILABLE:
                raise
            failures += 1
            backoff = backoff_delay(failures, RETRY_FIRST_DELAY_S, RETRY_MAX_DELAY_S)
            wait = min(backoff, deadline - time.monotonic())
            if wait <= 0:
                if error is exc:
                    raise
                raise error from exc
            log.warning("%s: %s; trying again in %.1f s", what, error.message, wait)
            time.sleep(wait)
