"""Where a card's control files live in storage, and the name of its lock: one spelling for the
writer, the preview poster and anything else that refers to them; and the key the social cut
is published under."""

from __future__ import annotations

CONTROL_FILES = ("card.json", "manifest.json")
SOCIAL_CUT_KEY = "mp4/social-9x16.mp4"
"""The 9:16 social cut, under the card's directory (beside the ladder's progressive MP4)."""


def card_key(card_id: str) -> str:
    return f"{card_id}/card.json"


def manifest_key(card_id: str) -> str:
    return f"{card_id}/manifest.json"


def card_lock(card_id: str) -> str:
    return f"card/{card_id}"
