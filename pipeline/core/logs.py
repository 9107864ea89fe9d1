"""Logging set-up: JSON lines carrying job id, stage and task id where there is one.

A line gets those fields from the record itself (``extra={"job_id": ...}``, as
``StageContext.log`` passes them), else from the job context bound for the running code
(:func:`job_context`: a worker binds it around each task, threads started by
``pipeline.tools.ffmpeg_tools`` inherit it), else from an *enricher* (a function registered with
:func:`add_enricher` that reads what a library put on its records, e.g. Celery's task data).

Output of the tools a stage runs is logged at DEBUG under ``recast.tool.<tool>`` (ffmpeg's
stderr, yt-dlp's messages): handlers that keep a job's log (``pipeline.ops.joblog``) see it, the
console only at ``log.level = "DEBUG"``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import sys
from collections.abc import Callable, Iterator
from contextvars import ContextVar, Token
from datetime import UTC, datetime
from typing import Any

from rich.console import Console
from rich.logging import RichHandler

CONTEXT_FIELDS = ("job_id", "stage", "task_id")
TOOL_LOGGER = "recast.tool"

Enricher = Callable[[logging.LogRecord], dict[str, str]]
"""Returns context fields (a subset of CONTEXT_FIELDS) found in a record, or {}."""

_context: ContextVar[dict[str, str] | None] = ContextVar("recast_log_context", default=None)
_enrichers: list[Enricher] = []


def bind(**fields: str | None) -> Token[dict[str, str] | None]:
    """Bind context fields for the running code (and threads started with its context)."""
    current = dict(_context.get() or {})
    current.update({k: v for k, v in fields.items() if v is not None and k in CONTEXT_FIELDS})
    return _context.set(current)


def unbind(token: Token[dict[str, str] | None]) -> None:
    _context.reset(token)


@contextlib.contextmanager
def job_context(**fields: str | None) -> Iterator[None]:
    token = bind(**fields)
    try:
        yield
    finally:
        unbind(token)


def current_context() -> dict[str, str]:
    return dict(_context.get() or {})


def add_enricher(enricher: Enricher) -> None:
    """Register a function that finds context fields in records (once per function)."""
    if enricher not in _enrichers:
        _enrichers.append(enricher)


def context_of(record: logging.LogRecord) -> dict[str, str]:
    """The job id, stage and task id of a record, wherever they come from."""
    found: dict[str, str] = {}
    for enricher in _enrichers:
        with contextlib.suppress(Exception):
            found.update({k: v for k, v in enricher(record).items() if k in CONTEXT_FIELDS})
    found.update(_context.get() or {})
    for name in CONTEXT_FIELDS:
        value = getattr(record, name, None)
        if value is not None:
            found[name] = str(value)
    return found


class JsonLineFormatter(logging.Formatter):
    def entry(self, record: logging.LogRecord) -> dict[str, Any]:
        """The line as a dict (handlers that cut long messages use this)."""
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry.update(context_of(record))
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return entry

    def format(self, record: logging.LogRecord) -> str:
        return json.dumps(self.entry(record), ensure_ascii=False)


def configure_for_terminal(console: Console) -> None:
    """Warnings and errors printed through rich, above the progress bars."""
    root = logging.getLogger("recast")
    root.handlers[:] = [RichHandler(console=console, show_path=False, markup=False)]
    root.setLevel(logging.WARNING)
    root.propagate = False


def _stream_handler(level: str, json_lines: bool) -> logging.Handler:
    handler = logging.StreamHandler(sys.stderr)
    if json_lines:
        handler.setFormatter(JsonLineFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    handler.setLevel(level)
    handler.recast_console = True  # type: ignore[attr-defined]
    return handler


def _replace_console(logger: logging.Logger, handler: logging.Handler) -> None:
    """Swap the console handler, keeping handlers others added (a job log, say)."""
    kept = [
        h
        for h in logger.handlers
        if getattr(h, "recast_keep", False) and not getattr(h, "recast_console", False)
    ]
    logger.handlers[:] = [*kept, handler]


def configure(
    level: str = "INFO", json_lines: bool = True, *, root_level: str | None = None
) -> None:
    """Log ``recast.*`` to stderr at ``level``; with ``root_level``, every other library too
    (Celery, uvicorn), in the same format (the API and the workers do this)."""
    root = logging.getLogger("recast")
    _replace_console(root, _stream_handler(level, json_lines))
    root.setLevel(level)
    root.propagate = False
    if root_level is not None:
        top = logging.getLogger()
        _replace_console(top, _stream_handler(root_level, json_lines))
        top.setLevel(root_level)
        logging.captureWarnings(True)  # Python's warnings as log lines too (py.warnings)


def attach(handler: logging.Handler, *, tools: bool = True) -> None:
    """Add a handler to ``recast.*`` that survives :func:`configure` (e.g. a job log).

    With ``tools``, the tools' output (``recast.tool.*`` at DEBUG) reaches it too; the console
    handler still shows only its own level.
    """
    handler.recast_keep = True  # type: ignore[attr-defined]
    root = logging.getLogger("recast")
    if handler not in root.handlers:
        root.addHandler(handler)
    if tools:
        logging.getLogger(TOOL_LOGGER).setLevel(logging.DEBUG)


def detach(handler: logging.Handler) -> None:
    logging.getLogger("recast").removeHandler(handler)
