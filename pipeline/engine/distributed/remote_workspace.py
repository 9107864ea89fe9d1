"""Finished stage outputs kept in a storage back end, for workers that share no disk.

With ``cluster.workspace_store`` set (``s3://bucket/work``, say), a worker's
``storage.workspace`` is only a local cache it may lose: a stage's outputs are uploaded when
it finishes (``<job id>/<stage>/<file>``, its ``_stage.json`` last, so a stage whose result
object exists is complete), and a stage that needs them on another machine downloads them
first. A cached copy is used when its result and files check out.
"""

from __future__ import annotations

import fcntl
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from pipeline.core.dag import Dag
from pipeline.core.errors import ErrorCode, RecastError
from pipeline.core.settings import Settings
from pipeline.core.workspace import RESULT_FILE, Workspace
from pipeline.engine.runner import finished_result
from pipeline.storage import Storage, open_storage


def open_workspace_store(settings: Settings) -> Storage | None:
    """The storage holding stage outputs, or None when workers share storage.workspace."""
    url = settings.cluster.workspace_store
    if not url:
        return None
    storage = settings.storage.model_copy(update={"output": url, "public_base_url": ""})
    return open_storage(settings.model_copy(update={"storage": storage}))


def ancestors(dag: Dag, stage: str) -> list[str]:
    """Every stage ``stage`` requires, directly or not, in topological order."""
    needed: set[str] = set()
    frontier = list(dag[stage].requires)
    while frontier:
        name = frontier.pop()
        if name not in needed:
            needed.add(name)
            frontier.extend(dag[name].requires)
    return [name for name in dag.topological_order() if name in needed]


@contextmanager
def _cache_lock(workspace: Workspace, stage: str) -> Iterator[None]:
    """An exclusive lock, across the processes of this machine, on a stage's cached copy."""
    workspace.root.mkdir(parents=True, exist_ok=True)
    with (workspace.root / f".{stage}.fetch.lock").open("a") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


class RemoteWorkspace:
    """Uploads and downloads finished stage directories of jobs."""

    def __init__(self, storage: Storage):
        self.storage = storage

    @staticmethod
    def prefix(job_id: str, stage: str) -> str:
        return f"{job_id}/{stage}/"

    def upload(self, workspace: Workspace, job_id: str, stage: str) -> None:
        root = workspace.stage_dir(stage)
        files = sorted(p for p in root.rglob("*") if p.is_file())
        result = root / RESULT_FILE
        for path in [p for p in files if p != result] + [result]:
            key = self.prefix(job_id, stage) + path.relative_to(root).as_posix()
            self.storage.put_file(key, path)

    def fetch(self, workspace: Workspace, job_id: str, stage: str) -> None:
        """Make the stage's finished outputs present locally (a no-op when cached).

        Stages of one job running at once in the processes of one worker often need the same
        input (thumbnails and transcript both read ingest): one process fetches it, under a
        lock on the job's cache, and the others find it cached.
        """
        if finished_result(workspace, stage) is not None:
            return
        with _cache_lock(workspace, stage):
            if finished_result(workspace, stage) is not None:
                return
            self._download(workspace, job_id, stage)

    def _download(self, workspace: Workspace, job_id: str, stage: str) -> None:
        prefix = self.prefix(job_id, stage)
        keys = self.storage.list(prefix)
        if prefix + RESULT_FILE not in keys:
            raise RecastError(
                ErrorCode.NETWORK_CONNECTION,
                f"The outputs of stage {stage} are not in the workspace store yet.",
            )
        incoming = workspace.root / f".{stage}.fetch"
        if incoming.exists():
            shutil.rmtree(incoming)
        for key in keys:
            data = self.storage.get_bytes(key)
            if data is None:
                raise RecastError(
                    ErrorCode.NETWORK_CONNECTION, f"{key} vanished from the workspace store."
                )
            target = incoming / key[len(prefix) :]
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
        final = workspace.stage_dir(stage)
        if final.exists():
            shutil.rmtree(final)
        Path(incoming).rename(final)
        if finished_result(workspace, stage) is None:
            raise RecastError(
                ErrorCode.NETWORK_CONNECTION, f"The stored outputs of stage {stage} are damaged."
            )

    def discard(self, job_id: str, stage: str) -> None:
        for key in self.storage.list(self.prefix(job_id, stage)):
            self.storage.delete(key)

    def discard_job(self, job_id: str, *, dry_run: bool = False) -> int:
        """Delete every stored output of the job (retention); returns how many objects."""
        keys = self.storage.list(f"{job_id}/")
        if not dry_run:
            for key in keys:
                self.storage.delete(key)
        return len(keys)
