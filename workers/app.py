"""The Celery application: ``recast worker -Q QUEUES`` (or ``celery -A workers.app worker``).

Built from settings (``RECAST_CONFIG`` / ``RECAST_*``) and the DAG of
``pipeline.stages.default_dag()``, the same declaration the local executor runs.
"""

from __future__ import annotations

from typing import Any

from celery import Celery

from pipeline.core.dag import Dag
from pipeline.core.settings import Settings, default_settings
from pipeline.stages import default_dag
from workers import observe, runtime
from workers.config import celery_config
from workers.tasks import register_tasks

_default: Celery | None = None


def create_celery(settings: Settings | None = None, dag: Dag | None = None) -> Celery:
    settings = settings or default_settings()
    dag = dag or default_dag()
    app = Celery("recast", set_as_current=False)
    app.conf.update(celery_config(settings, dag))
    register_tasks(app, dag)
    observe.connect()  # JSON logs with job context, job logs, ops figures (issue 7)
    return app


def get_app() -> Celery:
    """The process's application, built once from the process's settings."""
    global _default
    if _default is None:
        _default = create_celery()
    return _default


runtime.provide_app(get_app)


def __getattr__(name: str) -> Any:
    if name in ("app", "celery"):
        return get_app()
    raise AttributeError(name)
