#!/usr/bin/env python3
"""Checks the layering of pipeline/ and workers/: imports only point down, no import cycles,
stages do not import each other, and each outside tool has its one owner.

    .venv/bin/python scripts/check_layers.py      # exit 0, or 1 with one line per violation

Layers, lowest first (docs/architecture.md draws them): a module may import its own layer and
the layers below it, never one above. Every import counts, at module level or inside a
function, so a cycle cannot hide behind a late import.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

LAYERS: tuple[str, ...] = (
    "pipeline.core",
    "pipeline.tools",
    "pipeline.media",
    "pipeline.storage",
    "pipeline.publish",
    "pipeline.stages",
    "pipeline.engine",
    "pipeline.ops",
    "pipeline.cli",
    "workers",
)
"""Lowest first."""

TOOL_OWNERS: dict[str, tuple[str, ...]] = {
    "yt_dlp": ("pipeline.tools.ytdlp",),
    "ffmpeg": ("pipeline.tools.ffmpeg_tools",),
    "faster_whisper": ("pipeline.tools.asr",),
    "ctranslate2": ("pipeline.tools.asr", "pipeline.tools.speech_models"),
    "PIL": ("pipeline.tools.images",),
    "blurhash": ("pipeline.tools.images",),
    "langcodes": ("pipeline.core.languages",),
    "celery": ("workers",),
    "kombu": ("workers",),
}
"""An outside package and the only modules (or packages) that may import it."""


@dataclass(frozen=True)
class Import:
    importer: str
    imported: str
    line: int


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules() -> dict[str, Path]:
    found: dict[str, Path] = {}
    for package in ("pipeline", "workers"):
        for path in sorted((ROOT / package).rglob("*.py")):
            found[module_name(path)] = path
    return found


def imports(name: str, path: Path, known: dict[str, Path]) -> Iterator[Import]:
    tree = ast.parse(path.read_text("utf-8"), str(path))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield Import(name, alias.name, node.lineno)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            for alias in node.names:
                full = f"{base}.{alias.name}"
                yield Import(name, full if full in known else base, node.lineno)


def owner_module(imported: str, known: dict[str, Path]) -> str | None:
    """The project module an import names (``pipeline.core.job`` for ``pipeline.core.job.X``)."""
    parts = imported.split(".")
    while parts:
        candidate = ".".join(parts)
        if candidate in known:
            return candidate
        parts.pop()
    return None


def layer_of(module: str) -> int | None:
    for rank, layer in enumerate(LAYERS):
        if module == layer or module.startswith(layer + "."):
            return rank
    return None


def violations() -> list[str]:
    known = modules()
    problems: list[str] = []
    graph: dict[str, set[str]] = {name: set() for name in known}
    for name, path in known.items():
        where = path.relative_to(ROOT)
        if name != "pipeline" and name.startswith("pipeline") and layer_of(name) is None:
            problems.append(f"{where}: {name} is in no layer")
        for item in imports(name, path, known):
            top = item.imported.split(".")[0]
            if top in TOOL_OWNERS and not any(
                name == owner or name.startswith(owner + ".") for owner in TOOL_OWNERS[top]
            ):
                problems.append(f"{where}:{item.line}: imports {top}, owned by {TOOL_OWNERS[top]}")
            target = owner_module(item.imported, known)
            if target is None or target == name or target == "pipeline":
                continue
            graph[name].add(target)
            mine, theirs = layer_of(name), layer_of(target)
            if mine is not None and theirs is not None and theirs > mine:
                problems.append(f"{where}:{item.line}: {name} imports {target}, a layer above")
            if (
                name.startswith("pipeline.stages.")
                and target.startswith("pipeline.stages.")
                and not _same_stage(name, target)
            ):
                problems.append(
                    f"{where}:{item.line}: stage module {name} imports {target}; "
                    "read other stages' outputs through pipeline.core.readers"
                )
    problems.extend(f"import cycle: {' -> '.join(cycle)}" for cycle in cycles(graph))
    return problems


def _same_stage(name: str, target: str) -> bool:
    """A stage may be split in modules sharing its name (transcript, transcript_outputs)."""
    first, second = name.split(".")[2], target.split(".")[2]
    return first.startswith(second) or second.startswith(first)


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle per strongly connected component of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0

    def visit(node: str) -> None:
        nonlocal counter
        index[node] = low[node] = counter
        counter += 1
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                item = stack.pop()
                on_stack.discard(item)
                component.append(item)
                if item == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    sys.setrecursionlimit(10_000)
    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def main() -> int:
    problems = violations()
    for problem in problems:
        sys.stdout.write(problem + "\n")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
