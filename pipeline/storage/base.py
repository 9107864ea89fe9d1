"""The storage interface every back end implements."""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path


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

    @abstractmethod
    def exists(self, key: str) -> bool: ...

    @abstractmethod
    def delete(self, key: str) -> None:
        """Remove the object; no error if it is absent."""

    @abstractmethod
    def list(self, prefix: str) -> list[str]:
        """Every key under ``prefix`` (a folder-like prefix ending in "/")."""

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
