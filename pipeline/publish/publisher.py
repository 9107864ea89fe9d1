"""Publishing a job's card from its stages, and the executor's early publisher.

:func:`publish_from_stages` is what the publish stages run: assemble the card from the
finished stages, write it (atomic to readers, never worse than the card in place), keep a
copy of what was published in the stage's directory, and queue the webhook.

:class:`CardPublisher` implements :class:`pipeline.core.stage.Publisher` for the executors: the
preview card (published from the ingest stage's metadata before any media work, and sent as
``card.preview``) and, when a job fails, ``job.failed`` plus the withdrawal of a preview that
this job published and nothing better replaced. A playable or ready card is never touched.
Both are retried while the storage is unavailable (within ``storage.retry_span_s``).
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

from pipeline.core import readers
from pipeline.core.card import Card, CardStatus
from pipeline.core.errors import ErrorCode, RecastError
from pipeline.core.fsutil import atomic_write_json
from pipeline.core.job import JobState, StageStatus, utcnow
from pipeline.core.settings import Settings
from pipeline.core.stage import StageContext, StageResult
from pipeline.core.workspace import Workspace
from pipeline.publish import ownership, poster, webhooks, writer
from pipeline.publish.assemble import Publication, StageOutput, assemble
from pipeline.publish.static import static_files
from pipeline.storage import Storage, open_storage, retry_storage

log = logging.getLogger("recast.publish")

RECORD_FILE = "published.json"
"""In the job's workspace: which card this job publishes (or published) a preview of."""

EVENT_FOR_STATUS = {
    CardStatus.PREVIEW: webhooks.EventType.CARD_PREVIEW,
    CardStatus.PLAYABLE: webhooks.EventType.CARD_PLAYABLE,
    CardStatus.READY: webhooks.EventType.CARD_READY,
}

Clock = Callable[[], datetime]


def card_event(card: Card, job_id: str) -> webhooks.WebhookEvent:
    return webhooks.WebhookEvent(
        type=EVENT_FOR_STATUS[card.status],
        job_id=job_id,
        card_id=card.id,
        card=json.loads(card.to_json()),
    )


def finished_outputs(ctx: StageContext, names: tuple[str, ...]) -> list[StageOutput]:
    outputs = []
    for name in names:
        result = ctx.input_result(name)
        if result is not None and result.status == StageStatus.DONE:
            outputs.append(StageOutput(name, ctx.input_dir(name), result))
    return outputs


def _keep_copy(out: Path, publication: Publication) -> None:
    """What was published, kept in the stage's directory (for a look, and for skip-if-done)."""
    copy = out / "published"
    copy.mkdir(parents=True, exist_ok=True)
    (copy / "card.json").write_text(publication.card.to_json(), "utf-8")
    for item in publication.files:
        if item.data is not None:
            (copy / item.key).write_bytes(item.data)


def publish_from_stages(
    ctx: StageContext,
    status: CardStatus,
    stages: tuple[str, ...],
    *,
    storage: Storage | None = None,
    now: datetime | None = None,
) -> StageResult:
    """Publish the card of ``status`` from the finished ``stages`` (plus ingest's metadata)."""
    settings = ctx.settings
    storage = storage or open_storage(settings)
    moment = now or utcnow()
    meta = readers.source_info(ctx)
    work = ctx.out / "work"
    in_place = writer.read_card(storage, meta.card_id)
    publication = assemble(
        meta=meta,
        outputs=finished_outputs(ctx, stages),
        status=status,
        event=ctx.spec.event,
        settings=settings,
        storage=storage,
        static=static_files(settings),
        now=moment,
        work=work,
        source_thumbnail=readers.source_thumbnail(ctx),
    )
    # A poster a producer chose by time outlives the job publishing the card again.
    publication = poster.keep_chosen_poster(publication, in_place, storage, settings, work)
    ctx.progress(20, f"publishing the {publication.card.status} card")
    outcome = writer.publish(
        storage, settings, publication, now=moment, force=ownership.forced(ctx.spec.options)
    )
    _keep_copy(ctx.out, publication)
    card = outcome.card
    if outcome.published:
        webhooks.notify(settings, card_event(card, ctx.job_id), ctx.spec.callback_url)
        detail = f"{card.status} card {card.id}"
    else:
        detail = f"the {card.status} card {card.id} in place is kept"
    ctx.progress(100, detail)
    return StageResult.done(
        ctx.out,
        detail=detail,
        card_id=card.id,
        card_status=str(card.status),
        published=outcome.published,
        uploaded=outcome.uploaded,
    )


