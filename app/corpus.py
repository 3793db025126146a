"""The domain's plain types: a document (a passage as the index holds it), a search hit, a group of hits; and what
metadata a document may carry."""

from __future__ import annotations

import math
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
    shown: int = 0  # the member shown for the group (the best one, or the best in the reader's language)

    @property
    def best(self) -> Hit:
        return self.members[0]


class Hits(list[Hit]):
    """One query's passages, best first: what a search returns per query."""

    below_min_score = 0  # passages of the page dropped by the score floor


class Groups(list[Group]):
    """One query's groups, best first: what a grouped search returns per query."""

    below_min_score = 0  # groups of the page dropped by the score floor


# Deeper metadata is refused at the door: pydantic's serialiser stops at 255 nested levels, so a document stored
# deeper would make every response that carries it fail. Nobody filters or groups on anything nested anyway.
MAX_METADATA_DEPTH = 32


def metadata_problem(metadata: object, max_depth: int = MAX_METADATA_DEPTH) -> str | None:
    """Why ``metadata`` cannot be stored and served back as JSON (too deep, NaN or Infinity), or None."""
    pending: list[tuple[object, int, str]] = [(metadata, 1, "metadata")]
    while pending:
        value, depth, where = pending.pop()
        if isinstance(value, float) and not math.isfinite(value):
            return f"{where} is {value}; JSON has no NaN or Infinity"
        if isinstance(value, dict | list):
            if depth > max_depth:
                shown = where if len(where) <= 80 else where[:80] + "…"
                return f"metadata nests more than {max_depth} levels of objects and arrays (at {shown})"
            items = value.items() if isinstance(value, dict) else enumerate(value)
            pending += [(item, depth + 1, f"{where}[{key!r}]") for key, item in items]
    return None
