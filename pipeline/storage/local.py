"""Local directory back end (the default).

Locks are ``flock`` locks on files under ``<root>/.locks/`` (hidden: never listed), so threads
and processes on one machine that publish to the same directory exclude each other.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import random
import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from pipeline.errors import ErrorCode, RecastError
from pipeline.fsutil import atomic_write_bytes, safe_name
from pipeline.storage.base import Storage, is_hidden


class LocalStorage(Storage):
    def __init__(self, root: str | Path, public_base_url: str = ""):
        super().__init__(public_base_url)
        self.root = Path(root).resolve()

    def _path(self, key: str) -> Path:
        path = (self.root / key).resolve()
        if self.root not in path.parents:
            raise ValueError(f"storage key {key!r} escapes the output directory")
        return path

    def put_file(self, key: str, path: Path, content_type: str | None = None) -> None:
        target = self._path(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
        os.close(fd)
        try:
            shutil.copyfile(path, tmp)
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def put_bytes(self, key: str, data: bytes, content_type: str | None = None) -> None:
        atomic_write_bytes(self._path(key), data)

    def get_bytes(self, key: str) -> bytes | None:
        path = self._path(key)
        try:
            return path.read_bytes()
        except FileNotFoundError:
            return None

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def delete(self, key: str) -> None:
        path = self._path(key)
        path.unlink(missing_ok=True)
        for parent in path.parents:  # folders left empty go too (up to the root)
            if parent == self.root or self.root not in parent.parents:
                break
            try:
                parent.rmdir()
            except OSError:
                break

    def list(self, prefix: str) -> list[str]:
        base = self._path(prefix) if prefix else self.root
        if not base.is_dir():
            return []
        keys = (p.relative_to(self.root).as_posix() for p in base.rglob("*") if p.is_file())
        return sorted(key for key in keys if not is_hidden(key))

    @contextmanager
    def lock(self, name: str, timeout_s: float = 600.0) -> Iterator[None]:
        digest = hashlib.sha256(name.encode()).hexdigest()[:12]
        path = self.root / ".locks" / f"{safe_name(name, 60)}.{digest}.lock"
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            deadline = time.monotonic() + timeout_s
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() > deadline:
                        raise RecastError(
                            ErrorCode.STAGE_TIMEOUT, f"The lock {name!r} stayed taken."
                        ) from None
                    time.sleep(random.uniform(0.005, 0.03))
            try:
                yield
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)
