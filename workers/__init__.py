"""The Celery executor, the producer API and their commands.

Celery runs the DAG of ``pipeline.stages.default_dag()`` one task per stage; every decision is
made by ``pipeline/`` (``coordinator``, ``stagerun``, ``reaper``, ``jobstore``), which never
imports Celery. This package only binds it to Celery and to HTTP:

- ``config``: the Celery configuration from settings (queues, routing, limits, JSON only);
- ``app``: the Celery application and its tasks (``tasks``), a few lines each;
- ``dispatch``: hands stages to the broker (the coordinator's ``StageDispatcher``);
- ``runtime``: what each worker process holds (job store, runner, reaper thread);
- ``producer``: submit, cancel, retry for the API and the CLI;
- ``api``: the producer API (FastAPI); ``cli``: the ``recast`` commands for all of this.
"""
