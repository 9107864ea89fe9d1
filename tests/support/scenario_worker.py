"""A real Celery worker (prefork pool) that runs :data:`tests.support.scenario_dag.SCENARIO_DAG`.

It is ``recast worker`` with the test's DAG in place of the default one: the production Celery
app and tasks (``workers.app.create_celery``), worker runtime (job store, stage runner,
heartbeats, reaper, outbox rounds) and publisher; only the coordinator is built with the
scenario DAG. Settings come from ``RECAST_CONFIG``, as for any worker::

    python -m tests.support.scenario_worker QUEUES HOSTNAME
"""

from __future__ import annotations

import os
import subprocess
import sys

from pipeline.engine.distributed.coordinator import Coordinator
from pipeline.engine.distributed.jobstore import JobStore
from tests.support.scenario_dag import SCENARIO_DAG
from tests.support.workers import ROOT, Worker
from workers import runtime
from workers.app import create_celery
from workers.dispatch import CeleryDispatcher

MODULE = "tests.support.scenario_worker"

_coordinators: dict[int, Coordinator] = {}


def _coordinator() -> Coordinator:
    """The worker runtime's coordinator, per process (pool processes are forked)."""
    pid = os.getpid()
    if pid not in _coordinators:
        settings = runtime.settings()
        _coordinators[pid] = Coordinator(
            settings,
            runtime.store(),
            CeleryDispatcher(runtime.app(), settings),
            dag=SCENARIO_DAG,
            publisher=runtime.make_publisher(settings),
        )
    return _coordinators[pid]


def main(queues: str, hostname: str) -> None:
    app = create_celery(runtime.settings(), SCENARIO_DAG)
    runtime.provide_app(lambda: app)
    runtime.coordinator = _coordinator  # the runtime's other parts ask it for theirs
    app.worker_main(
        [
            "worker",
            "--pool=prefork",
            f"--queues={queues}",
            "--concurrency=2",
            f"--hostname={hostname}",
            "--loglevel=WARNING",
            "--without-mingle",
            "--without-gossip",
        ]
    )


class ScenarioWorker(Worker):
    """The test harness's :class:`Worker`, started as this module instead of ``recast``."""

    def start(self, store: JobStore | None = None, timeout: float = 60) -> ScenarioWorker:
        env = {**os.environ, "RECAST_CONFIG": str(self.config), **self.env}
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", MODULE, self.queues, self.hostname],
                cwd=ROOT,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        return self


if __name__ == "__main__":
    main(*sys.argv[1:3])
