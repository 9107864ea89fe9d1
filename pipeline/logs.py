"""Logging set-up: JSON lines carrying job id, stage and task id where there is one."""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime

from rich.console import Console
from rich.logging import RichHandler

CONTEXT_FIELDS = ("job_id", "stage", "task_id")


class JsonLineFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in CONTEXT_FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                entry[name] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


def configure_for_terminal(console: Console) -> None:
    """Warnings and errors printed through rich, above the progress bars."""
    root = logging.getLogger("recast")
    root.handlers[:] = [RichHandler(console=console, show_path=False, markup=False)]
    root.setLevel(logging.WARNING)
    root.propagate = False


def configure(level: str = "INFO", json_lines: bool = True) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if json_lines:
        handler.setFormatter(JsonLineFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    root = logging.getLogger("recast")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False
