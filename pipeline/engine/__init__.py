"""Running a job's DAG: :mod:`jobflow` is the job's state machine (and failure policy) both
executors follow; :mod:`runner` runs one stage the same way for every executor;
:mod:`local` is the in-process executor (the embedded default); :mod:`distributed` holds the
broker-free half of the distributed executor (job store, coordinator, stage run, reaper, remote
workspace) that ``workers/`` drives with Celery.
"""
