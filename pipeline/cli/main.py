"""The ``recast`` command line.

``recast process URL|FILE... --out DIR`` runs jobs here and now with the local executor.
Other modules add their commands through :data:`COMMAND_MODULES` (each has ``register``).
The global options (``--version``, ``--json``, ``--api``/``--token``), JSON output, errors and
exit statuses every command shares are :mod:`pipeline.cli.conventions`.

Exit status: 0 when every job succeeded, 2 when the input was bad, 1 for other failures.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TextColumn

from pipeline.cli import conventions
from pipeline.cli.conventions import EXIT_BAD_INPUT, EXIT_FAILED, EXIT_OK
from pipeline.core import logs
from pipeline.core.errors import ErrorCode, RecastError
from pipeline.core.job import JobSpec, JobState, JobStatus
from pipeline.core.settings import Settings, load_settings
from pipeline.publish.keys import card_key
from pipeline.publish.ownership import FORCE_OPTION

# Modules that add subcommands: each defines ``register(subparsers)``.
COMMAND_MODULES: list[str] = [
    "workers.cli",
    "workers.clip_cli",
    "workers.poster_cli",
    "pipeline.cli.models",
    "pipeline.cli.webhooks",
    "pipeline.cli.status",
    "pipeline.cli.doctor",
    "pipeline.cli.canary",
]


class StageBars:
    """Rich progress bars, one per stage of the running job."""

    def __init__(self, console: Console, enabled: bool):
        self.enabled = enabled
        self.progress = Progress(
            TextColumn("{task.fields[stage]:<11}"),
            BarColumn(),
            TextColumn("{task.percentage:>5.1f}%"),
            TextColumn("{task.fields[detail]}"),
            console=console,
            transient=False,
        )
        self.tasks: dict[str, TaskID] = {}

    def __enter__(self) -> StageBars:
        if self.enabled:
            self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.enabled:
            self.progress.stop()

    def stage_changed(self, job: JobState, stage: str) -> None:
        state = job.stages[stage]
        detail = state.error.code if state.error else state.detail
        self.show(stage, state.progress, f"{state.status}: {detail}")

    def show(self, stage: str, progress: float, text: str) -> None:
        if not self.enabled:
            return
        if stage not in self.tasks:
            self.tasks[stage] = self.progress.add_task("", total=100, stage=stage, detail="")
        self.progress.update(self.tasks[stage], completed=progress, detail=text[:60])


def _settings_from(args: argparse.Namespace, **sections: dict[str, Any]) -> Settings:
    overrides: dict[str, Any] = {}
    storage: dict[str, Any] = {}
    if getattr(args, "out", None):
        storage["output"] = args.out
    if getattr(args, "work", None):
        storage["workspace"] = args.work
    if storage:
        overrides["storage"] = storage
    overrides.update(sections)
    if not overrides:
        return load_settings(args.config)
    base = load_settings(args.config)
    merged = base.model_dump()
    for section, values in overrides.items():
        merged[section].update(values)
    return load_settings(args.config, **merged)


def _job_summary(state: JobState, settings: Settings) -> dict[str, Any]:
    summary: dict[str, Any] = {
        "job_id": state.id,
        "source": state.spec.source,
        "status": str(state.status),
        "card_id": state.card_id,
        "workspace": str(Path(settings.storage.workspace).resolve() / state.id),
        "stages": {name: str(s.status) for name, s in state.stages.items()},
    }
    if state.card_id:
        summary["card"] = f"{settings.storage.output.rstrip('/')}/{card_key(state.card_id)}"
    if state.error:
        summary["error"] = state.error.model_dump()
    return summary


def _already_ingested(source: str, settings: Settings) -> bool:
    from pipeline.core.workspace import Workspace

    workspace = Workspace.for_job(settings.storage.workspace, JobSpec(source=source).job_id)
    state = workspace.load_state()
    return (
        state is not None
        and state.stages.get("ingest") is not None
        and str(state.stages["ingest"].status) == "done"
    )


def cmd_process(args: argparse.Namespace) -> int:
    from pipeline.core.hostgate import InMemoryHostGate
    from pipeline.engine.local import LocalExecutor
    from pipeline.publish.publisher import CardPublisher
    from pipeline.stages.ingest import expand

    settings = _settings_from(args)
    console = Console(stderr=True)
    bars_enabled = not args.json and console.is_terminal
    if bars_enabled:  # a person is watching: warnings above the bars, not JSON lines
        logs.configure_for_terminal(console)
    else:
        logs.configure(settings.log.level, settings.log.json_lines)
    results: list[dict[str, Any]] = []
    failures: list[RecastError | None] = []
    publisher = CardPublisher(settings)
    host_gate = InMemoryHostGate(settings.sources.backoff)  # one for every job of this run
    for submitted in args.sources:
        try:
            sources = (
                [submitted]
                if _already_ingested(submitted, settings)
                else expand(submitted, settings)
            )
        except RecastError as error:
            results.append({"source": submitted, "status": "failed", "error": error.to_dict()})
            failures.append(error)
            _say_error(console, submitted, error, args.json)
            continue
        for source in sources:
            options = {FORCE_OPTION: True} if args.replace_card else {}
            spec = JobSpec(source=source, event=args.event, options=options)
            with StageBars(console, enabled=bars_enabled) as bars:
                executor = LocalExecutor(
                    settings, observer=bars, publisher=publisher, host_gate=host_gate
                )
                state = executor.run(spec)
            results.append(_job_summary(state, settings))
            if state.status is JobStatus.SUCCEEDED:
                if not args.json:
                    console.print(f"[green]ready[/green] {source} -> {results[-1].get('card')}")
                continue
            failure = (
                RecastError(ErrorCode(state.error.code), state.error.message)
                if state.error
                else None
            )
            failures.append(failure)
            if failure is not None:
                _say_error(console, source, failure, args.json)
    # Webhooks due now get their attempt before we exit; retries wait in the outbox for the
    # next run (or `recast webhooks deliver`).
    publisher.drain(settings.publish.webhook_timeout_s + 5)
    if args.json:
        json.dump({"jobs": results}, sys.stdout, ensure_ascii=False, indent=2)
        sys.stdout.write("\n")
    if not failures:
        return EXIT_OK
    if all(f is not None and f.is_input_error for f in failures):
        return EXIT_BAD_INPUT
    return EXIT_FAILED


def _say_error(console: Console, source: str, error: RecastError, quiet: bool) -> None:
    if quiet:
        return
    console.print(
        f"[red]error[/red] {error.code}: {error.message} ({source})", markup=True, highlight=False
    )
    if error.hint:
        console.print(f"  {error.hint}", highlight=False)


def cmd_schema(args: argparse.Namespace) -> int:
    from pipeline.core.card import card_json_schema_text

    sys.stdout.write(card_json_schema_text())
    return EXIT_OK


def cmd_sample(args: argparse.Namespace) -> int:
    from pipeline.cli.sample import make_sample

    path = make_sample(Path(args.path), duration_s=args.duration)
    if args.json:
        conventions.emit_json({"path": str(path)})
    else:
        sys.stdout.write(f"{path}\n")
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    parser = conventions.CommandParser(prog="recast", description=__doc__.splitlines()[0])
    parser.add_argument("--config", help="a TOML file of settings (default config/recast.toml)")
    conventions.add_global_options(parser)
    sub = parser.add_subparsers(dest="command", required=True)

    process = sub.add_parser("process", help="run jobs here and now (local executor)")
    process.add_argument("sources", nargs="+", metavar="URL|FILE")
    process.add_argument("--out", help="output directory or s3:// URL (storage.output)")
    process.add_argument("--work", help="workspace directory (storage.workspace)")
    process.add_argument("--event", help="the event the recordings belong to")
    process.add_argument("--json", action="store_true", help="print the result as JSON")
    process.add_argument(
        "--replace-card",
        action="store_true",
        help="replace a card of the same id even if another source published it",
    )
    process.set_defaults(func=cmd_process)

    schema = sub.add_parser("schema", help="print the card's JSON Schema")
    conventions.add_json_flag(schema, help="the same: the schema is JSON")
    schema.set_defaults(func=cmd_schema)

    sample = sub.add_parser("sample", help="make a sample recording to try Recast on")
    sample.add_argument("path", nargs="?", default="recast-sample.mp4")
    sample.add_argument("--duration", type=float, default=8.0)
    conventions.add_json_flag(sample, help="print the path as JSON")
    sample.set_defaults(func=cmd_sample)

    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    arguments = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    try:
        args = parser.parse_args(arguments)
        conventions.prepare(args)
    except conventions.UsageError as error:
        return conventions.refuse_usage(error, json_mode="--json" in arguments)
    return conventions.run(args)


if __name__ == "__main__":
    raise SystemExit(main())
