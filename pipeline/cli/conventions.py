"""What every ``recast`` command shares: the global options, JSON output, errors as codes, and
the exit statuses.

Global options (before the command): ``--version``; ``--json``; ``--api URL`` and ``--token
TOKEN`` (also ``RECAST_API_URL`` / ``RECAST_API_TOKEN``, which keep the token out of shell
history), the producer API for the commands that can go through it instead of Redis.

**JSON.** ``recast --json COMMAND`` and ``recast COMMAND --json`` are the same. A command offers
JSON by giving its own parser a ``--json`` flag (``add_json_flag`` or a plain ``store_true``);
the global flag then sets ``args.json`` for it. A command without one refuses the global
flag (exit 2); ``refuse_json`` says why (``worker`` and ``api`` run until stopped and already
log JSON lines). With JSON,
stdout carries exactly one JSON document; a failure is ``{"error": {"code", "message",
"hint"}}`` on stdout (the API's error body, without ``details``) with the same exit status,
and nothing is written to stderr but log lines.

**Exit statuses.** 0 success; 1 a failure (a job failed or was cancelled, Redis or the API
unreachable, a refused token); 2 bad input (a usage error, a bad setting, a request the API
refuses as invalid, or a job whose error is one of ``pipeline.core.errors.INPUT_CODES``); 3 a
job asked about has not finished yet (``recast job ID`` without ``--follow``); 130 after Ctrl-C.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import platform
import sys
from collections.abc import Sequence
from typing import Any, NoReturn

from pipeline.core.errors import ErrorCode, RecastError

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT, EXIT_NOT_FINISHED = 0, 1, 2, 3
EXIT_INTERRUPTED = 130
"""Ctrl-C (128 + SIGINT, as shells report it), e.g. while following a job."""

API_URL_ENV = "RECAST_API_URL"
API_TOKEN_ENV = "RECAST_API_TOKEN"  # noqa: S105 (the variable's name, not a token)

BAD_INPUT_CODES = frozenset(
    {ErrorCode.CONFIG_INVALID, ErrorCode.REQUEST_INVALID, ErrorCode.REQUEST_TOO_LARGE}
)
"""Besides the input codes of the errors module: what the user typed or configured is wrong."""


class UsageError(Exception):
    """The command line cannot be run as given (exit 2, ``request.invalid`` in JSON)."""

    def __init__(self, message: str, parser: argparse.ArgumentParser | None = None):
        super().__init__(message)
        self.message = message
        self.parser = parser


class CommandParser(argparse.ArgumentParser):
    """An argument parser whose errors reach :func:`refuse_usage` (to be said in JSON when
    asked) instead of printing and exiting on the spot. Subparsers inherit the class."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(message, self)


def versions() -> dict[str, str]:
    """Recast's version and those of the tools it runs (``not found`` for a missing one)."""
    from pipeline.tools import ffmpeg_tools

    found: dict[str, str] = {}
    for name, distribution in (("recast", "recast"), ("yt_dlp", "yt-dlp")):
        try:
            found[name] = importlib.metadata.version(distribution)
        except importlib.metadata.PackageNotFoundError:
            found[name] = "not found"
    try:
        found["ffmpeg"] = ffmpeg_tools.tool_version(ffmpeg_tools.FFMPEG, timeout_s=5.0)
    except OSError:
        found["ffmpeg"] = "not found"
    found["python"] = platform.python_version()
    return found


class VersionAction(argparse.Action):
    """``--version``: one line (``recast 0.1.0 (yt-dlp ..., ffmpeg ..., Python ...)``), or a
    JSON object after ``--json``; exit 0."""

    def __init__(self, option_strings: Sequence[str], dest: str, **kwargs: Any):
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, **kwargs)

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: Any,
        option_string: str | None = None,
    ) -> None:
        found = versions()
        if getattr(namespace, "global_json", False):
            emit_json(found)
        else:
            sys.stdout.write(
                f"recast {found['recast']} (yt-dlp {found['yt_dlp']}, "
                f"ffmpeg {found['ffmpeg']}, Python {found['python']})\n"
            )
        parser.exit(EXIT_OK)


def add_global_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--version", action=VersionAction, help="print the versions of Recast, yt-dlp, ffmpeg"
    )
    parser.add_argument(
        "--json",
        dest="global_json",
        action="store_true",
        help="print one JSON document on stdout (errors too); the same as COMMAND --json",
    )
    parser.add_argument(
        "--api",
        dest="api_url",
        metavar="URL",
        help=f"go through the producer API at URL instead of Redis (or ${API_URL_ENV})",
    )
    parser.add_argument(
        "--token",
        dest="api_token",
        metavar="TOKEN",
        help=f"the API's bearer token (better: ${API_TOKEN_ENV}, out of shell history)",
    )


