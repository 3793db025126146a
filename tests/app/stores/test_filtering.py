"""Both stores hold to the filter language's meaning (``app.filters.matches``): random documents, random filters,
searched through each store and compared with the brute-force reference, before and after writes."""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path

import faiss
import numpy as np
import pytest

from app.corpus import Document
from app.filters import Filter, matches, parse_filter
from app.manifest import IndexManifest
from app.stores.base import Store
from app.stores.embedded.collection import Collection
from app.stores.embedded.index import SearchIndex
from app.stores.milvus import CollectionIdentity, MilvusStore
from tests.filter_cases import random_filter, random_metadata

DIM, SIZE = 8, 120
MANIFEST = IndexManifest(model_name="m", model_fingerprint="f" * 64, model_variant="fp32", embedding_dim=DIM, size=0)


def random_documents(rng: random.Random, n: int, prefix: str = "d") -> list[Document]:
    languages = ["en", "de", "zh"]
    return [Document(f"{prefix}{i}", f"text {i}", rng.choice(languages), random_metadata(rng)) for i in range(n)]


def vectors_for(n: int, seed: int) -> np.ndarray:
    vectors = np.random.default_rng(seed).normal(size=(n, DIM)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


@pytest.fixture(params=["embedded", "milvus"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    if request.param == "embedded":
        SearchIndex(faiss.IndexFlatIP(DIM), [], MANIFEST).save(tmp_path / "index")
        opened: Store = Collection(tmp_path / "index")
    else:
        milvus = MilvusStore(str(tmp_path / "filters.db"))
        milvus.open(CollectionIdentity("m", "f" * 64, "fp32", DIM))
        opened = milvus
    yield opened
    opened.close()


def found_ids(store: Store, where: Filter | None, languages: list[str] | None = None) -> set[str]:
    query = vectors_for(1, 99)
    return {hit.document.id for hit in store.search(query, 4 * SIZE, languages, where)[0]}


def expected_ids(documents: dict[str, Document], where: Filter, languages: list[str] | None = None) -> set[str]:
    return {
        d.id for d in documents.values() if matches(d.metadata, where) and (languages is None or d.lang in languages)
    }


def test_random_filters_match_the_reference_before_and_after_writes(store: Store) -> None:
    rng = random.Random(11)
    documents = random_documents(rng, SIZE)
    store.upsert(documents, vectors_for(SIZE, 1))
    held = {d.id: d for d in documents}
    ops_seen: set[str] = set()

    def check(n_filters: int) -> None:
        for _ in range(n_filters):
            raw = random_filter(rng)
            ops_seen.update(key for key in str(raw).split("'") if key.startswith("$"))
            where = parse_filter(raw)
            languages = rng.choice([None, ["de"], ["en", "zh"]])
            assert found_ids(store, where, languages) == expected_ids(held, where, languages), raw

    check(150)
    # replace a third with new metadata, delete a sixth: the postings must follow
    replaced = [Document(d.id, d.text, d.lang, random_metadata(rng)) for d in documents[::3]]
    store.upsert(replaced, vectors_for(len(replaced), 2))
    held.update({d.id: d for d in replaced})
    gone = [d.id for d in documents[1::6]]
    store.delete(gone)
    for doc_id in gone:
        held.pop(doc_id)
    check(150)
    assert ops_seen >= {"$and", "$or", "$not", "$eq", "$ne", "$in", "$nin", "$gt", "$gte", "$lt", "$lte", "$exists"}


def test_count_scroll_and_delete_select_what_search_selects(store: Store) -> None:
    rng = random.Random(5)
    documents = random_documents(rng, SIZE)
    store.upsert(documents, vectors_for(SIZE, 3))
    held = {d.id: d for d in documents}
    for _ in range(40):
        where = parse_filter(random_filter(rng))
        languages = rng.choice([None, ["de"], ["en", "zh"]])
        expected = expected_ids(held, where, languages)
        assert store.count(languages, where) == len(expected)
        listed: list[str] = []
        after = None
        while page := store.scroll(7, after, languages, where):
            assert len(page) <= 7
            listed += [d.id for d in page]
            after = page[-1].id
        assert listed == sorted(expected)
    assert store.count() == SIZE and [d.id for d in store.scroll(3)] == sorted(held)[:3]
    for _ in range(5):
        where = parse_filter(random_filter(rng))
        doomed = expected_ids(held, where, ["en", "de"])
        assert store.delete_where(["en", "de"], where) == len(doomed)
        for doc_id in doomed:
            del held[doc_id]
        assert store.count() == len(held) and {d.id for d in store.scroll(SIZE)} == set(held)
