"""``recast clip CARD --from 12:30 --to 14:05 --title TEXT``: a clip of a ready card, as a card.

Three ways, as the other commands have them:

- here and now (the default), like ``recast process``: the clip's job runs in this process
  with the local executor (``--out``/``--work`` as for ``process``), no Redis;
- ``--submit``: the clip's job is queued for the workers through Redis (``--wait`` follows it);
- ``--api URL`` (or ``RECAST_API_URL``, token in ``RECAST_API_TOKEN``): through the producer
  API's ``POST /v1/cards/{id}/clips`` (``--wait`` follows it).

``--from``/``--to`` take ``750``, ``750.25``, ``12:30`` or ``1:02:03.5``; ``--snap`` moves each
cut to the nearest pause between words (the times used are printed); ``--social`` asks for
the 9:16 social cut too (``--social-crop-x N``, ``--burn-captions``). A refusal is said with
its code (``clip.parent_not_found``, ``clip.parent_not_ready``, ``clip.range_invalid``) and
exit status 2; a clip job that fails exits 1 (2 when its input was at fault), as
``recast process`` and ``recast job`` do.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from rich.console import Console

from pipeline.cli import conventions
from pipeline.cli.conventions import EXIT_OK, emit_json
from pipeline.cli.main import StageBars
from pipeline.core import logs
from pipeline.core.clip import SOCIAL_OPTION, clock
from pipeline.core.errors import ErrorCode, RecastError
from pipeline.core.job import JobState, JobStatus
from pipeline.core.settings import Settings, load_settings
from pipeline.publish.clips import ClipPlan, ClipRequest, plan_clip
from pipeline.publish.keys import card_key
from pipeline.storage import open_storage
from workers.api.models import JobView
from workers.cli import RedisJobs, _exit_for, _follow, _jobs, _slug, _summary


def _request(args: argparse.Namespace) -> ClipRequest:
    return ClipRequest(
        parent=args.card,
        start=args.start,
        end=args.end,
        title=args.title,
        description=args.description or "",
        snap=args.snap,
    )


def _social(args: argparse.Namespace) -> dict[str, Any] | None:
    if not (args.social or args.social_crop_x is not None or args.burn_captions):
        return None
    return {"crop_x": args.social_crop_x, "captions": bool(args.burn_captions)}


def _event(args: argparse.Namespace, plan: ClipPlan) -> str | None:
    if args.event:
        return str(args.event)
    return plan.parent.event.name if plan.parent.event is not None else None


def _local_settings(args: argparse.Namespace) -> Settings:
    settings = load_settings(args.config)
    storage = {
        key: value
        for key, value in (("output", args.out), ("workspace", args.work))
        if value is not None
    }
    if not storage:
        return settings
    merged = settings.model_dump()
    merged["storage"].update(storage)
    return load_settings(args.config, **merged)


def _describe(clip: dict[str, Any]) -> str:
    moved = [name for name in ("start", "end") if clip["snapped"][name]]
    snapped = f" (snapped: {', '.join(moved)})" if moved else ""
    return f"{clip['id']}  {clock(clip['start'])}-{clock(clip['end'])} of {clip['parent']}{snapped}"


def _run_here(args: argparse.Namespace) -> int:
    """The clip's job in this process (the local executor), as ``recast process`` runs one."""
    from pipeline.engine.local import LocalExecutor
    from pipeline.publish.publisher import CardPublisher

    settings = _local_settings(args)
    console = Console(stderr=True)
    bars_enabled = not args.json and console.is_terminal
    if bars_enabled:
        logs.configure_for_terminal(console)
    else:
        logs.configure(settings.log.level, settings.log.json_lines)
    plan = plan_clip(open_storage(settings), settings, _request(args))
    social = _social(args)
    spec = plan.spec.job_spec(
        event=_event(args, plan), options={SOCIAL_OPTION: social} if social else None
    )
    publisher = CardPublisher(settings)
    with StageBars(console, enabled=bars_enabled) as bars:
        state = LocalExecutor(settings, observer=bars, publisher=publisher).run(spec)
    publisher.drain(settings.publish.webhook_timeout_s + 5)
    clip = plan.describe()
    if args.json:
        emit_json({"clip": clip, "job": _local_summary(state, settings)})
    else:
        sys.stdout.write(f"{_describe(clip)}\n")
        if state.status is JobStatus.SUCCEEDED:
            output = settings.storage.output.rstrip("/")
            sys.stdout.write(f"  ready: {output}/{card_key(plan.card_id)}\n")
    if state.status is JobStatus.SUCCEEDED:
        return EXIT_OK
    error = state.error
    failure = RecastError(ErrorCode(error.code), error.message) if error else None
    if failure is None:
        return conventions.EXIT_FAILED
    if not args.json:
        sys.stderr.write(f"error {failure.code}: {failure.message}\n")
    return conventions.exit_status_for(failure)


