"""``recast status``: the cluster at a glance in the terminal, live (rich), or as JSON.

It shows what ``pipeline.ops.opsview`` reads from Redis: alerts worth a page, the queues (live and
busy workers, stages waiting and the oldest wait), each worker and what it runs, the running
jobs with a progress bar per stage, the last failures with their codes, and the jobs that
finished in the last hour (in five-minute buckets). It needs only Redis (``cluster.redis_url``),
not the API.

``--json`` prints one snapshot for scripts (exit status 1 when Redis is unreachable);
``--once`` draws once; otherwise it redraws every ``--interval`` seconds until Ctrl-C.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

from rich.console import Console, Group, RenderableType
from rich.panel import Panel
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from pipeline.core.job import StageStatus
from pipeline.core.settings import load_settings
from pipeline.ops.opsview import OpsView, Snapshot

EXIT_OK, EXIT_FAILED = 0, 1
SPARKS = " ▁▂▃▄▅▆▇█"
STAGE_STYLE = {
    StageStatus.DONE: "green",
    StageStatus.SKIPPED: "green",
    StageStatus.RUNNING: "cyan",
    StageStatus.FAILED: "red",
    StageStatus.CANCELLED: "bright_black",
    StageStatus.PENDING: "bright_black",
}


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def sparkline(values: list[int]) -> str:
    top = max(values, default=0)
    if top == 0:
        return SPARKS[1] * len(values)
    return "".join(SPARKS[1 + round(v / top * (len(SPARKS) - 2))] for v in values)


def render(snapshot: Snapshot) -> RenderableType:
    parts: list[RenderableType] = []
    counts = " · ".join(f"{n} {state}" for state, n in snapshot.jobs.items())
    parts.append(Text(f"Recast  {snapshot.time:%H:%M:%S} UTC   jobs: {counts}", style="bold"))
    if snapshot.alerts:
        lines = Text("\n".join(f"{a.kind.value}: {a.message}" for a in snapshot.alerts))
        parts.append(Panel(lines, title="alerts", border_style="red"))
    if not snapshot.redis:
        return Group(*parts)

    queues = Table("queue", "workers", "busy", "waiting", "oldest wait", title="queues")
    for q in snapshot.queues.values():
        style = "red" if not q.workers else ""
        queues.add_row(
            q.name,
            str(len(q.workers)),
            str(q.busy_workers),
            str(q.depth),
            _age(q.oldest_wait_s),
            style=style,
        )
    parts.append(queues)

    workers = Table("worker", "queues", "busy", "running", title="workers")
    for w in snapshot.workers:
        slots = f"{len(w.running)}/{w.concurrency}" if w.concurrency else str(len(w.running))
        running = ", ".join(f"{r.job_id} {r.stage} {r.progress:.0f}%" for r in w.running)
        workers.add_row(w.hostname, ",".join(w.queues), slots, running or "idle")
    parts.append(workers)

    if snapshot.active:
        jobs = Table("job", "state", "source", "stages", title="running and queued jobs")
        for job in snapshot.active:
            bars = Table.grid(padding=(0, 1))
            for name, stage in job.stages.items():
                bars.add_row(
                    Text(name, style=STAGE_STYLE[stage.status]),
                    ProgressBar(total=100, completed=stage.progress, width=12),
                    Text(f"{stage.progress:>3.0f}% {stage.detail}"[:40]),
                )
            jobs.add_row(job.id, job.status.value, job.source[-40:], bars)
        parts.append(jobs)

    if snapshot.failures:
        failures = Table("time", "job", "stage", "code", "message", title="last failures")
        for f in snapshot.failures:
            failures.add_row(
                f"{f.time:%H:%M:%S}", f.job_id, f.stage or "", f.code, f.message[:80], style="red"
            )
        parts.append(failures)

    if snapshot.throughput is not None:
        t = snapshot.throughput
        finished = [b.succeeded + b.failed + b.cancelled for b in t.buckets]
        parts.append(
            Text(
                f"last hour: {t.succeeded} succeeded, {t.failed} failed, {t.cancelled} cancelled"
                f"   {sparkline(finished)}  (5-minute buckets)"
            )
        )
    return Group(*parts)


def cmd_status(args: argparse.Namespace) -> int:
    settings = load_settings(args.config)
    view = OpsView(settings)
    if args.json:
        snapshot = view.snapshot()
        json.dump(snapshot.model_dump(mode="json"), sys.stdout, indent=2)
        sys.stdout.write("\n")
        return EXIT_OK if snapshot.redis else EXIT_FAILED
    console = Console()
    if args.once or not console.is_terminal:
        snapshot = view.snapshot()
        console.print(render(snapshot))
        return EXIT_OK if snapshot.redis else EXIT_FAILED
    from rich.live import Live

    try:
        with Live(render(view.snapshot()), console=console, auto_refresh=False) as live:
            while True:
                time.sleep(args.interval)
                live.update(render(view.snapshot()), refresh=True)
    except KeyboardInterrupt:
        return EXIT_OK


def register(sub: Any) -> None:
    status = sub.add_parser(
        "status", help="workers, queues, running jobs, failures, throughput and alerts (live)"
    )
    status.add_argument("--json", action="store_true", help="print one snapshot as JSON")
    status.add_argument("--once", action="store_true", help="draw once, do not refresh")
    status.add_argument("--interval", type=float, default=1.0, help="seconds between redraws")
    status.set_defaults(func=cmd_status)
