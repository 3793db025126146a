"""The domain's plain types: a document (a passage as the index holds it), a search hit, a group of hits."""

from __future__ import annotations

from dataclasses import dataclass, field


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
