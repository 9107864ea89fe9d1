"""The publish stages.

- ``publish_playable`` (after ``playable``): the card with status ``playable``, pointing at the
  provisional stream copy (``hls-copy/master.m3u8``), so the recording can be watched while the
  ladder is still being encoded. Skipped when there is no provisional stream.
- ``publish`` (after ``transcode``, ``thumbnails``, ``transcript``, ``chapters``, ``social``):
  the final card, status ``ready``, with every asset; it replaces the playable card and removes
  ``hls-copy/``.
  With nothing playable (no transcode stage), the card stays a preview, improved.

Both write the card, card.html, watch.html, oembed.json, manifest.json and the event index
(:mod:`pipeline.publish.writer`) and queue the webhook (``card.playable``, ``card.ready``).
"""

from __future__ import annotations

from pipeline.core import readers
from pipeline.core.card import CardStatus
from pipeline.core.job import StageStatus
from pipeline.core.stage import AssetRole, Queue, Stage, StageContext, StageResult
from pipeline.publish.publisher import publish_from_stages

READY_INPUTS = ("transcode", "thumbnails", "transcript", "chapters", "social")
PLAYABLE_INPUTS = ("playable",)


def run_publish(ctx: StageContext) -> StageResult:
    return publish_from_stages(ctx, CardStatus.READY, READY_INPUTS)


def run_publish_playable(ctx: StageContext) -> StageResult:
    result = ctx.input_result("playable")
    if result is None or result.status != StageStatus.DONE:
        return StageResult.skipped("no provisional stream to publish")
    if not any(asset.role == AssetRole.HLS_MASTER for asset in result.assets):
        return StageResult.skipped("the playable stage made no stream")
    return publish_from_stages(ctx, CardStatus.PLAYABLE, PLAYABLE_INPUTS)


PUBLISH_PLAYABLE = Stage(
    name="publish_playable",
    queue=Queue.PUBLISH,
    run=run_publish_playable,
    requires=(readers.INGEST, *PLAYABLE_INPUTS),
)

PUBLISH = Stage(
    name="publish",
    queue=Queue.PUBLISH,
    run=run_publish,
    requires=(readers.INGEST, *READY_INPUTS, "publish_playable"),
)
"""Requires ``publish_playable`` too, so the playable card can never land after the ready one."""
