"""Publishing cost: the publish stage against a bare copy of the same files, and a republish of
an unchanged card, on the local back end and on S3 (moto's server, the real S3 protocol).

A finished job is laid out as the stages leave it (tests/support/publishing.py): a 10-minute
320x180 recording as HLS (2 s segments, about 300 files), an MP4, an M4A, posters, storyboard,
captions and transcript. Measured side by side, in one run, for each back end:

- **bare**: every file put into storage under its key, nothing else (no checksums, no pages,
  no manifest, no lock, no index): the floor any publisher pays;
- **publish**: the ``publish`` stage: assemble the card from the assets' roles, validate it,
  render card.html/watch.html/oEmbed, hash every file for the manifest, lock, upload leaves
  first, manifest, card, event index: overhead = publish / bare - 1;
- **republish**: the stage again on the unchanged job: files the manifest already lists with
  the same checksum are not uploaded again: republish / publish.

    .venv/bin/python bench/bench_publish.py [--minutes 10] [--runs 3]
"""

from __future__ import annotations

import argparse
import logging
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pipeline.core.card import CardStatus  # noqa: E402
from pipeline.core.settings import Settings  # noqa: E402
from pipeline.core.stage import StageResult  # noqa: E402
from pipeline.publish import webhooks  # noqa: E402
from pipeline.publish.publisher import publish_from_stages  # noqa: E402
from pipeline.stages.publish import READY_INPUTS  # noqa: E402
from pipeline.storage import Storage, open_storage  # noqa: E402
from tests.conftest import make_settings  # noqa: E402
from tests.support.publishing import Job, JobMedia, make_job, stage_context  # noqa: E402
from tests.support.s3server import S3Server  # noqa: E402


def bare_copy(job: Job, storage: Storage, prefix: str) -> int:
    count = 0
    for stage in ("transcode", "thumbnails", "transcript"):
        directory = job.workspace.stage_dir(stage)
        result = StageResult.model_validate_json((directory / "_stage.json").read_text())
        for asset in result.assets:
            storage.put_file(f"{prefix}/{asset.key}", directory / asset.file)
            count += 1
    return count


def measure(settings: Settings, media: JobMedia, runs: int) -> dict[str, float]:
    best = {"bare": 1e9, "publish": 1e9, "republish": 1e9}
    files = 0
    for run in range(runs):
        job = make_job(media, settings, stages=("ingest", "transcode", "thumbnails", "transcript"))
        storage = open_storage(settings)
        start = time.perf_counter()
        files = bare_copy(job, storage, f"bare-{run}")
        best["bare"] = min(best["bare"], time.perf_counter() - start)
        start = time.perf_counter()
        publish_from_stages(stage_context(job, settings), CardStatus.READY, READY_INPUTS)
        best["publish"] = min(best["publish"], time.perf_counter() - start)
        start = time.perf_counter()
        publish_from_stages(stage_context(job, settings), CardStatus.READY, READY_INPUTS)
        best["republish"] = min(best["republish"], time.perf_counter() - start)
        for key in storage.list(""):
            storage.delete(key)
    best["files"] = files
    return best


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    logging.disable(logging.WARNING)
    tmp = Path(tempfile.mkdtemp(prefix="bench-publish-"))
    try:
        media = JobMedia(tmp / "media", duration=args.minutes * 60)
        rows = []
        with S3Server() as s3:
            for backend in ("local", "s3"):
                storage: dict[str, str] = {}
                if backend == "s3":
                    storage = {"output": f"s3://{s3.bucket('bench')}/site"}
                settings = make_settings(
                    tmp / backend,
                    storage=storage,
                    publish={"gc_grace_s": 0, **s3.publish_settings()},
                )
                rows.append((backend, measure(settings, media, args.runs)))
                webhooks.stop_dispatchers()
        print(f"{args.minutes:g}-minute recording, best of {args.runs} runs")
        print(
            "| back end | files | bare s | publish s | overhead | republish s | republish/publish |"
        )
        print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
        for backend, r in rows:
            print(
                f"| {backend} | {r['files']:.0f} | {r['bare']:.2f} | {r['publish']:.2f} | "
                f"{r['publish'] / r['bare'] - 1:+.0%} | {r['republish']:.2f} | "
                f"{r['republish'] / r['publish']:.2f} |"
            )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
