"""The domain's plain types (a document, a search hit, a group of hits) and the JSONL corpus reader."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from app.jsonl import json_objects
from app.limits import metadata_problem


class CorpusError(ValueError):
    """A corpus record is malformed; the message names the file and line."""


@dataclass(frozen=True)
class Document:
    id: str
    text: str
    lang: str
    metadata: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Hit:
    document: Document
    score: float


@dataclass(frozen=True)
class Group:
    """Documents sharing one value of the grouping field (a document without it is a group of its own); members
    are every member the search found, best first."""

    value: object
    members: list[Hit]


def read_corpus(path: Path) -> Iterator[Document]:
    """Validate and yield JSONL records ``{"id", "text", "lang", "metadata"?}``; duplicate ids are an error."""
    seen: set[str] = set()
    for where, record in json_objects(path, CorpusError, ("id", "text", "lang")):
        metadata = record.get("metadata", {})
        if not isinstance(metadata, dict):
            raise CorpusError(f"{where}: 'metadata' must be an object")
        if problem := metadata_problem(metadata):
            raise CorpusError(f"{where}: {problem}")
        if record["id"] in seen:
            raise CorpusError(f"{where}: duplicate id {record['id']!r}")
        seen.add(record["id"])
        yield Document(record["id"], record["text"], record["lang"], metadata)
