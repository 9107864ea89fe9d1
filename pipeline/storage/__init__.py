"""Where published cards and assets live: one interface, back ends chosen by URL.

``open_storage(settings)`` returns the back end for ``storage.output``: a local directory
(the default). Keys are POSIX-style paths relative to the output root (``<id>/card.json``).
Every write is atomic to readers: a reader sees the old object or the new one, never a part.
"""

from __future__ import annotations

from pipeline.settings import Settings
from pipeline.storage.base import Storage
from pipeline.storage.local import LocalStorage


def open_storage(settings: Settings) -> Storage:
    output = settings.storage.output
    return LocalStorage(output, public_base_url=settings.storage.public_base_url)


__all__ = ["LocalStorage", "Storage", "open_storage"]