class CardPublisher:
    """The executors' publisher (see :class:`pipeline.core.stage.Publisher`), with webhooks."""

    def __init__(
        self, settings: Settings, storage: Storage | None = None, clock: Clock = utcnow
    ) -> None:
        self.settings = settings
        self.storage = storage or open_storage(settings)
        self.clock = clock

    def preview(self, ctx: StageContext) -> None:
        """Publish the preview card; a failure here is a warning (the publish stage follows)."""
        try:
            self._preview(ctx)
        except Exception as error:  # the preview is a courtesy; it must not fail the ingest
            if isinstance(error, RecastError) and error.code == ErrorCode.CARD_CONFLICT:
                raise  # the card belongs to another source: fail before fetching the media
            log.exception("the preview card could not be published")
            ctx.warn(f"preview card not published: {error}")

    def _preview(self, ctx: StageContext) -> None:
        meta = readers.recorded_source_info(ctx)
        work = ctx.out / ".publish-preview"
        now = self.clock()
        # Recorded before the first byte goes out: a preview that fails half-way (a full disk)
        # leaves files that job_failed must find to withdraw.
        record = ctx.workspace.root / RECORD_FILE
        atomic_write_json(record, {"preview": meta.card_id})
        try:
            publication = assemble(
                meta=meta,
                outputs=[],
                status=CardStatus.PREVIEW,
                event=ctx.spec.event,
                settings=self.settings,
                storage=self.storage,
                static={},
                now=now,
                work=work,
                source_thumbnail=readers.recorded_thumbnail(ctx, meta),
            )
            outcome = writer.publish(
                self.storage,
                self.settings,
                publication,
                now=now,
                force=ownership.forced(ctx.spec.options),
            )
        except RecastError as error:
            if error.code == ErrorCode.CARD_CONFLICT:  # nothing went out; the card is not ours
                record.unlink(missing_ok=True)
            raise
        finally:
            shutil.rmtree(work, ignore_errors=True)
        if not outcome.published:
            return
        webhooks.notify(self.settings, card_event(outcome.card, ctx.job_id), ctx.spec.callback_url)

    def job_failed(self, job: JobState) -> None:
        """Withdraw the preview this job published (unless something better replaced it) and
        queue ``job.failed``. Both are retried in place while the storage is unavailable, for
        up to ``storage.retry_span_s``, so a job that failed while the output was full or
        read-only leaves no card and no index entry once the storage is back."""
        deadline = time.monotonic() + self.settings.storage.retry_span_s
        workspace = Workspace.for_job(self.settings.storage.workspace, job.id)
        card_id = job.card_id
        try:
            withdrawn = retry_storage(
                lambda: self._withdraw_preview(workspace, job.id),
                deadline,
                what=f"withdrawing the preview of failed job {job.id}",
            )
            card_id = withdrawn or card_id
        except RecastError as failure:
            log.error("the preview of failed job %s is still published: %s", job.id, failure)
        error = job.error.model_dump() if job.error else {"code": "internal.error"}
        event = webhooks.WebhookEvent(
            type=webhooks.EventType.JOB_FAILED, job_id=job.id, card_id=card_id, error=error
        )
        try:  # a retry after a partial failure queues a URL twice: same event id, de-duplicated
            retry_storage(
                lambda: webhooks.notify(self.settings, event, job.spec.callback_url),
                deadline,
                what=f"queueing job.failed of job {job.id}",
            )
        except RecastError as failure:
            log.error("job.failed of job %s was not queued: %s", job.id, failure)

    def _withdraw_preview(self, workspace: Workspace, job_id: str) -> str | None:
        """Withdraw the preview card recorded in the job's workspace; returns its id."""
        record = workspace.root / RECORD_FILE
        recorded = json.loads(record.read_text("utf-8")) if record.is_file() else {}
        card_id = recorded.get("preview")
        if not isinstance(card_id, str):
            return None
        if writer.withdraw(
            self.storage, self.settings, card_id, self.clock(), only_status=CardStatus.PREVIEW
        ):
            log.info("withdrew the preview card %s of failed job %s", card_id, job_id)
        record.unlink(missing_ok=True)
        return card_id

    def drain(self, timeout_s: float) -> bool:
        """Give queued webhooks up to ``timeout_s`` for their first attempt (at exit)."""
        if not webhooks.Outbox.for_settings(self.settings).files():
            return True
        return webhooks.dispatcher(self.settings).drain(timeout_s)
