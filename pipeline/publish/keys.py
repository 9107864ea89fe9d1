"""Where a card's control files live in storage, and the name of its lock: one spelling for the
writer, the preview poster and anything else that refers to them."""

from __future__ import annotations

CONTROL_FILES = ("card.json", "manifest.json")


def card_key(card_id: str) -> str:
    return f"{card_id}/card.json"


def manifest_key(card_id: str) -> str:
    return f"{card_id}/manifest.json"


def card_lock(card_id: str) -> str:
    return f"card/{card_id}"
