"""A job's workspace: the directory where its stages read inputs and write outputs.

Layout (``<workspace>/<job id>/``)::

    job.json                 the job's state (stages, progress, error)
    <stage>/                 one directory per stage, written only by that stage
    <stage>/_stage.json      the stage's result; present only once the stage finished
    .<stage>.partial/        a stage's outputs while it runs; renamed into place at the end

A stage writes into its partial directory and the executor renames it into place when the
stage succeeds, so a crash or a kill mid-stage never leaves half-written outputs behind.
"""

from __future__ import annotations

import shutil
import threading
from pathlib import Path

from pipeline.core.fsutil import atomic_write_json
from pipeline.core.job import JobState

RESULT_FILE = "_stage.json"


class Workspace:
    def __init__(self, root: Path):
        self.root = root
        self._state_lock = threading.Lock()

    @classmethod
    def for_job(cls, workspace_dir: str | Path, job_id: str) -> Workspace:
        return cls(Path(workspace_dir).resolve() / job_id)

    @property
    def job_file(self) -> Path:
        return self.root / "job.json"

    def stage_dir(self, stage: str) -> Path:
        """Where a finished stage's outputs are (read them from here)."""
        return self.root / stage

    def partial_dir(self, stage: str) -> Path:
        """Where a running stage writes its outputs."""
        return self.root / f".{stage}.partial"

    def result_file(self, stage: str) -> Path:
        return self.stage_dir(stage) / RESULT_FILE

    def begin_stage(self, stage: str) -> Path:
        """A fresh, empty partial directory for ``stage`` (leftovers of a crash are removed)."""
        partial = self.partial_dir(stage)
        if partial.exists():
            shutil.rmtree(partial)
        partial.mkdir(parents=True)
        return partial

    def commit_stage(self, stage: str) -> None:
        """Move a stage's partial outputs into place, replacing an older run's."""
        final = self.stage_dir(stage)
        partial = self.partial_dir(stage)
        if final.exists():
            trash = self.root / f".{stage}.old"
            if trash.exists():
                shutil.rmtree(trash)
            final.rename(trash)
            partial.rename(final)
            shutil.rmtree(trash)
        else:
            partial.rename(final)

    def discard_stage(self, stage: str) -> None:
        for path in (self.partial_dir(stage), self.stage_dir(stage)):
            if path.exists():
                shutil.rmtree(path)

    def load_state(self) -> JobState | None:
        if not self.job_file.exists():
            return None
        return JobState.model_validate_json(self.job_file.read_text(encoding="utf-8"))

    def save_state(self, state: JobState) -> None:
        with self._state_lock:
            self.root.mkdir(parents=True, exist_ok=True)
            atomic_write_json(self.job_file, state.model_dump(mode="json"))
