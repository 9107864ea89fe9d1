"""Where published cards and assets live: one interface, back ends chosen by URL.

``open_storage(settings)`` returns the back end for ``storage.output``: a local directory
(the default) or S3-compatible object storage for an ``s3://bucket/prefix`` URL.
Keys are POSIX-style paths relative to the output root (``<id>/card.json``).
Every write is atomic to readers: a reader sees the old object or the new one, never a part.
A storage outage (full, read-only, vanished) is the transient ``storage.unavailable``;
:func:`retry_storage` waits one out in place, within ``storage.retry_span_s``.
"""

from __future__ import annotations

from pathlib import Path

from pipeline.core.settings import Settings
from pipeline.storage.base import Storage, retry_storage
from pipeline.storage.local import LocalStorage


def open_storage(settings: Settings) -> Storage:
    output = settings.storage.output
    if output.startswith("s3://"):
        from pipeline.storage.s3 import S3Storage

        publish = settings.publish
        return S3Storage(
            output,
            endpoint_url=publish.s3_endpoint_url,
            region=publish.s3_region,
            access_key_id=publish.s3_access_key_id,
            secret_access_key=publish.s3_secret_access_key,
            public_base_url=settings.storage.public_base_url,
        )
    return LocalStorage(
        output,
        public_base_url=settings.storage.public_base_url,
        file_mode=settings.storage.file_permissions,
        dir_mode=settings.storage.dir_permissions,
    )


def storage_roots(settings: Settings) -> tuple[Path, ...]:
    """The folders whose disappearance is a storage outage, not a bug: the workspace and a
    local output directory (see :func:`pipeline.core.errors.storage_failure`)."""
    roots = [Path(settings.storage.workspace).resolve()]
    if not settings.storage.output.startswith("s3://"):
        roots.append(Path(settings.storage.output).resolve())
    return tuple(roots)


__all__ = ["LocalStorage", "Storage", "open_storage", "retry_storage", "storage_roots"]
