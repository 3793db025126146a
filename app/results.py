"""What a search shows of what the store found: the page at ``offset``, the score floor, and the member each group
shows first (the reader's language). Retrieval stays language-agnostic; only the presentation of a group changes."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from app.corpus import Group, Groups, Hit, Hits
from app.filters import Filter


@dataclass(frozen=True)
class SearchSpec:
    """What one search asks for (every query of a batch asks the same)."""

    top_k: int = 10
    offset: int = 0
    languages: list[str] | None = None
    where: Filter | None = None
    min_score: float | None = None
    group_by: str | None = None
    prefer_languages: tuple[str, ...] = ()
    truncate: bool = False
    exact: bool = False  # no approximate index: the true top-k, not the graph's

    @property
    def window(self) -> int:
        """How many results (or groups) the store must find: those skipped by ``offset`` and the page."""
        return self.offset + self.top_k


def hit_page(found: Sequence[Hit], spec: SearchSpec) -> Hits:
    """The page of passages at ``spec.offset``, without those below the floor."""
    page = Hits(found[spec.offset : spec.window])
    if spec.min_score is not None:
        kept = Hits(hit for hit in page if hit.score >= spec.min_score)
        kept.below_min_score = len(page) - len(kept)
        return kept
    return page


def group_page(
    found: Sequence[Group],
    spec: SearchSpec,
    preferred_members: Callable[[Sequence[Group]], list[list[Hit]]] | None = None,
) -> Groups:
    """The page of groups at ``spec.offset``: a group stays when its best member reaches the floor and lists only
    the members that do; each shows its best member in the earliest preferred language it has, else its best.

    A grouped search stops once the groups are certain, so it may not have met a group's member in the preferred
    language: ``preferred_members`` finds, per group of the page, its members in the preferred languages."""
    page = list(found[spec.offset : spec.window])
    extra = preferred_members(page) if preferred_members and spec.prefer_languages else [[] for _ in page]
    kept = Groups()
    for group, more in zip(page, extra, strict=True):
        members = _merged(group.members, more)
        if spec.min_score is not None:
            members = [m for m in members if m.score >= spec.min_score]
            if not members:
                continue
        kept.append(Group(group.value, members, shown_member(members, spec.prefer_languages)))
    kept.below_min_score = len(page) - len(kept)
    return kept


def _merged(members: list[Hit], more: list[Hit]) -> list[Hit]:
    known = {m.document.id for m in members}
    new = [hit for hit in more if hit.document.id not in known]
    return sorted(members + new, key=lambda hit: -hit.score) if new else members


def shown_member(members: Sequence[Hit], prefer_languages: Sequence[str]) -> int:
    """Index of the best-scoring member (members are best first) in the earliest preferred language present."""
    for lang in prefer_languages:
        for i, member in enumerate(members):
            if _same_language(member.document.lang, lang):
                return i
    return 0


def _same_language(tag: str, wanted: str) -> bool:
    """``de`` prefers ``de`` and ``de-ch``; ``de-ch`` prefers only ``de-ch``."""
    return tag == wanted or tag.startswith(wanted + "-")
