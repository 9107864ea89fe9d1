"""``recast`` commands of the Celery executor.

For producers (talking to Redis and the broker directly, like the API does):
``recast submit URL... [--event] [--priority] [--wait]``, ``recast jobs [--state]``,
``recast job ID [--follow]`` (live progress bars per stage), ``recast cancel ID``,
``recast retry ID`` (or ``--error CODE`` for every failed job with that code).

For running it: ``recast worker -Q QUEUES`` (a Celery worker, prefork pool) and
``recast api`` (the producer API under uvicorn); ``recast health [--worker NAME]`` for
container health checks.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import sys
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from pipeline.cli.main import EXIT_BAD_INPUT, EXIT_FAILED, EXIT_OK, StageBars
from pipeline.core import logs
from pipeline.core.errors import ConfigError, ErrorCode, RecastError
from pipeline.core.job import JobStatus
from pipeline.core.redact import public_url
from pipeline.core.settings import CONFIG_FILE_ENV, Settings, load_settings
from pipeline.core.stage import Queue
from pipeline.engine.distributed.jobstore import JobRecord
from pipeline.ops.opsview import public_error
from pipeline.publish.ownership import FORCE_OPTION

FINAL = frozenset({JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED})


def _settings(args: argparse.Namespace) -> Settings:
    if args.config:
        # Worker pool processes and anything started from here read the same file.
        os.environ[CONFIG_FILE_ENV] = str(Path(args.config).resolve())
    return load_settings(args.config)


def _producer(args: argparse.Namespace) -> Any:
    from workers.producer import Producer

    return Producer(_settings(args))


def _summary(record: JobRecord) -> dict[str, Any]:
    state = record.state
    return {
        "id": state.id,
        "source": public_url(state.spec.source, keep_query=True),
        "event": state.spec.event,
        "status": str(state.status),
        "card_id": state.card_id,
        "stages": {name: str(s.status) for name, s in state.stages.items()},
        "error": error.model_dump() if (error := public_error(state.error)) else None,
    }


def _exit_for(records: list[JobRecord]) -> int:
    errors = [r.state.error for r in records if r.state.status is not JobStatus.SUCCEEDED]
    if not errors:
        return EXIT_OK
    codes = [e.code for e in errors if e is not None]
    bad_input = all(RecastError(ErrorCode(c), "").is_input_error for c in codes)
    return EXIT_BAD_INPUT if codes and bad_input else EXIT_FAILED


def _follow(producer: Any, job_ids: list[str], console: Console, bars: bool) -> list[JobRecord]:
    """Poll the job store until every job has finished, drawing progress bars."""
    done: dict[str, JobRecord] = {}
    with StageBars(console, enabled=bars) as progress:
        while len(done) < len(job_ids):
            for job_id in job_ids:
                if job_id in done:
                    continue
                record = producer.get(job_id)
                if record is None:
                    raise RecastError(ErrorCode.REQUEST_NOT_FOUND, f"There is no job {job_id}.")
                for stage in record.state.stages:
                    progress.stage_changed(record.state, stage)
                if record.state.status in FINAL:
                    done[job_id] = record
            time.sleep(0.5)
    return [done[j] for j in job_ids]


def cmd_submit(args: argparse.Namespace) -> int:
    producer = _producer(args)
    console = Console(stderr=True)
    submitted = producer.submit(
        args.sources,
        event=args.event,
        priority=args.priority,
        force=args.force,
        options={FORCE_OPTION: True} if args.replace_card else None,
        allow_local=producer.settings.ingest.allow_local_files,
    )
    ids = [s.record.id for s in submitted]
    if not args.wait:
        _print_json({"jobs": [_summary(s.record) | {"new": s.created} for s in submitted]})
        return EXIT_OK
    records = _follow(producer, ids, console, bars=console.is_terminal and not args.json)
    _print_json({"jobs": [_summary(r) for r in records]})
    return _exit_for(records)


def cmd_jobs(args: argparse.Namespace) -> int:
    producer = _producer(args)
    status = JobStatus(args.state) if args.state else None
    page = producer.list_jobs(status=status, event=args.event, limit=args.limit)
    if args.json:
        _print_json({"jobs": [_summary(r) for r in page.jobs]})
        return EXIT_OK
    table = Table("id", "status", "event", "source", "updated")
    for record in page.jobs:
        state = record.state
        table.add_row(
            state.id,
            str(state.status),
            state.spec.event or "",
            public_url(state.spec.source, keep_query=True),
            state.updated_at.isoformat(timespec="seconds"),
        )
    Console().print(table)
    return EXIT_OK


def cmd_job(args: argparse.Namespace) -> int:
    producer = _producer(args)
    record = producer.get(args.job_id)
    if record is None:
        raise RecastError(ErrorCode.REQUEST_NOT_FOUND, f"There is no job {args.job_id}.")
    if args.follow:
        console = Console(stderr=True)
        record = _follow(producer, [record.id], console, bars=True)[0]
    _print_json(_summary(record) | {"progress": _progress(record)})
    return EXIT_OK


def _progress(record: JobRecord) -> dict[str, float]:
    return {name: s.progress for name, s in record.state.stages.items()}


def cmd_cancel(args: argparse.Namespace) -> int:
    _print_json(_summary(_producer(args).cancel(args.job_id)))
    return EXIT_OK


def cmd_retry(args: argparse.Namespace) -> int:
    producer = _producer(args)
    if args.error:
        _print_json({"retried": producer.retry_failed(ErrorCode(args.error))})
        return EXIT_OK
    if not args.job_id:
        raise RecastError(ErrorCode.REQUEST_INVALID, "Give a job id or --error CODE.")
    _print_json(_summary(producer.retry(args.job_id)))
    return EXIT_OK


def cmd_worker(args: argparse.Namespace) -> int:
    from workers.app import get_app
    from workers.config import prefetch_for

    settings = _settings(args)
    queues = [q.strip() for q in args.queues.split(",") if q.strip()]
    unknown = [q for q in queues if q not in {item.value for item in Queue}]
    if unknown or not queues:
        raise ConfigError(f"unknown queue(s) {unknown}; choose from {[q.value for q in Queue]}")
    hostname = args.hostname or f"{'+'.join(queues)}@{socket.gethostname()}"
    argv = [
        "--quiet",  # no startup banner: every line a worker prints is a JSON log line
        "worker",
        "--pool=prefork",
        f"--queues={','.join(queues)}",
        f"--concurrency={args.concurrency or settings.cluster.concurrency}",
        f"--prefetch-multiplier={prefetch_for(queues, settings)}",
        f"--hostname={hostname}",
        f"--loglevel={settings.log.level}",
        "--task-events",
        "--without-mingle",
        "--without-gossip",
    ]
    # JSON lines from the first line on, Python warnings included (Celery's start-up checks
    # warn before its own logging set-up runs).
    logs.configure(settings.log.level, settings.log.json_lines, root_level=settings.log.level)
    get_app().worker_main(argv)
    return EXIT_OK


def cmd_api(args: argparse.Namespace) -> int:
    import uvicorn

    from workers.api import create_api

    settings = _settings(args)
    if not settings.api.tokens:
        raise ConfigError("api.tokens is empty: set at least one bearer token")
    # uvicorn's own loggers too, as JSON lines (log_config=None: uvicorn leaves logging alone)
    logs.configure(settings.log.level, settings.log.json_lines, root_level=settings.log.level)
    uvicorn.run(
        create_api(settings),
        host=args.host or settings.api.host,
        port=args.port or settings.api.port,
        log_level=settings.log.level.lower(),
        log_config=None,
    )
    return EXIT_OK


def cmd_health(args: argparse.Namespace) -> int:
    """Exit 0 when Redis answers (and, with --worker, that worker has announced itself)."""
    from pipeline.engine.distributed.jobstore import JobStore

    store = JobStore(_settings(args).cluster)
    if not store.ping():
        sys.stderr.write("Redis is unreachable\n")
        return EXIT_FAILED
    live = store.live_workers()
    if args.worker and args.worker not in live:
        sys.stderr.write(f"worker {args.worker} has not announced itself\n")
        return EXIT_FAILED
    _print_json({"redis": True, "workers": live})
    return EXIT_OK


def _print_json(value: Any) -> None:
    json.dump(value, sys.stdout, ensure_ascii=False, indent=2, default=str)
    sys.stdout.write("\n")


def _guard(func: Any) -> Any:
    def run(args: argparse.Namespace) -> int:
        try:
            code: int = func(args)
        except ConfigError:
            raise
        except RecastError as error:
            sys.stderr.write(f"error {error.code}: {error.message}\n")
            if error.hint:
                sys.stderr.write(f"  {error.hint}\n")
            return EXIT_BAD_INPUT if error.is_input_error else EXIT_FAILED
        return code

    return run


def register(sub: Any) -> None:
    submit = sub.add_parser("submit", help="queue jobs for the workers (URLs, playlists)")
    submit.add_argument("sources", nargs="+", metavar="URL")
    submit.add_argument("--event", help="the event the recordings belong to (a slug)")
    submit.add_argument("--priority", type=int, default=5, choices=range(10), metavar="0-9")
    submit.add_argument("--force", action="store_true", help="run again even if done before")
    submit.add_argument(
        "--replace-card",
        action="store_true",
        help="replace a card of the same id even if another source published it",
    )
    submit.add_argument("--wait", action="store_true", help="follow the jobs until they end")
    submit.add_argument("--json", action="store_true", help="no progress bars")
    submit.set_defaults(func=_guard(cmd_submit))

    jobs = sub.add_parser("jobs", help="list jobs, newest first")
    jobs.add_argument("--state", choices=[s.value for s in JobStatus])
    jobs.add_argument("--event")
    jobs.add_argument("--limit", type=int, default=50)
    jobs.add_argument("--json", action="store_true")
    jobs.set_defaults(func=_guard(cmd_jobs))

    job = sub.add_parser("job", help="show a job; --follow draws progress bars until it ends")
    job.add_argument("job_id")
    job.add_argument("--follow", action="store_true")
    job.set_defaults(func=_guard(cmd_job))

    cancel = sub.add_parser("cancel", help="cancel a queued or running job")
    cancel.add_argument("job_id")
    cancel.set_defaults(func=_guard(cmd_cancel))

    retry = sub.add_parser("retry", help="retry a failed job from the stage that failed")
    retry.add_argument("job_id", nargs="?")
    retry.add_argument("--error", choices=[c.value for c in ErrorCode], help="every failed job")
    retry.set_defaults(func=_guard(cmd_retry))

    worker = sub.add_parser("worker", help="run a Celery worker (prefork pool)")
    worker.add_argument("-Q", "--queues", required=True, help="comma-separated queue names")
    worker.add_argument("-c", "--concurrency", type=int, help="pool processes")
    worker.add_argument("-n", "--hostname", help="worker name (default queues@host)")
    worker.set_defaults(func=_guard(cmd_worker))

    health = sub.add_parser("health", help="check Redis (and a worker): exit 0 when healthy")
    health.add_argument("--worker", help="a worker's name, e.g. transcode@host")
    health.set_defaults(func=_guard(cmd_health))

    api = sub.add_parser("api", help="serve the producer API (FastAPI, OpenAPI at /docs)")
    api.add_argument("--host")
    api.add_argument("--port", type=int)
    api.set_defaults(func=_guard(cmd_api))
