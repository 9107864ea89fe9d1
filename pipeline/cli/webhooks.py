"""``recast webhooks``: look at and drive the webhook outbox.

- ``recast webhooks status``: pending deliveries (next attempt, attempts, last error) and the
  number of dead letters;
- ``recast webhooks deliver [--wait S]``: attempt every delivery that is due now; with
  ``--wait``, keep delivering for up to S seconds (retries included).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

from pipeline.cli.conventions import add_json_flag, emit_json
from pipeline.publish import webhooks


def register(sub: Any) -> None:
    parser = sub.add_parser("webhooks", help="the webhook outbox: status, deliver")
    actions = parser.add_subparsers(dest="action", required=True)
    status = actions.add_parser("status", help="pending deliveries and dead letters (JSON)")
    add_json_flag(status, help="the same: the status is JSON")
    status.set_defaults(func=cmd_status)
    deliver = actions.add_parser("deliver", help="attempt the deliveries that are due")
    deliver.add_argument("--wait", type=float, default=0.0, metavar="S")
    add_json_flag(deliver, help="print the attempts and what is left as JSON")
    deliver.set_defaults(func=cmd_deliver)


def _settings(args: argparse.Namespace) -> Any:
    from pipeline.core.settings import load_settings

    return load_settings(args.config)


def cmd_status(args: argparse.Namespace) -> int:
    settings = _settings(args)
    outbox = webhooks.Outbox.for_settings(settings)
    pending = []
    for path in outbox.files():
        delivery = outbox.load(path)
        if delivery is not None:
            pending.append(
                {
                    "event_id": delivery.event_id,
                    "type": str(delivery.event_type),
                    "url": delivery.url,
                    "attempts": delivery.attempts,
                    "next_attempt_in_s": round(max(0.0, delivery.next_attempt - time.time()), 1),
                    "last_error": delivery.last_error,
                }
            )
    dead = len(list(outbox.dead.glob("*.json"))) if outbox.dead.is_dir() else 0
    json.dump({"pending": pending, "dead": dead}, sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0


def cmd_deliver(args: argparse.Namespace) -> int:
    settings = _settings(args)
    sender = webhooks.Sender(settings)
    deadline = time.monotonic() + max(0.0, args.wait)
    attempted = sender.deliver_due()
    while time.monotonic() < deadline and sender.outbox.files():
        time.sleep(min(1.0, max(0.0, deadline - time.monotonic())))
        attempted += sender.deliver_due()
    left = len(sender.outbox.files())
    if args.json:
        emit_json({"attempts": attempted, "pending": left})
    else:
        sys.stdout.write(f"{attempted} attempts, {left} deliveries pending\n")
    return 0 if left == 0 else 1
