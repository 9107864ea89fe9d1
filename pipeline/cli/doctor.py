"""``recast doctor``: check that this machine has what Recast needs, one line per check.

``recast doctor [--cluster] [--deep] [--json]`` checks the settings, ffmpeg and ffprobe (and the
encoders, muxers and filters the stages use), yt-dlp's JavaScript runtime, hls.js, the speech
model, the output and the workspace (writable, free space), and Redis and the broker
(``pipeline.ops.doctor`` has the checks). Each line starts with ``ok``, ``warn`` or ``FAIL``
and says what to do about anything not ok.

``--cluster``: this host runs workers or the API, so an unreachable Redis, broker or workspace
store is a failure (by default a warning: the local executor needs none of them).
``--deep``: hash the speech model's files and load it (seconds) instead of checking sizes.

Exit status: 0 when no check failed (warnings allowed), 1 otherwise.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from pipeline.ops.doctor import Report, load_checked_settings, run_checks

EXIT_OK, EXIT_FAILED = 0, 1


def cmd_doctor(args: argparse.Namespace) -> int:
    loaded, settings = load_checked_settings(args.config)
    report = Report([loaded])
    if settings is not None:
        report = Report(
            [loaded, *run_checks(settings, cluster=args.cluster, deep=args.deep).checks]
        )
    sys.stdout.write(report.json() if args.json else report.text())
    return EXIT_OK if report.ok else EXIT_FAILED


def register(sub: Any) -> None:
    doctor = sub.add_parser(
        "doctor", help="check ffmpeg, yt-dlp's JS runtime, hls.js, the speech model, storage, Redis"
    )
    doctor.add_argument(
        "--cluster",
        action="store_true",
        help="this host runs workers or the API: Redis and the broker must answer",
    )
    doctor.add_argument(
        "--deep", action="store_true", help="hash and load the speech model (slower)"
    )
    doctor.add_argument("--json", action="store_true", help="print the checks as JSON")
    doctor.set_defaults(func=cmd_doctor)