def add_json_flag(parser: argparse.ArgumentParser, help: str = "print JSON") -> None:
    """Give a command its ``--json`` flag (which also lets it honour ``recast --json``)."""
    parser.add_argument("--json", action="store_true", help=help)


def refuse_json(parser: argparse.ArgumentParser, reason: str) -> None:
    """A command that cannot print JSON: ``--json`` (its own or the global one) is refused
    with ``reason`` instead of being an unknown option."""
    parser.add_argument("--json", action="store_true", help=argparse.SUPPRESS)
    parser.set_defaults(no_json_reason=reason)


def add_api_options(parser: argparse.ArgumentParser) -> None:
    """Let a command go through the producer API: ``--api``/``--token`` after the command too
    (they do not overwrite the global ones when absent), and the environment variables."""
    parser.add_argument(
        "--api", dest="api_url", metavar="URL", default=argparse.SUPPRESS, help=argparse.SUPPRESS
    )
    parser.add_argument(
        "--token", dest="api_token", default=argparse.SUPPRESS, help=argparse.SUPPRESS
    )
    parser.set_defaults(api_capable=True)


def wants_json(args: argparse.Namespace) -> bool:
    return bool(getattr(args, "json", False) or getattr(args, "global_json", False))


def _command(args: argparse.Namespace) -> str:
    return str(getattr(args, "command", "") or "")


def prepare(args: argparse.Namespace) -> None:
    """Settle the global options for the command about to run; :class:`UsageError` when the
    command cannot honour them."""
    command = _command(args)
    if getattr(args, "global_json", False):
        if "json" not in vars(args):
            raise UsageError(f"recast {command} has no JSON output")
        args.json = True
    reason = getattr(args, "no_json_reason", None)
    if reason and getattr(args, "json", False):
        raise UsageError(f"recast {command} has no JSON output: {reason}")
    if getattr(args, "api_capable", False):
        if args.api_token is not None and args.api_url is None and not os.environ.get(API_URL_ENV):
            raise UsageError(f"--token needs --api URL (or {API_URL_ENV})")
        args.api_url = args.api_url or os.environ.get(API_URL_ENV) or None
        args.api_token = args.api_token or os.environ.get(API_TOKEN_ENV) or None
        if args.api_url is not None and not args.api_url.startswith(("http://", "https://")):
            raise UsageError(f"--api takes an http:// or https:// URL, not {args.api_url!r}")
    elif args.api_url is not None or args.api_token is not None:
        raise UsageError(f"recast {command} works on Redis or files directly; it has no --api mode")


def emit_json(value: Any) -> None:
    """One JSON document on stdout."""
    json.dump(value, sys.stdout, ensure_ascii=False, indent=2, default=str)
    sys.stdout.write("\n")


def exit_status_for(error: RecastError) -> int:
    bad_input = error.is_input_error or error.code in BAD_INPUT_CODES
    return EXIT_BAD_INPUT if bad_input else EXIT_FAILED


def report_error(error: RecastError, json_mode: bool) -> int:
    """Say why the command failed (stdout in JSON, else stderr) and return its exit status."""
    if json_mode:
        emit_json(
            {"error": {"code": str(error.code), "message": error.message, "hint": error.hint}}
        )
    else:
        sys.stderr.write(f"error {error.code}: {error.message}\n")
        if error.hint:
            sys.stderr.write(f"  {error.hint}\n")
    return exit_status_for(error)


def refuse_usage(error: UsageError, json_mode: bool) -> int:
    prog = error.parser.prog if error.parser is not None else "recast"
    if json_mode:
        hint = f"See {prog} --help."
        body = {"code": str(ErrorCode.REQUEST_INVALID), "message": error.message, "hint": hint}
        emit_json({"error": body})
    else:
        if error.parser is not None:
            error.parser.print_usage(sys.stderr)
        sys.stderr.write(f"{prog}: error: {error.message}\n")
    return EXIT_BAD_INPUT


def run(args: argparse.Namespace) -> int:
    """Run the parsed command; a :class:`RecastError` it raises becomes its exit status."""
    json_mode = wants_json(args)
    try:
        code: int = args.func(args)
    except UsageError as error:
        return refuse_usage(error, json_mode)
    except RecastError as error:
        return report_error(error, json_mode)
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    return code
