"""``recast canary``: check that the installed yt-dlp still reads a list of known URLs.

``recast canary [--urls FILE] [--json]`` reads each URL of ``FILE`` (default
``config/canary.txt``) through Recast's yt-dlp wrapper without downloading
(:mod:`pipeline.ops.canary`) and prints one line per URL: ``ok`` and what was found, or
``FAILED`` with the error code and why.

Exit status: 0 when every URL is ok, and also when the canary was skipped because the network
is unreachable: the output then says ``skipped: offline`` (JSON: ``"status": "skipped"``), so
a skip is told apart from a pass by what is printed, never by the status. 1 when a URL failed;
2 when the list cannot be read or names no URL.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from pipeline.core.settings import load_settings
from pipeline.ops.canary import DEFAULT_URL_LIST, read_url_list, run_canary

EXIT_OK, EXIT_FAILED = 0, 1


def cmd_canary(args: argparse.Namespace) -> int:
    urls = read_url_list(Path(args.urls))
    report = run_canary(urls, load_settings(args.config))
    if args.json or getattr(args, "global_json", False):
        sys.stdout.write(json.dumps(report.as_json(), indent=2) + "\n")
    else:
        sys.stdout.write(report.text())
    return EXIT_FAILED if report.status == "failed" else EXIT_OK


def register(subparsers: Any) -> None:
    canary = subparsers.add_parser(
        "canary", help="check that yt-dlp still reads known URLs (skipped offline)"
    )
    canary.add_argument(
        "--urls", default=str(DEFAULT_URL_LIST), metavar="FILE", help="the URL list to read"
    )
    canary.add_argument("--json", action="store_true", help="print the report as JSON")
    canary.set_defaults(func=cmd_canary)
