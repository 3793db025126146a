"""A loaded index reads its vectors and texts from the snapshot's files, memory-mapped: what it returns, searches
and saves again is what was written, with base rows deleted or replaced and later writes held in memory."""

from __future__ import annotations

from pathlib import Path

import faiss
import numpy as np
import pytest

from app.corpus import Document
from app.filters import parse_filter
from app.manifest import IndexManifest
from app.stores.embedded.collection import Collection
from app.stores.embedded.index import DOCS_FILE, SearchIndex
from app.stores.embedded.passages import PassageStore, VectorRows, write_flat_index

DIM = 16


def generated(n: int, start: int = 0, seed: int = 0) -> tuple[list[Document], np.ndarray]:
    rng = np.random.default_rng(seed)
    vectors = rng.standard_normal((n, DIM)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    documents = [
        Document(f"d{i}", f"passage {i}: ünïcode ✓ 中文\\n{'x' * (i % 7)}", ["en", "de", "th"][i % 3], {"n": i})
        for i in range(start, start + n)
    ]
    return documents, vectors


def saved(folder: Path, documents: list[Document], vectors: np.ndarray) -> SearchIndex:
    flat = faiss.IndexFlatIP(DIM)
    flat.add(vectors)
    manifest = IndexManifest(
        model_name="generated", model_fingerprint="0" * 64, model_variant="fp32", embedding_dim=DIM, size=len(documents)
    )
    SearchIndex(flat, documents, manifest).save(folder)
    return SearchIndex.load(folder)


@pytest.fixture
def loaded(tmp_path: Path) -> tuple[SearchIndex, list[Document], np.ndarray]:
    documents, vectors = generated(300)
    return saved(tmp_path / "index", documents, vectors), documents, vectors


def test_a_loaded_index_holds_no_document_in_memory_and_reads_each_back_whole(loaded) -> None:
    index, documents, vectors = loaded
    assert index.passages.written_documents == {} and index.passages.written_vectors.ntotal == 0
    for document in documents[::37]:
        assert index.get(document.id) == document
    np.testing.assert_array_equal(index.passages.vectors(np.array([5, 0, 299])), vectors[[5, 0, 299]])


def test_base_deletes_and_later_writes_search_as_one_index(loaded) -> None:
    index, documents, vectors = loaded
    index.delete([f"d{i}" for i in range(0, 300, 4)])
    replaced, replacement = documents[1], generated(1, seed=9)[1]
    index.upsert([Document(replaced.id, "replaced", "en", {"n": -1})], replacement)
    new_documents, new_vectors = generated(40, start=300, seed=3)
    index.upsert(new_documents, new_vectors)
    expected = {d.id: v for d, v in zip(documents, vectors, strict=True) if int(d.id[1:]) % 4}
    expected[replaced.id] = replacement[0]
    expected |= {d.id: v for d, v in zip(new_documents, new_vectors, strict=True)}
    assert index.size == len(expected)
    queries = generated(8, seed=5)[1]
    ids = list(expected)
    matrix = np.stack([expected[i] for i in ids])
    for where, allowed in [(None, ids), (parse_filter({"n": {"$gte": 150}}), [i for i in ids if int(i[1:]) >= 150])]:
        allowed_rows = [ids.index(i) for i in allowed]
        for query, hits in zip(queries, index.search(queries, 10, where=where, exact=True), strict=True):
            scores = matrix[allowed_rows] @ query
            best = [ids[allowed_rows[r]] for r in np.argsort(-scores, kind="stable")[:10]]
            assert [h.document.id for h in hits] == best
            np.testing.assert_allclose([h.score for h in hits], np.sort(scores)[::-1][:10], atol=1e-5)
    assert index.get(replaced.id).text == "replaced" and index.get("d0") is None


def test_a_saved_loaded_index_saves_untouched_lines_as_they_were(loaded, tmp_path: Path) -> None:
    index, documents, vectors = loaded
    before = (tmp_path / "index" / DOCS_FILE).read_bytes().splitlines(keepends=True)
    index.delete(["d3"])
    index.upsert([Document("new", "a later write", "en", {"n": 1000})], generated(1, seed=7)[1])
    again = tmp_path / "again"
    index.save(again)
    after = (again / DOCS_FILE).read_bytes().splitlines(keepends=True)
    assert after[:3] == before[:3] and after[3:-1] == before[4:]
    reloaded = SearchIndex.load(again)
    assert reloaded.size == 300 and reloaded.get("new").text == "a later write"
    assert reloaded.get("d299") == documents[299] and "d3" not in reloaded
    np.testing.assert_array_equal(reloaded.passages.vectors(np.array([3])), vectors[[4]])


def test_the_store_searches_its_mapped_and_written_parts_with_ties_broken_by_slot() -> None:
    base = faiss.IndexFlatIP(2)
    base.add(np.array([[1, 0], [0, 1], [1, 0]], dtype=np.float32))
    store = PassageStore(2, base, None, np.array([0, 2, 5]))
    store.add(np.array([6, 7]), [Document("a", "a", "en"), Document("b", "b", "en")], np.eye(2, dtype=np.float32))
    scores, slots = store.search(np.array([[1, 0]], dtype=np.float32), 4)
    assert slots.tolist() == [[0, 5, 6, 2]] and scores[0, :3].tolist() == [1, 1, 1]
    store.remove(np.array([0, 6]))
    assert store.size == 3 and store.live_slots().tolist() == [2, 5, 7]
    scores, slots = store.search(np.array([[1, 0]], dtype=np.float32), 2, allowed=np.array([2, 7]))
    assert slots.tolist() == [[2, 7]]


def test_a_snapshot_taken_by_the_collection_becomes_what_it_reads_from(tmp_path: Path) -> None:
    documents, vectors = generated(200)
    saved(tmp_path / "index", documents, vectors)
    collection = Collection(tmp_path / "index", snapshot_every=10**9, graphs=False)
    try:
        collection.delete(["d0", "d1"])
        later_documents, later_vectors = generated(30, start=200, seed=4)
        collection.upsert(later_documents, later_vectors)
        collection.snapshot()
        passages = collection.index.passages
        assert passages.written_documents == {} and passages.size == 228
        assert passages.base_lines is not None and passages.base_lines.path.parent == (tmp_path / "index").resolve()
        collection.upsert([Document("after", "after the snapshot", "de")], generated(1, seed=8)[1])
        assert [d.id for d in collection.index.passages.written_documents.values()] == ["after"]
        assert collection.get("d229") == later_documents[-1] and collection.get("d2") == documents[2]
        hits = collection.search(later_vectors[:1], 1)[0]
        assert hits[0].document == later_documents[0] and collection.get("d0") is None
    finally:
        collection.close()


def test_snapshot_vectors_are_written_as_faiss_writes_a_flat_index(loaded, tmp_path: Path) -> None:
    index, _, vectors = loaded
    index.delete(["d0", "d150"])
    index.upsert([Document("new", "new", "en")], generated(1, seed=6)[1])
    rows = index.snapshot_copy().vectors
    assert isinstance(rows, VectorRows) and rows.ntotal == 299
    flat = faiss.IndexFlatIP(DIM)
    flat.add(rows.reconstruct_n(0, rows.ntotal))
    write_flat_index(tmp_path / "streamed.faiss", rows)
    assert (tmp_path / "streamed.faiss").read_bytes() == faiss.serialize_index(flat).tobytes()
    np.testing.assert_array_equal(rows.reconstruct_batch([0, 149, 298])[:2], vectors[[1, 151]])
