"""``POST /v1/cards/{card_id}/poster``: a ready card's poster made from the frame at a time.

Synchronous (a frame is taken from the card's published MP4 and a few pictures are made: a
second or two for an HD recording, 1.5 s for 720p on two busy cores): the answer, 200, is the
card as now published
(:func:`pipeline.publish.poster.set_poster`). Refusals: 404 ``card.not_found``, 409
``card.not_ready`` (a preview or playable card, or one without an MP4), 422
``poster.time_invalid`` (outside ``[0, duration)``) or ``request.invalid`` (a malformed body).
The old pictures are removed after the answer, ``publish.gc_grace_s`` later.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Annotated

from fastapi import BackgroundTasks, FastAPI, Path, Response
from fastapi.params import Depends
from pydantic import BaseModel, ConfigDict, Field

from pipeline.core.card import Card
from pipeline.core.settings import Settings
from pipeline.publish.poster import set_poster
from pipeline.publish.writer import collect_garbage
from pipeline.storage import Storage
from workers.api.models import CARD_ID_PATTERN, refusals


class PosterBody(BaseModel):
    """Where in the recording the poster's frame is."""

    model_config = ConfigDict(extra="forbid")

    time: float = Field(allow_inf_nan=False, description="seconds from the start, in [0, duration)")


def install(
    api: FastAPI, settings: Settings, auth: Sequence[Depends], storage: Callable[[], Storage]
) -> None:
    @api.post(
        "/v1/cards/{card_id}/poster",
        dependencies=list(auth),
        tags=["cards"],
        operation_id="setCardPoster",
        summary="Choose a card's poster by time",
        response_model=Card,
        responses=refusals(401, 404, 409, 413, 422, 503),
    )
    def set_card_poster(
        card_id: Annotated[str, Path(pattern=CARD_ID_PATTERN)],
        body: PosterBody,
        background: BackgroundTasks,
    ) -> Response:
        """Make the poster (every size and format, the square crop, the placeholder) from the
        frame at ``time`` of the card's MP4 and republish the card, its pages and its event
        index; ``card.updated`` goes to the webhooks. The card remembers the time: a job
        publishing it again keeps this poster. 404 ``card.not_found``, 409
        ``card.not_ready``, 422 ``poster.time_invalid``."""
        card = set_poster(settings, card_id, body.time, storage=storage(), collect=False)
        background.add_task(
            collect_garbage, storage(), settings, card_id, grace_s=settings.publish.gc_grace_s
        )
        return Response(card.to_json(), media_type="application/json")
