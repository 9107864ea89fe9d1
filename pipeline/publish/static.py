"""Files the watch pages load, published once into ``_static/`` of the output tree.

``watch.js`` and ``watch.css`` are package data (``pipeline/static/``); ``hls.min.js`` comes
from the npm package ``hls.js`` the set-up installs (``npm ci``, pinned in package.json), or
from ``publish.hls_js``. Each is published under a name carrying its content hash
(``_static/hls.3f2a9c1d.min.js``), so pages never load a stale or half-replaced copy and an
older page keeps working after an upgrade. Nothing is ever loaded from a CDN.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from pipeline.core.errors import ConfigError
from pipeline.core.settings import Settings
from pipeline.storage import Storage

log = logging.getLogger("recast.publish.static")

STATIC_PREFIX = "_static"
PROJECT_ROOT = Path(__file__).resolve().parents[2]
HLS_JS_IN_NODE_MODULES = Path("node_modules") / "hls.js" / "dist" / "hls.min.js"


@dataclass(frozen=True)
class StaticFile:
    name: str
    """What it is: ``watch.js``, ``watch.css``, ``hls.min.js``."""
    key: str
    """Its key in the output tree (``_static/watch.<hash>.js``)."""
    data: bytes


def find_hls_js(settings: Settings) -> Path | None:
    """hls.min.js: ``publish.hls_js`` if set, else the project's (or cwd's) node_modules."""
    configured = settings.publish.hls_js
    if configured:
        path = Path(configured).expanduser()
        if not path.is_file():
            raise ConfigError(f"publish.hls_js: there is no file at {path}")
        return path
    for base in (PROJECT_ROOT, Path.cwd()):
        candidate = base / HLS_JS_IN_NODE_MODULES
        if candidate.is_file():
            return candidate
    return None


def _hashed_key(name: str, data: bytes) -> str:
    digest = hashlib.sha256(data).hexdigest()[:10]
    stem, dot, ext = name.partition(".")
    return f"{STATIC_PREFIX}/{stem}.{digest}{dot}{ext}"


def static_files(settings: Settings) -> dict[str, StaticFile]:
    """The static files of this installation, by name (hls.min.js absent when not installed)."""
    package = resources.files("pipeline") / "static"
    files: dict[str, StaticFile] = {}
    for name in ("watch.js", "watch.css"):
        data = (package / name).read_bytes()
        files[name] = StaticFile(name, _hashed_key(name, data), data)
    hls_js = find_hls_js(settings)
    if hls_js is None:
        log.warning(
            "hls.min.js is not installed (run `npm ci` in the project); watch pages will use "
            "the browser's own HLS or the MP4"
        )
    else:
        data = hls_js.read_bytes()
        files["hls.min.js"] = StaticFile("hls.min.js", _hashed_key("hls.min.js", data), data)
    return files


def static_type(key: str) -> str:
    from pipeline.core.manifest import content_type

    mime = content_type(key)
    return f"{mime}; charset=utf-8" if mime.startswith("text/") else mime


def publish_static(storage: Storage, files: dict[str, StaticFile]) -> None:
    """Upload the files that are not in the output tree yet (names carry their content hash)."""
    for item in files.values():
        if not storage.exists(item.key):
            storage.put_bytes(item.key, item.data, static_type(item.key))