def _local_summary(state: JobState, settings: Settings) -> dict[str, Any]:
    summary: dict[str, Any] = {
        "id": state.id,
        "source": state.spec.source,
        "status": str(state.status),
        "card_id": state.card_id,
        "stages": {name: str(stage.status) for name, stage in state.stages.items()},
        "error": state.error.model_dump() if state.error else None,
    }
    if state.card_id:
        summary["card"] = f"{settings.storage.output.rstrip('/')}/{card_key(state.card_id)}"
    return summary


def _submit(args: argparse.Namespace) -> int:
    """The clip's job queued for the workers: through Redis, or through the API."""
    social = _social(args)
    with _jobs(args) as jobs:
        if isinstance(jobs, RedisJobs):
            settings = jobs.producer.settings
            plan = plan_clip(open_storage(settings), settings, _request(args))
            submitted = jobs.producer.submit_clip(
                plan,
                event=_event(args, plan),
                priority=args.priority,
                options={SOCIAL_OPTION: social} if social else None,
                force=args.force,
            )
            clip, view, new = plan.describe(), JobView.of(submitted.record), submitted.created
        else:
            from workers.apiclient import ApiClient

            assert isinstance(jobs, ApiClient)
            body: dict[str, Any] = {
                "from": args.start,
                "to": args.end,
                "title": args.title,
                "description": args.description or "",
                "snap": args.snap,
                "priority": args.priority,
                "force": args.force,
            }
            if args.event:
                body["event"] = args.event
            if social is not None:
                body["social"] = social
            answer = jobs.create_clip(args.card, body)
            clip = answer.clip.model_dump(exclude={"card_url"})
            view, new = jobs.get(answer.job.id), answer.job.new
        if args.wait:
            console = Console(stderr=True)
            [view] = _follow(jobs, [view.id], console, bars=console.is_terminal and not args.json)
    if args.json:
        emit_json({"clip": clip, "job": _summary(view) | {"new": new}})
    else:
        sys.stdout.write(f"{_describe(clip)}\n")
        note = "" if new else "  (asked for before)"
        sys.stdout.write(f"  job {view.id}  {view.status}{note}\n")
        if view.error is not None:
            sys.stdout.write(f"  error {view.error.code}: {view.error.message}\n")
    return _exit_for([view]) if args.wait else EXIT_OK


def cmd_clip(args: argparse.Namespace) -> int:
    if args.api_url is not None or args.submit:
        return _submit(args)
    if args.wait or args.priority != 5 or args.force:
        raise conventions.UsageError("--wait, --priority and --force go with --submit or --api")
    return _run_here(args)


def register(sub: Any) -> None:
    clip = sub.add_parser(
        "clip",
        help="cut a clip of a ready card into a card of its own (here, or --submit / --api)",
        description=__doc__.splitlines()[0] if __doc__ else None,
    )
    clip.add_argument("card", metavar="CARD", help="the ready card's id")
    clip.add_argument("--from", dest="start", required=True, metavar="TIME", help="12:30, 750.25")
    clip.add_argument("--to", dest="end", required=True, metavar="TIME", help="14:05, 845")
    clip.add_argument("--title", required=True, help="the clip's title")
    clip.add_argument("--description", help="the clip's description (default: none)")
    clip.add_argument(
        "--snap", action="store_true", help="move each cut to the nearest pause between words"
    )
    clip.add_argument("--event", type=_slug, help="the clip's event (default: the card's)")
    clip.add_argument("--social", action="store_true", help="also render the 9:16 social cut")
    clip.add_argument(
        "--social-crop-x", type=int, metavar="N", help="the social cut's left edge (pixels)"
    )
    clip.add_argument(
        "--burn-captions", action="store_true", help="burn captions into the social cut"
    )
    clip.add_argument("--out", help="output directory or s3:// URL (here: storage.output)")
    clip.add_argument("--work", help="workspace directory (here: storage.workspace)")
    clip.add_argument(
        "--submit", action="store_true", help="queue the clip's job for the workers (Redis)"
    )
    clip.add_argument(
        "--wait", "--follow", action="store_true", help="follow the queued job until it ends"
    )
    clip.add_argument("--priority", type=int, default=5, choices=range(10), metavar="0-9")
    clip.add_argument("--force", action="store_true", help="cut again even if done before")
    conventions.add_json_flag(clip, help="print the clip and its job as JSON")
    conventions.add_api_options(clip)
    clip.set_defaults(func=cmd_clip)
