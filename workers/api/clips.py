"""``POST /v1/cards/{card_id}/clips``: a clip cut from a ready card becomes a card of its own.

The request is planned at once (:func:`pipeline.publish.clips.plan_clip`: the parent must be
published and ready, the range inside it; with ``snap`` each cut moves to a pause between
words) and refused with a stable code before any job exists: 404 ``clip.parent_not_found``,
409 ``clip.parent_not_ready``, 422 ``clip.range_invalid`` (or ``request.invalid`` for a
malformed body). The clip's job is then scheduled (its ingest cuts the parent's media, nothing
is downloaded) and the answer, 202, names the clip's card id, the times its cuts went to, and
the job. The same request again gives the same clip and job (``job.new`` false) unless
``force``. ``social`` asks for the 9:16 social cut too (the job option ``social``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Annotated, Any

from fastapi import FastAPI, Path
from fastapi.params import Depends
from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from pipeline.core.clip import SOCIAL_OPTION
from pipeline.core.redact import public_url
from pipeline.core.settings import Settings
from pipeline.publish.clips import ClipPlan, ClipRequest, plan_clip
from pipeline.storage import Storage
from workers.api.models import CARD_ID_PATTERN, Slug, SubmittedJob, Url, refusals
from workers.producer import Producer

TimeValue = (
    Annotated[float, Field(ge=0, allow_inf_nan=False)]
    | Annotated[str, StringConstraints(min_length=1, max_length=32, strip_whitespace=True)]
)


class SocialOptions(BaseModel):
    """The 9:16 social cut of the clip (rendered by its own stage)."""

    model_config = ConfigDict(extra="forbid")

    crop_x: int | None = Field(
        None, ge=0, description="left edge of the crop in source pixels; null: centred"
    )
    captions: bool = Field(False, description="burn the clip's captions in")


class ClipBody(BaseModel):
    """A clip of the card: ``from`` and ``to`` in the card's time, as seconds (``750``,
    ``750.25``) or clock times (``"12:30"``, ``"1:02:03.5"``)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    start: TimeValue = Field(alias="from", description="where the clip starts")
    end: TimeValue = Field(alias="to", description="where the clip ends (exclusive)")
    title: Annotated[str, StringConstraints(min_length=1, max_length=300, strip_whitespace=True)]
    description: Annotated[str, StringConstraints(max_length=5000)] = ""
    snap: bool = Field(False, description="move each cut to the nearest pause between words")
    event: Slug | None = Field(None, description="default: the card's event")
    priority: int = Field(5, ge=0, le=9, description="0 lowest, 9 most urgent")
    social: SocialOptions | None = Field(None, description="also render the 9:16 social cut")
    callback_url: Url | None = None
    force: bool = Field(False, description="cut and publish again even if done before")


class ClipTimes(BaseModel):
    start: float
    end: float


class ClipSnap(BaseModel):
    start: bool
    end: bool


class ClipView(BaseModel):
    id: str
    """The clip's card id (``<parent>-clip-<start ms>-<end ms>``)."""
    parent: str
    title: str
    start: float
    """Where the clip starts in the parent's time (after snapping)."""
    end: float
    duration: float
    requested: ClipTimes
    """Where the cuts were asked for."""
    snapped: ClipSnap
    """Which cut moved to a pause (with ``snap``)."""
    card_url: str
    """``/v1/cards/{id}``: the clip's card, once published."""

    @classmethod
    def of(cls, plan: ClipPlan) -> ClipView:
        described = plan.describe()
        return cls(**described, card_url=f"/v1/cards/{plan.card_id}")


class ClipResponse(BaseModel):
    clip: ClipView
    job: SubmittedJob


def install(
    api: FastAPI,
    settings: Settings,
    auth: Sequence[Depends],
    producer: Callable[[], Producer],
    storage: Callable[[], Storage],
) -> None:
    @api.post(
        "/v1/cards/{card_id}/clips",
        status_code=202,
        dependencies=list(auth),
        tags=["cards"],
        operation_id="createClip",
        summary="Cut a clip from a card",
        responses=refusals(401, 404, 409, 413, 422, 503),
    )
    def create_clip(
        card_id: Annotated[str, Path(pattern=CARD_ID_PATTERN)], body: ClipBody
    ) -> ClipResponse:
        """A new card cut from this ready card over [from, to): frame-accurate media, poster
        and storyboard of its own, its captions and transcript cut from the card's words.
        Nothing is downloaded; the job runs at once. 404 ``clip.parent_not_found``, 409
        ``clip.parent_not_ready``, 422 ``clip.range_invalid``."""
        plan = plan_clip(
            storage(),
            settings,
            ClipRequest(
                parent=card_id,
                start=body.start,
                end=body.end,
                title=body.title,
                description=body.description,
                snap=body.snap,
            ),
        )
        event = body.event or (plan.parent.event.name if plan.parent.event else None)
        options: dict[str, Any] = {}
        if body.social is not None:
            options[SOCIAL_OPTION] = body.social.model_dump()
        submitted = producer().submit_clip(
            plan,
            event=event,
            priority=body.priority,
            options=options,
            callback_url=body.callback_url,
            force=body.force,
        )
        record = submitted.record
        return ClipResponse(
            clip=ClipView.of(plan),
            job=SubmittedJob(
                id=record.id,
                source=public_url(record.state.spec.source, keep_query=True),
                status=record.state.status,
                new=submitted.created,
                url=f"/v1/jobs/{record.id}",
            ),
        )
