"""What a search shows: pages, the score floor, and the member a group shows first."""

from __future__ import annotations

from app.corpus import Document, Group, Hit
from app.results import SearchSpec, group_page, hit_page, shown_member


def hit(doc_id: str, score: float, lang: str = "en") -> Hit:
    return Hit(Document(doc_id, "text", lang, {"g": doc_id[0]}), score)


HITS = [hit(f"h{i}", 1 - i / 10) for i in range(10)]


def test_pages_and_the_floor() -> None:
    assert [h.document.id for h in hit_page(HITS, SearchSpec(top_k=3, offset=2))] == ["h2", "h3", "h4"]
    page = hit_page(HITS, SearchSpec(top_k=5, offset=2, min_score=0.65))
    assert [h.document.id for h in page] == ["h2", "h3"] and page.below_min_score == 3
    assert hit_page(HITS, SearchSpec(top_k=5, offset=20)) == []


def test_the_shown_member_is_the_best_in_the_earliest_preferred_language() -> None:
    members = [hit("a1", 0.9, "vi"), hit("a2", 0.8, "de-ch"), hit("a3", 0.7, "en"), hit("a4", 0.6, "de")]
    assert shown_member(members, ["de", "en"]) == 1  # de-ch counts as German
    assert shown_member(members, ["en", "de"]) == 2
    assert shown_member(members, ["fr"]) == 0 and shown_member(members, []) == 0


def test_group_pages_keep_ranking_and_add_preferred_members_found_later() -> None:
    groups = [
        Group("a", [hit("a-vi", 0.9, "vi"), hit("a-en", 0.8, "en")]),
        Group("b", [hit("b-de", 0.85, "de")]),
        Group("c", [hit("c-vi", 0.5, "vi")]),
    ]

    def german_members(page: list[Group]) -> list[list[Hit]]:
        return [[hit("a-de", 0.7, "de")] if group.value == "a" else [] for group in page]

    page = group_page(groups, SearchSpec(top_k=3, prefer_languages=("de",)), german_members)
    assert [g.value for g in page] == ["a", "b", "c"]  # ranked by best score in any language
    assert [g.members[g.shown].document.id for g in page] == ["a-de", "b-de", "c-vi"]
    assert [m.document.id for m in page[0].members] == ["a-vi", "a-en", "a-de"] and page[0].best.score == 0.9
    floored = group_page(groups, SearchSpec(top_k=3, min_score=0.8), german_members)
    assert [g.value for g in floored] == ["a", "b"] and floored.below_min_score == 1
    assert [m.document.id for m in floored[0].members] == ["a-vi", "a-en"]  # no preference: none looked up
