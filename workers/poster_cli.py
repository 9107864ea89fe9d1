"""``recast poster CARD --time 12.5``: a ready card's poster made from the frame at a time.

Here (the default) on the output itself (``--out`` or ``storage.output``: a directory or
``s3://``), as :func:`pipeline.publish.poster.set_poster` does it, webhooks included; or with
``--api URL`` (``RECAST_API_URL``, token in ``RECAST_API_TOKEN``) through the producer API's
``POST /v1/cards/{id}/poster``. ``--time`` takes seconds (``12.5``) or a clock time
(``1:02:03.5``). Prints the new poster's picture and the time, or with ``--json`` the card as
published. A refusal is said with its code (``card.not_found``, ``card.not_ready``,
``poster.time_invalid``) and exit status 2.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from pipeline.cli.conventions import EXIT_OK, add_api_options, add_json_flag, emit_json
from pipeline.cli.main import _settings_from
from pipeline.core import logs
from pipeline.core.card import Card
from pipeline.core.clip import parse_time
from pipeline.core.errors import ErrorCode, RecastError
from pipeline.publish import webhooks
from pipeline.publish.poster import set_poster


def _time(text: str) -> float:
    try:
        return parse_time(text)
    except RecastError as error:
        raise RecastError(ErrorCode.POSTER_TIME_INVALID, error.message) from error


def _here(args: argparse.Namespace, time_s: float) -> Card:
    settings = _settings_from(args)
    logs.configure(settings.log.level, settings.log.json_lines)
    card = set_poster(settings, args.card, time_s)
    if settings.publish.webhook_urls:  # card.updated gets its first attempt before we exit
        webhooks.dispatcher(settings).drain(settings.publish.webhook_timeout_s + 5)
    return card


def _through_api(args: argparse.Namespace, time_s: float) -> Card:
    from workers.apiclient import ApiClient

    with ApiClient(args.api_url, args.api_token) as client:
        return client.set_poster(args.card, time_s)


def cmd_poster(args: argparse.Namespace) -> int:
    time_s = _time(args.time)
    card = _through_api(args, time_s) if args.api_url is not None else _here(args, time_s)
    if args.json:
        emit_json({"card": json.loads(card.to_json())})
        return EXIT_OK
    poster = card.poster
    assert poster is not None
    sys.stdout.write(f"{card.id}  poster from {poster.chosen_time:g} s: {poster.src}\n")
    return EXIT_OK


def register(sub: Any) -> None:
    poster = sub.add_parser(
        "poster",
        help="make a ready card's poster from the frame at a time (here, or --api)",
        description=__doc__.splitlines()[0] if __doc__ else None,
    )
    poster.add_argument("card", metavar="CARD", help="the ready card's id")
    poster.add_argument(
        "--time", required=True, metavar="TIME", help="seconds (12.5) or a clock time (1:02.5)"
    )
    poster.add_argument("--out", help="output directory or s3:// URL (here: storage.output)")
    add_json_flag(poster, help="print the card as published, as JSON")
    add_api_options(poster)
    poster.set_defaults(func=cmd_poster)
