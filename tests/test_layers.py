"""The layering of pipeline/ and workers/ (issue 11: "No import cycle and no upward import"):
scripts/check_layers.py finds nothing to report on the repository as it is."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

CHECKER = Path(__file__).resolve().parent.parent / "scripts" / "check_layers.py"


def _checker() -> ModuleType:
    """A fresh copy of scripts/check_layers.py as a module (registered while it runs, as its
    dataclasses need)."""
    spec = importlib.util.spec_from_file_location("check_layers", CHECKER)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    try:
        spec.loader.exec_module(module)
    finally:
        del sys.modules[spec.name]
    return module


def test_no_import_cycle_no_upward_import_and_one_owner_per_tool() -> None:
    assert _checker().violations() == []


def test_the_checker_sees_a_stage_importing_another(tmp_path: Path) -> None:
    """The check itself works: a stage module importing another stage is reported."""
    checker = _checker()
    root = tmp_path / "repo"
    (root / "pipeline" / "stages").mkdir(parents=True)
    (root / "workers").mkdir()
    for package in ("pipeline", "pipeline/stages", "workers"):
        (root / package / "__init__.py").write_text("")
    (root / "pipeline" / "stages" / "probe.py").write_text("X = 1\n")
    (root / "pipeline" / "stages" / "thumbnails.py").write_text(
        "from pipeline.stages.probe import X\nfrom PIL import Image\n"
    )
    checker.ROOT = root
    assert sorted(checker.violations()) == [
        "pipeline/stages/thumbnails.py:1: stage module pipeline.stages.thumbnails imports "
        "pipeline.stages.probe; read other stages' outputs through pipeline.core.readers",
        "pipeline/stages/thumbnails.py:2: imports PIL, owned by ('pipeline.tools.images',)",
    ]
