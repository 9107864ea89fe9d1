"""The producer API (FastAPI; OpenAPI at /docs): ``create_api(settings)``.

``create_api`` is imported on first use: the ``recast`` commands import this package for its
request and response models (``workers.api.models``), and only ``recast api`` needs FastAPI,
the routes and the jobs board (half of every other command's start-up time)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from workers.api.app import create_api

__all__ = ["create_api"]


def __getattr__(name: str) -> Any:
    if name == "create_api":
        from workers.api.app import create_api

        return create_api
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
