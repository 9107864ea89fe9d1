"""The distributed executor without Celery: the durable job store in Redis, the coordinator's
decisions, one stage of one job on a worker, the reaper, and stage outputs kept in storage for
workers that share no disk. ``workers/`` connects these to Celery.
"""
