"""Language tags for captions and transcripts: normalising them, and their English names.

The one place that knows about languages; the tables are the ``langcodes`` library's (CLDR
and the IANA registry), not ours. Tags are BCP 47 as far as the sources allow: ``en``,
``en-GB``, ``pt-BR``, ``zh-Hant``; deprecated codes become their current ones (``iw`` is
``he``, Whisper's ``jw`` is ``jv``). YouTube's ``en-orig`` (the original-language automatic
track) is ``en``. Names are English ("German", "English (GB)").
"""

from __future__ import annotations

import re

import langcodes

_TAG = re.compile(r"^[A-Za-z]{2,3}(?:[-_][A-Za-z0-9]{1,8})*$")
"""What a source's language tag looks like: a two- or three-letter language first, so that
names such as YouTube's ``live_chat`` are not taken for tags."""
_DROPPED_SUBTAGS = frozenset({"orig"})


def normalise(tag: str) -> str | None:
    """``tag`` in its standard form (``en-GB``), or None when it is not a language tag."""
    tag = tag.strip()
    if not _TAG.match(tag):
        return None
    kept = "-".join(p for p in re.split(r"[-_]", tag) if p.lower() not in _DROPPED_SUBTAGS)
    try:
        return str(langcodes.standardize_tag(kept))
    except ValueError:  # langcodes' LanguageTagError
        return None


def base(tag: str) -> str:
    """The primary language subtag: ``en`` for ``en-GB``."""
    canonical = normalise(tag)
    if canonical is None:
        return tag.split("-", 1)[0].lower()
    return str(langcodes.Language.get(canonical).language or canonical)


def label(tag: str) -> str:
    """A human name for the tag: "English", "English (GB)"; the tag itself when unknown."""
    canonical = normalise(tag)
    if canonical is None:
        return tag
    primary, _, rest = canonical.partition("-")
    if not langcodes.tag_is_valid(primary):
        return canonical
    name = str(langcodes.Language.get(primary).language_name("en"))
    return f"{name} ({rest})" if rest else name
