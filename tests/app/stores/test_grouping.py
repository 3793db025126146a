"""Grouped search is exact: the top_k groups by best-member score over the whole (filtered) index."""

from __future__ import annotations

import faiss
import numpy as np
import pytest

from app.corpus import Document
from app.errors import GroupingError
from app.manifest import IndexManifest
from app.stores.embedded.index import SearchIndex

LANGS = ["ar", "de", "en", "es", "zh"]


def random_index(n_groups: int = 60, loners: int = 20, seed: int = 0) -> tuple[SearchIndex, np.ndarray]:
    """n_groups groups of 5 translations (one per language) plus documents without the field."""
    rng = np.random.default_rng(seed)
    documents = [
        Document(f"g{g}-{lang}", f"text {g} {lang}", lang, {"group": f"g{g}", "n": g})
        for g in range(n_groups)
        for lang in LANGS
    ]
    documents += [Document(f"loner{i}", f"loner {i}", LANGS[i % 5], {"n": -1}) for i in range(loners)]
    vectors = rng.normal(size=(len(documents), 16)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    flat = faiss.IndexFlatIP(16)
    flat.add(vectors)
    manifest = IndexManifest(model_name="m", model_fingerprint="f", model_variant="fp32", embedding_dim=16, size=0)
    return SearchIndex(flat, documents, manifest), vectors


def brute_force_groups(index: SearchIndex, vectors: np.ndarray, query: np.ndarray, top_k: int, langs=None) -> list:  # type: ignore[no-untyped-def]
    best: dict[str, float] = {}
    for slot, score in enumerate(vectors @ query):
        document = index.passages.document(slot)
        if langs and document.lang not in langs:
            continue
        key = document.metadata.get("group", document.id)
        best[key] = max(best.get(key, -2.0), float(score))
    return sorted(best, key=lambda k: -best[k])[:top_k]


@pytest.mark.parametrize("first_fetch", [0, 3])  # 3: many doubling rounds before the groups are certain
def test_groups_are_the_exact_top_k_by_best_member(first_fetch: int) -> None:
    index, vectors = random_index()
    queries = np.random.default_rng(1).normal(size=(8, 16)).astype(np.float32)
    results = index.search_grouped(queries, 7, "group", first_fetch=first_fetch)
    for query, groups in zip(queries, results, strict=True):
        keys = [g.value if g.value is not None else g.members[0].document.id for g in groups]
        assert keys == brute_force_groups(index, vectors, query, 7)
        for group in groups:
            scores = [m.score for m in group.members]
            assert scores == sorted(scores, reverse=True)
            assert len({m.document.metadata.get("group", m.document.id) for m in group.members}) == 1


def test_languages_filter_applies_before_grouping() -> None:
    index, vectors = random_index()
    query = np.random.default_rng(2).normal(size=(1, 16)).astype(np.float32)
    (groups,) = index.search_grouped(query, 5, "group", languages=["de", "zh"])
    assert all(m.document.lang in ("de", "zh") for g in groups for m in g.members)
    keys = [g.value if g.value is not None else g.members[0].document.id for g in groups]
    assert keys == brute_force_groups(index, vectors, query[0], 5, {"de", "zh"})


def test_fewer_groups_than_asked_returns_them_all() -> None:
    index, _ = random_index(n_groups=3, loners=1)
    (groups,) = index.search_grouped(np.ones((1, 16), dtype=np.float32), 10, "group")
    assert len(groups) == 4 and sum(len(g.members) for g in groups) == 16


def test_new_documents_join_their_group() -> None:
    index, _ = random_index(n_groups=3, loners=0)
    query = np.zeros((1, 16), dtype=np.float32)
    query[0, 0] = 1.0
    index.upsert([Document("g1-fr", "texte", "fr", {"group": "g1"})], query.copy())
    (groups,) = index.search_grouped(query, 1, "group", first_fetch=index.size)
    assert groups[0].value == "g1" and groups[0].members[0].document.id == "g1-fr" and len(groups[0].members) == 6


def test_unknown_or_non_scalar_fields_are_refused() -> None:
    index, _ = random_index(n_groups=2, loners=0)
    with pytest.raises(GroupingError, match=r"no document has a metadata field 'nope'; groupable fields: \['group'"):
        index.search_grouped(np.ones((1, 16), dtype=np.float32), 3, "nope")
    index.upsert([Document("odd", "x", "en", {"group": ["a", "list"]})], np.ones((1, 16), dtype=np.float32))
    with pytest.raises(GroupingError, match="1 document\\(s\\) hold a list or object"):
        index.check_group_field("group")
    index.delete(["odd"])
    index.check_group_field("group")  # counts follow deletes
