"""Local directory back end (the default).

Locks are ``flock`` locks on files under ``<root>/.locks/`` (hidden: never listed), so threads
and processes on one machine that publish to the same directory exclude each other.

What it publishes is readable by a web server whatever the process's umask: every file gets
``file_mode`` (0644 by default) and every folder it creates ``dir_mode`` (0755), set
explicitly. A full, read-only, failing or vanished output directory raises the transient
``storage.unavailable`` (:func:`pipeline.core.errors.storage_failure`), as does a lock that stays
taken; the root is never created again once it is gone (that would hide the outage).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import random
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from pipeline.core.errors import ErrorCode, RecastError, storage_failure
from pipeline.core.fsutil import atomic_write_bytes, copy_file_atomically, safe_name
from pipeline.storage.base import Storage, is_hidden

DEFAULT_FILE_MODE = 0o644
DEFAULT_DIR_MODE = 0o755


class LocalStorage(Storage):
    def __init__(
        self,
        root: str | Path,
        public_base_url: str = "",
        *,
        file_mode: int = DEFAULT_FILE_MODE,
        dir_mode: int = DEFAULT_DIR_MODE,
    ):
        super().__init__(public_base_url)
        self.root = Path(root).resolve()
        self.file_mode = file_mode
        self.dir_mode = dir_mode
        self._root_made = False
        with contextlib.suppress(OSError):  # unwritable now: the first operation says why
            self._create_root()

    def _create_root(self) -> None:
        if not self.root.is_dir():
            self.root.mkdir(parents=True, exist_ok=True)
            os.chmod(self.root, self.dir_mode)
        self._root_made = True

    def _path(self, key: str) -> Path:
        path = (self.root / key).resolve()
        if self.root not in path.parents:
            raise ValueError(f"storage key {key!r} escapes the output directory")
        return path

    @contextmanager
    def _faults(self) -> Iterator[None]:
        """Storage faults as ``storage.unavailable``; a root that vanished is one."""
        if self._root_made and not self.root.is_dir():
            raise RecastError(
                ErrorCode.STORAGE_UNAVAILABLE, "The output directory is gone (unmounted?)."
            )
        try:
            if not self._root_made:
                self._create_root()
            yield
        except OSError as exc:
            failure = storage_failure(exc, (self.root,))
            if failure is None:
                raise
            raise failure from exc

    def _make_folders(self, folder: Path) -> None:
        """Create ``folder`` and the folders above it up to the root, each with ``dir_mode``."""
        missing = []
        while folder != self.root and not folder.is_dir():
            missing.append(folder)
            folder = folder.parent
        for path in reversed(missing):
            try:
                path.mkdir()
            except FileExistsError:
                continue  # made by a concurrent publisher, who sets its mode
            os.chmod(path, self.dir_mode)

    def put_file(self, key: str, path: Path, content_type: str | None = None) -> None:
        target = self._path(key)
        with self._faults():
            self._make_folders(target.parent)
            copy_file_atomically(path, target, self.file_mode)

    def put_bytes(self, key: str, data: bytes, content_type: str | None = None) -> None:
        target = self._path(key)
        with self._faults():
            self._make_folders(target.parent)
            atomic_write_bytes(target, data, self.file_mode)

    def get_bytes(self, key: str) -> bytes | None:
        path = self._path(key)
        with self._faults():
            try:
                return path.read_bytes()
            except FileNotFoundError:
                if not self.root.is_dir():
                    raise
                return None

    def local_path(self, key: str) -> Path | None:
        path = self._path(key)
        with self._faults():
            return path if path.is_file() else None

    def exists(self, key: str) -> bool:
        path = self._path(key)
        with self._faults():
            return path.is_file()

    def delete(self, key: str) -> None:
        path = self._path(key)
        with self._faults():
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
        with self._faults():
            if not base.is_dir():
                return []
            keys = (p.relative_to(self.root).as_posix() for p in base.rglob("*") if p.is_file())
            return sorted(key for key in keys if not is_hidden(key))

    @contextmanager
    def lock(self, name: str, timeout_s: float = 600.0) -> Iterator[None]:
        digest = hashlib.sha256(name.encode()).hexdigest()[:12]
        path = self.root / ".locks" / f"{safe_name(name, 60)}.{digest}.lock"
        with self._faults():
            self._make_folders(path.parent)
            fd = self._open_lock_file(path)
        try:
            deadline = time.monotonic() + timeout_s
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() > deadline:
                        raise RecastError(
                            ErrorCode.STORAGE_UNAVAILABLE, f"The lock {name!r} stayed taken."
                        ) from None
                    time.sleep(random.uniform(0.005, 0.03))
            try:
                yield
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)

    def _open_lock_file(self, path: Path) -> int:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, self.file_mode)
        except FileExistsError:
            return os.open(path, os.O_RDWR)
        os.fchmod(fd, self.file_mode)
        return fd
