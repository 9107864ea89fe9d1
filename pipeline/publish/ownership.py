"""Which source a published card belongs to.

A card id names one source (:func:`pipeline.core.source.card_id_for`), but ids made by an older
scheme, by hand or by a hash collision could still meet: before a card is written over, the
card in place must be of the same source (same extractor and the same source id, case kept).
Otherwise the job fails with ``card.conflict`` and the card in place stays as it is, unless the
producer forced the replacement (job option ``replace_card``).
"""

from __future__ import annotations

from typing import Any

from pipeline.core.card import Card
from pipeline.core.errors import ErrorCode, RecastError

FORCE_OPTION = "replace_card"
"""The job option that lets a job replace a card of another source."""


def forced(options: dict[str, Any]) -> bool:
    return options.get(FORCE_OPTION) is True


def same_source(existing: Card, new: Card) -> bool:
    return (existing.source.extractor, existing.source.id) == (new.source.extractor, new.source.id)


def check_owner(existing: Card | None, new: Card, *, force: bool = False) -> None:
    """Raise ``card.conflict`` when ``existing`` belongs to another source (unless forced)."""
    if existing is None or force or same_source(existing, new):
        return
    raise RecastError(
        ErrorCode.CARD_CONFLICT,
        f"The card {new.id} belongs to another source ({existing.source.extractor} "
        f"{existing.source.id!r}, not {new.source.id!r}); it was left as it is.",
    )
