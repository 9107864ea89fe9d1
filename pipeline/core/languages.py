"""Language tags for captions and transcripts: normalising them, and their English names.

Tags are BCP 47 as far as the sources allow: ``en``, ``en-GB``, ``pt-BR``. YouTube's
``en-orig`` (the original-language automatic track) is ``en``; Whisper's ``jw`` is ``jv``.
"""

from __future__ import annotations

import re

_TAG = re.compile(r"^[A-Za-z]{2,3}(?:[-_][A-Za-z0-9]{2,8})*$")
_ALIASES = {"jw": "jv", "iw": "he", "in": "id", "ji": "yi"}
_DROPPED_SUBTAGS = frozenset({"orig"})

NAMES = {
    "af": "Afrikaans", "ar": "Arabic", "be": "Belarusian", "bg": "Bulgarian", "bn": "Bengali",
    "bs": "Bosnian", "ca": "Catalan", "cs": "Czech", "cy": "Welsh", "da": "Danish",
    "de": "German", "el": "Greek", "en": "English", "es": "Spanish", "et": "Estonian",
    "eu": "Basque", "fa": "Persian", "fi": "Finnish", "fr": "French", "ga": "Irish",
    "gl": "Galician", "he": "Hebrew", "hi": "Hindi", "hr": "Croatian", "hu": "Hungarian",
    "hy": "Armenian", "id": "Indonesian", "is": "Icelandic", "it": "Italian", "ja": "Japanese",
    "jv": "Javanese", "ka": "Georgian", "kk": "Kazakh", "ko": "Korean", "lt": "Lithuanian",
    "lv": "Latvian", "mk": "Macedonian", "ms": "Malay", "mt": "Maltese", "nl": "Dutch",
    "no": "Norwegian", "nb": "Norwegian Bokmål", "nn": "Norwegian Nynorsk", "pl": "Polish",
    "pt": "Portuguese", "ro": "Romanian", "ru": "Russian", "sk": "Slovak", "sl": "Slovenian",
    "sq": "Albanian", "sr": "Serbian", "sv": "Swedish", "sw": "Swahili", "ta": "Tamil",
    "th": "Thai", "tr": "Turkish", "uk": "Ukrainian", "ur": "Urdu", "vi": "Vietnamese",
    "yi": "Yiddish", "zh": "Chinese", "yue": "Cantonese", "und": "Undetermined",
}  # fmt: skip


def normalise(tag: str) -> str | None:
    """``tag`` in canonical case (``en-GB``), or None when it is not a language tag."""
    tag = tag.strip()
    if not _TAG.match(tag):
        return None
    parts = [p for p in re.split(r"[-_]", tag) if p.lower() not in _DROPPED_SUBTAGS]
    primary = _ALIASES.get(parts[0].lower(), parts[0].lower())
    rest = [p.upper() if len(p) == 2 else p.title() if len(p) == 4 else p for p in parts[1:]]
    return "-".join([primary, *rest])


def base(tag: str) -> str:
    """The primary language subtag: ``en`` for ``en-GB``."""
    return (normalise(tag) or tag).split("-", 1)[0].lower()


def label(tag: str) -> str:
    """A human name for the tag: "English", "English (GB)"; the tag itself when unknown."""
    canonical = normalise(tag) or tag
    parts = canonical.split("-")
    name = NAMES.get(parts[0])
    if name is None:
        return canonical
    return f"{name} ({'-'.join(parts[1:])})" if len(parts) > 1 else name
