"""Where published cards and assets live: one interface, back ends chosen by URL.

``open_storage(settings)`` returns the back end for ``storage.output``: a local directory
(the default) or S3-compatible object storage for an ``s3://bucket/prefix`` URL.
Keys are POSIX-style paths relative to the output root (``<id>/card.json``).
Every write is atomic to readers: a reader sees the old object or the new one, never a part.
"""

from __future__ import annotations

from pipeline.settings import Settings
from pipeline.storage.base import Storage
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
    return LocalStorage(output, public_base_url=settings.storage.public_base_url)


__all__ = ["LocalStorage", "Storage", "open_storage"]
