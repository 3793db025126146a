"""The approximate index on a generated corpus: recall against exact search (with and without filters), exact
scores, deletes and replacements that never come back, the rebuild, snapshots, and the ``auto`` type."""

from __future__ import annotations

import time
from pathlib import Path

import faiss
import numpy as np
import pytest

from app.corpus import Document
from app.filters import parse_filter
from app.manifest import IndexManifest
from app.stores.embedded import graph
from app.stores.embedded.collection import Collection
from app.stores.embedded.graph import REBUILD_DEAD_SHARE
from app.stores.embedded.index import GraphTuning, SearchIndex

LANGS = ["ar", "de", "el", "en", "es", "hi", "ro", "ru", "th", "tr", "zh"]
DIM = 64
ALWAYS_GRAPH = GraphTuning(exact_below=0)  # the graph even for small corpora and filters


def generated(n: int, seed: int = 0) -> tuple[list[Document], np.ndarray]:
    """Passages in 11 languages whose vectors cluster by topic, as real embeddings do."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((50, DIM)).astype(np.float32)
    vectors = centres[rng.integers(0, len(centres), n)] + 0.8 * rng.standard_normal((n, DIM)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    documents = [Document(f"p{i}", f"passage {i}", LANGS[i % 11], {"rare": i % 97 == 0, "n": i}) for i in range(n)]
    return documents, vectors


def new_index(documents: list[Document], vectors: np.ndarray, index_type: str = "hnsw") -> SearchIndex:
    flat = faiss.IndexFlatIP(DIM)
    flat.add(vectors)
    manifest = IndexManifest(
        model_name="generated",
        model_fingerprint="0" * 64,
        model_variant="fp32",
        embedding_dim=DIM,
        size=len(documents),
        index_type=index_type,
    )
    index = SearchIndex(flat, documents, manifest)
    index.tuning = ALWAYS_GRAPH
    if index.wants_graph:
        index.build_graph()
    return index


@pytest.fixture(scope="module")
def corpus() -> tuple[list[Document], np.ndarray]:
    return generated(11_000)


def queries_near(vectors: np.ndarray, count: int = 60, seed: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    picked = vectors[rng.choice(len(vectors), count, replace=False)]
    noisy = picked + 0.1 * rng.standard_normal(picked.shape).astype(np.float32)  # as far as its neighbours are
    return (noisy / np.linalg.norm(noisy, axis=1, keepdims=True)).astype(np.float32)


def recall_at_10(index: SearchIndex, queries: np.ndarray, **where: object) -> float:
    found = index.search(queries, 10, **where)
    truth = index.search(queries, 10, exact=True, **where)
    return float(
        np.mean(
            [
                len({h.document.id for h in a} & {h.document.id for h in b}) / 10
                for a, b in zip(found, truth, strict=True)
            ]
        )
    )


def test_the_graph_finds_what_exact_search_finds_with_exact_scores(corpus: tuple) -> None:
    documents, vectors = corpus
    index = new_index(documents, vectors)
    assert index.graph is not None and index.graph.choice.recall_at_10 >= 0.97
    queries = queries_near(vectors)
    assert recall_at_10(index, queries) >= 0.95
    assert recall_at_10(index, queries, languages=["th"]) >= 0.95
    for query, hits in zip(queries, index.search(queries, 10), strict=True):
        exact = [float(vectors[int(h.document.id[1:])] @ query) for h in hits]
        assert np.allclose([h.score for h in hits], exact, atol=1e-5)  # re-scored: the fp32 score, not the int8 one
    in_thai = index.search(queries, 10, languages=["th"])
    assert all(h.document.lang == "th" for hits in in_thai for h in hits)


def language_biased(n: int, seed: int = 0) -> tuple[list[Document], np.ndarray, np.ndarray]:
    """Passages whose vectors lean towards their language (as a biased encoder's do): a query near passages in one
    language sits far from the passages in another."""
    rng = np.random.default_rng(seed)
    languages = rng.integers(0, len(LANGS), n)
    topics = rng.standard_normal((60, DIM)).astype(np.float32)
    lean = rng.standard_normal((len(LANGS), DIM)).astype(np.float32)
    vectors = topics[rng.integers(0, len(topics), n)] + 0.8 * lean[languages]
    vectors += 0.5 * rng.standard_normal((n, DIM)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    documents = [Document(f"p{i}", f"passage {i}", LANGS[code]) for i, code in enumerate(languages)]
    return documents, vectors, languages


def test_one_language_far_from_the_query_is_found_through_the_graph(monkeypatch: pytest.MonkeyPatch) -> None:
    """A filtered walk keeps only the allowed rows it visits: near an English query few Thai rows are visited, so
    efSearch grows with the filter's selectivity (with the unfiltered efSearch the recall here is ~0.7)."""
    documents, vectors, languages = language_biased(22_000)
    index = new_index(documents, vectors)
    queries = queries_near(vectors[languages == LANGS.index("en")])
    assert recall_at_10(index, queries) >= 0.95
    assert recall_at_10(index, queries, languages=["th"]) >= 0.95
    monkeypatch.setattr(graph, "FILTERED_EF_MAX", 0)  # the unfiltered efSearch: what the test guards against
    assert recall_at_10(index, queries, languages=["th"]) < 0.9


def test_a_selective_filter_is_searched_exactly(corpus: tuple) -> None:
    documents, vectors = corpus
    index = new_index(documents, vectors)
    index.tuning = GraphTuning()  # the served default: small allowed sets skip the graph
    queries = queries_near(vectors)
    rare = parse_filter({"rare": True})
    assert index.count(where=rare) < index.tuning.exact_below
    assert index.search(queries, 10, where=rare) == index.search(queries, 10, where=rare, exact=True)
    assert all(h.document.metadata["rare"] for hits in index.search(queries, 10, where=rare) for h in hits)


def test_deleted_and_replaced_passages_never_come_back(corpus: tuple) -> None:
    documents, vectors = corpus
    index = new_index(documents, vectors)
    rng = np.random.default_rng(2)
    deleted = rng.choice(len(documents), int(0.25 * len(documents)), replace=False)
    index.delete([documents[i].id for i in deleted])
    assert index.graph is not None and index.graph.wants_rebuild and index.graph.dead > REBUILD_DEAD_SHARE * 8000
    gone = {documents[i].id for i in deleted}
    for hits in index.search(vectors[deleted[:50]], 10) + index.search(vectors[deleted[:50]], 10, languages=["en"]):
        assert not gone & {h.document.id for h in hits}
    kept = [i for i in range(len(documents)) if documents[i].id not in gone][:40]
    replacements = queries_near(vectors, count=len(kept), seed=3)
    index.upsert([Document(documents[i].id, "replaced", "en") for i in kept], replacements)
    for i, new_vector, hits in zip(kept, replacements, index.search(replacements, 1), strict=True):
        assert hits[0].document.id == documents[i].id and hits[0].document.text == "replaced"
        assert hits[0].score == pytest.approx(1.0, abs=1e-5)
        stale = [h for h in index.search(vectors[i : i + 1], 20)[0] if h.document.id == documents[i].id]
        assert all(h.score == pytest.approx(float(vectors[i] @ new_vector), abs=1e-5) for h in stale)
    queries = queries_near(vectors)
    before = recall_at_10(index, queries)
    index.build_graph()  # what the collection's graph thread does once the dead share passes the limit
    assert index.graph is not None and index.graph.dead == 0 and index.graph.rows == index.size
    assert min(before, recall_at_10(index, queries)) >= 0.95


def test_a_write_is_found_at_once_even_far_from_what_the_graph_was_built_on(
    corpus: tuple, monkeypatch: pytest.MonkeyPatch
) -> None:
    documents, vectors = corpus
    index = new_index(documents, vectors)
    noise = np.random.default_rng(4).standard_normal((200, DIM)).astype(np.float32)
    noise /= np.linalg.norm(noise, axis=1, keepdims=True)  # no topic: where the int8 ranges and links serve worst
    index.upsert([Document(f"new{i}", "noise", LANGS[i % 11]) for i in range(len(noise))], noise)
    assert index.passages.written_slots().size == len(noise)
    for i, hits in enumerate(index.search(noise, 1)):
        assert hits[0].document.id == f"new{i}" and hits[0].score == pytest.approx(1.0, abs=1e-5)
    for i, hits in enumerate(index.search(noise, 1, languages=[LANGS[0]])):
        assert hits[0].document.lang == LANGS[0]
        if i % 11 == 0:
            assert hits[0].document.id == f"new{i}"
    # whatever the graph proposes (here: nothing), the writes since the snapshot are scored exactly
    monkeypatch.setattr(index.graph, "candidates", lambda queries, count, *_: np.full((len(queries), count), -1))
    assert [hits[0].document.id for hits in index.search(noise[:20], 1)] == [f"new{i}" for i in range(20)]


def test_a_snapshot_keeps_the_graph_with_its_dead_rows(corpus: tuple, tmp_path: Path) -> None:
    documents, vectors = corpus
    index = new_index(documents[:3000], vectors[:3000])
    index.delete([d.id for d in documents[:3000:7]])
    index.upsert([Document("late", "written after the build", "en")], vectors[5000:5001])
    index.save(tmp_path / "index")
    loaded = SearchIndex.load(tmp_path / "index")
    loaded.tuning = ALWAYS_GRAPH
    assert loaded.graph is not None and loaded.graph.rows == index.graph.rows  # loaded, not rebuilt
    assert loaded.graph.dead == index.graph.dead and loaded.manifest.graph == index.graph.choice.as_json()
    queries = queries_near(vectors[:3000])
    assert [[h.document.id for h in hits] for hits in loaded.search(queries, 10)] == [
        [h.document.id for h in hits] for hits in index.search(queries, 10)
    ]
    assert loaded.search(vectors[5000:5001], 1)[0][0].document.id == "late"


def test_auto_gets_its_graph_at_the_measured_size(corpus: tuple) -> None:
    documents, vectors = corpus
    index = new_index(documents[:1000], vectors[:1000], index_type="auto")
    index.tuning = GraphTuning(auto_from=1500, exact_below=0)
    assert not index.wants_graph and index.graph is None
    index.upsert(documents[1000:1600], vectors[1000:1600])
    assert index.needs_graph
    index.build_graph()
    assert index.graph is not None and index.graph.rows == 1600 and not index.needs_graph


def test_the_collection_builds_the_graph_in_the_background_and_writes_reach_it(corpus: tuple, tmp_path: Path) -> None:
    documents, vectors = corpus
    new_index(documents[:1000], vectors[:1000], index_type="auto").save(tmp_path / "index")
    collection = Collection(tmp_path / "index", tuning=GraphTuning(auto_from=1500, exact_below=0))
    try:
        assert collection.index.graph is None
        collection.upsert(documents[1000:1600], vectors[1000:1600])
        for _ in range(200):
            if collection.graph_builds:
                break
            time.sleep(0.05)
        assert collection.graph_builds == 1 and collection.index.graph is not None
        for _ in range(200):  # a new graph asks for a snapshot at once: a restart loads it, no rebuild
            if SearchIndex.load(tmp_path / "index").graph is not None:
                break
            time.sleep(0.05)
        assert SearchIndex.load(tmp_path / "index").graph is not None
        collection.upsert([Document("fresh", "searchable at once", "de")], vectors[2000:2001])
        assert collection.search(vectors[2000:2001], 1)[0][0].document.id == "fresh"  # no delay after a write
        collection.delete(["fresh"])
        assert "fresh" not in {h.document.id for h in collection.search(vectors[2000:2001], 10)[0]}
    finally:
        collection.close()
    reopened = Collection(tmp_path / "index", tuning=GraphTuning(auto_from=1500, exact_below=0))
    try:
        assert reopened.index.graph is not None and reopened.graph_builds == 0  # the snapshot's graph
        assert reopened.size == 1600
    finally:
        reopened.close()


def test_a_few_allowed_passages_are_scored_alone_and_exactly(corpus: tuple) -> None:
    documents, vectors = corpus
    index = new_index(documents, vectors, index_type="flat")
    queries = queries_near(vectors, count=5)
    rare = [i for i, d in enumerate(documents) if d.metadata["rare"]]
    for query, hits in zip(queries, index.search(queries, 10, where=parse_filter({"rare": True})), strict=True):
        truth = sorted(rare, key=lambda i: -float(vectors[i] @ query))[:10]
        assert [h.document.id for h in hits] == [documents[i].id for i in truth]
        assert np.allclose([h.score for h in hits], [float(vectors[i] @ query) for i in truth], atol=1e-5)


def test_ready_says_how_searches_are_answered(corpus: tuple, tmp_path: Path) -> None:
    documents, vectors = corpus
    new_index(documents[:1000], vectors[:1000], index_type="hnsw").save(tmp_path / "graph")
    new_index(documents[:1000], vectors[:1000], index_type="flat").save(tmp_path / "flat")
    with_graph, flat = Collection(tmp_path / "graph"), Collection(tmp_path / "flat")
    try:
        assert "HNSW over int8 codes (1,000 rows, 0.0% dead" in with_graph.health().search_index
        assert flat.health().search_index == "exact (flat index)"
    finally:
        with_graph.close()
        flat.close()


def test_grouped_searches_go_through_the_graph_too(corpus: tuple) -> None:
    documents, vectors = corpus
    grouped = [Document(d.id, d.text, d.lang, {"group": int(d.id[1:]) // 11}) for d in documents]
    index = new_index(grouped, vectors)
    queries = queries_near(vectors, count=20)
    for languages in (None, ["en", "th"]):
        found = index.search_grouped(queries, 5, "group", languages)
        truth = index.search_grouped(queries, 5, "group", languages, exact=True)
        overlap = [len({g.value for g in a} & {g.value for g in b}) / 5 for a, b in zip(found, truth, strict=True)]
        assert np.mean(overlap) >= 0.95
        assert all(m.document.lang in (languages or LANGS) for groups in found for g in groups for m in g.members)


@pytest.mark.parametrize("name", ["graph.faiss", "graph-rows.npy"])
def test_a_damaged_graph_file_is_caught_by_its_checksum(corpus: tuple, tmp_path: Path, name: str) -> None:
    from app.stores.embedded.integrity import SnapshotDamaged

    documents, vectors = corpus
    new_index(documents[:500], vectors[:500]).save(tmp_path / "index")
    path = (tmp_path / "index").resolve() / name
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(SnapshotDamaged, match=f"{name} does not match its checksum"):
        SearchIndex.load(tmp_path / "index")
