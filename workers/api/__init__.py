"""The producer API (FastAPI; OpenAPI at /docs): ``create_api(settings)``."""

from workers.api.app import create_api

__all__ = ["create_api"]
