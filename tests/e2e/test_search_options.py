"""Search options over real HTTP on both stores: filter expressions, pages, the score floor and the reader's
language in grouped results (the tiny index: 20 paragraphs, each in 11 languages, grouped by `group`)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import running_server, store_env

pytestmark = pytest.mark.e2e
QUERY = "Wer hat den Super Bowl 50 gewonnen?"


@pytest.fixture(scope="module")
def server(store: str, tiny_model: Path, tiny_index: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    env = {
        "SEARCH_MODEL_DIR": str(tiny_model),
        **store_env(store, tiny_index, tmp_path_factory.mktemp("options")),
        "SEARCH_MAX_RESULT_WINDOW": "60",
    }
    with running_server(env) as base:
        yield base


def search(server: str, **body: object) -> httpx.Response:
    return httpx.post(f"{server}/search", json={"query": QUERY, **body})


def results(server: str, **body: object) -> list[dict]:
    answer = search(server, **body)
    assert answer.status_code == 200, answer.text
    return answer.json()["results"]


def test_filter_operators_select_exactly(server: str) -> None:
    two_groups = results(server, top_k=50, filters={"group": {"$in": ["p001", "p002"]}})
    assert len(two_groups) == 22 and {r["metadata"]["group"] for r in two_groups} == {"p001", "p002"}
    one = results(server, top_k=50, filters={"group": {"$in": ["p001", "p002"]}, "$not": {"group": "p001"}})
    assert len(one) == 11 and {r["metadata"]["group"] for r in one} == {"p002"}
    either = results(server, top_k=50, languages=["de"], filters={"$or": [{"group": "p003"}, {"group": "p004"}]})
    assert sorted(r["metadata"]["group"] for r in either) == ["p003", "p004"]
    assert results(server, top_k=50, filters={"group": {"$exists": False}}) == []
    others = results(server, top_k=50, languages=["en"], filters={"group": {"$nin": ["p001"]}})
    assert len(others) == 19 and "p001" not in {r["metadata"]["group"] for r in others}


@pytest.mark.parametrize(
    ("filters", "where"),
    [
        ({"group": {"$gt": "soon"}}, "filters.group.$gt: a range takes a number or an ISO-8601 date"),
        ({"$or": [{"group": "p001"}, {"group": {"$regex": "p"}}]}, "filters.$or[1].group.$regex: unknown operator"),
        ({"group": ["p001"]}, 'filters.group: a list is not a value to equal; for "one of these" use {"$in"'),
    ],
)
def test_a_bad_filter_is_a_422_naming_the_part(server: str, filters: dict, where: str) -> None:
    answer = search(server, filters=filters)
    assert answer.status_code == 422 and where in answer.json()["detail"], answer.text


def test_pages_continue_the_ranking(server: str) -> None:
    first_twenty = results(server, top_k=20)
    second_page = search(server, top_k=10, offset=10).json()
    assert [r["id"] for r in second_page["results"]] == [r["id"] for r in first_twenty[10:]]
    assert [r["rank"] for r in second_page["results"]][:1] == [1] and second_page["offset"] == 10
    too_deep = search(server, top_k=10, offset=51)
    assert too_deep.status_code == 422 and "SEARCH_MAX_RESULT_WINDOW" in too_deep.json()["detail"]


def test_the_score_floor_drops_and_counts(server: str) -> None:
    ten = results(server, top_k=10)
    floor = ten[3]["score"]
    answer = search(server, top_k=10, min_score=floor).json()
    assert all(r["score"] >= floor for r in answer["results"])
    assert len(answer["results"]) + answer["below_min_score"] == 10 and answer["below_min_score"] >= 6
    batch = httpx.post(f"{server}/search/batch", json={"queries": [QUERY], "top_k": 10, "min_score": 1.0}).json()
    assert batch["results"][0]["results"] == [] and batch["results"][0]["below_min_score"] == 10


def test_groups_show_the_readers_language_and_keep_their_ranking(server: str) -> None:
    plain = results(server, top_k=8, group_by="group", group_size=2)
    for prefer in (["th"], ["zh", "de"]):
        shown = results(server, top_k=8, group_by="group", group_size=2, prefer_languages=prefer)
        assert [g["group"] for g in shown] == [g["group"] for g in plain]  # the ranking is unchanged
        assert [g["best_score"] for g in shown] == [g["best_score"] for g in plain]
        # every group has all 11 languages, so each shows the first preferred one, found even when the grouped
        # search had stopped before meeting it
        assert {g["lang"] for g in shown} == {prefer[0]}
    assert [g["lang"] for g in plain] == [g["members"][0]["lang"] for g in plain]
    flat = results(server, top_k=8, prefer_languages=["th"])
    assert [r["id"] for r in flat] == [r["id"] for r in results(server, top_k=8)]  # ungrouped: unchanged


def test_exact_search_is_asked_for_per_request(server: str) -> None:
    """A flat index (and a FLAT Milvus collection) is exact already: ``exact`` changes nothing there."""
    assert results(server, top_k=10, exact=True) == results(server, top_k=10)
    assert results(server, top_k=3, group_by="group", exact=True) == results(server, top_k=3, group_by="group")
    answer = search(server, exact="yes")
    assert answer.status_code == 422 and "exact" in answer.text
