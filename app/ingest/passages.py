"""Source documents -> the passages the index holds: split to the passage size, languages detected where missing.

A document within the passage size stays one passage with the document's id. A longer one becomes passages
``<id>#<n>`` whose metadata say where they come from: ``doc_id``, ``chunk`` (0-based position), ``start``/``end``
(character offsets into the document's text) and the document's ``title``. Splitting is deterministic, so the same
text always gives the same passages and ids. A passage without a language tag gets the detected one and
``lang_detected: true``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

from tqdm import tqdm

from app.corpus import Document
from app.encoder import OnnxEncoder
from app.ingest.languages import LanguageDetector, language_detector
from app.ingest.sources import Columns, CorpusError, ImportReport, SourceDocument, read_documents
from app.ingest.splitter import PassageSplitter
from app.settings import Settings

# Ids travel in URL paths (no whitespace or control characters): a file name's spaces are percent-encoded
_UNSAFE_IN_ID = re.compile(r"[\s\x00-\x1f\x7f]")


def safe_id(raw: str) -> str:
    return _UNSAFE_IN_ID.sub(lambda m: f"%{ord(m.group()):02X}", raw)


def passage_id(doc_id: str, chunk: int) -> str:
    return f"{doc_id}#{chunk}"


class PassageMaker:
    """Turns source documents into passages for one model's tokenizer and passage size."""

    def __init__(self, splitter: PassageSplitter, detector: LanguageDetector | None = None) -> None:
        self.splitter = splitter
        self._detector = detector

    @property
    def detector(self) -> LanguageDetector:
        if self._detector is None:
            self._detector = language_detector()
        return self._detector

    def passages(self, document: SourceDocument, tokens: int | None = None) -> list[Document]:
        """``tokens``: the document's token count (``splitter.count``), when the caller has it already."""
        doc_id = safe_id(document.id)
        pieces = self.splitter.split(document.text, tokens)
        base = _titled(document)
        if len(pieces) == 1:
            return [self._with_language(doc_id, pieces[0].text, document.lang, base)]
        return [
            self._with_language(
                passage_id(doc_id, chunk),
                piece.text,
                document.lang,
                {**base, "doc_id": doc_id, "chunk": chunk, "start": piece.start, "end": piece.end},
            )
            for chunk, piece in enumerate(pieces)
        ]

    def whole(self, document: SourceDocument) -> Document:
        """The document as one passage, however long (the caller refuses or truncates an over-long one)."""
        return self._with_language(safe_id(document.id), document.text, document.lang, _titled(document))

    def _with_language(self, passage_id: str, text: str, lang: str | None, metadata: dict) -> Document:
        if lang is None:
            return Document(passage_id, text, self.detector.detect(text), {**metadata, "lang_detected": True})
        return Document(passage_id, text, lang, metadata)


def passage_maker(
    encoder: OnnxEncoder, settings: Settings, passage_tokens: int | None = None, overlap_tokens: int | None = None
) -> PassageMaker:
    """The passage maker of a served model: ``passage_tokens`` or else SEARCH_PASSAGE_TOKENS capped at the model's
    limit, ``overlap_tokens`` or else SEARCH_PASSAGE_OVERLAP_TOKENS; ``ValueError`` when they do not fit."""
    limit = encoder.manifest.max_length
    size = passage_tokens or min(settings.passage_tokens, limit)
    if size > limit:
        raise ValueError(f"a passage of {size} tokens is above the model's limit of {limit} tokens")
    overlap = settings.passage_overlap_tokens if overlap_tokens is None else overlap_tokens
    return PassageMaker(PassageSplitter(encoder.tokenizer, encoder.prefix("passage"), size, overlap))


def _titled(document: SourceDocument) -> dict:
    return {**document.metadata, "title": document.title} if document.title else dict(document.metadata)


def iter_passages(
    path: Path, maker: PassageMaker, columns: Columns | None = None, report: ImportReport | None = None
) -> Iterator[Document]:
    """The passages of the documents under ``path`` as they are read (only the ids seen are kept), with a progress
    bar of documents and passages."""
    seen: set[str] = set()
    with tqdm(read_documents(path, columns, report), unit="doc", desc="reading documents") as bar:
        for document in bar:
            for passage in maker.passages(document):
                if passage.id in seen:  # "a#1" may be a document of its own as well as a passage of "a"
                    raise CorpusError(
                        f"{path}: passage id {passage.id!r} occurs twice; rename document {document.id!r}"
                    )
                seen.add(passage.id)
                yield passage
            bar.set_postfix(passages=len(seen), refresh=False)


def read_passages(
    path: Path, maker: PassageMaker, columns: Columns | None = None, report: ImportReport | None = None
) -> list[Document]:
    """Every passage of the documents under ``path``."""
    return list(iter_passages(path, maker, columns, report))
