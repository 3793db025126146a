"""The durable collection: writes are logged, visible at once, replayed after a crash, folded into snapshots."""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from app.build import build_index
from app.corpus import Document
from app.encoder import OnnxEncoder
from app.errors import ReadOnlyIndex
from app.filters import parse_filter
from app.stores.embedded.collection import Collection
from app.stores.embedded.index import GraphTuning, SearchIndex, version_folders
from app.stores.embedded.wal import read_log, read_records, wal_path


@pytest.fixture(scope="module")
def encoder(tiny_model: Path) -> OnnxEncoder:
    return OnnxEncoder(tiny_model, "fp32", runtime="cpu")


def new_documents(encoder: OnnxEncoder, n: int, tag: str = "new") -> tuple[list[Document], np.ndarray]:
    documents = [
        Document(f"{tag}-{i}", f"{tag} passage number {i} about topic {i % 3}", "en", {"topic": i % 3, "tag": tag})
        for i in range(n)
    ]
    return documents, encoder.encode([d.text for d in documents], "passage")


def crash(collection: Collection) -> None:
    """What kill -9 leaves: no thread running, the log's file closed (and its lock released), no final snapshot."""
    assert collection.wal is not None
    collection.stop_snapshots()
    collection.wal.close()


def wait_for(condition: Callable[[], bool], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_a_write_is_visible_at_once_and_replayed_after_a_crash(encoder: OnnxEncoder, writable_index: Path) -> None:
    collection = Collection(writable_index)
    base = collection.size
    documents, vectors = new_documents(encoder, 5)
    collection.upsert(documents, vectors)
    hits = collection.search(vectors[2:3], top_k=1)[0]
    assert hits[0].document.id == "new-2" and collection.size == base + 5
    assert collection.delete(["new-4", "no-such-id"]) == ["new-4"]
    crash(collection)
    reopened = Collection(writable_index)
    assert reopened.size == base + 4 and reopened.get("new-4") is None
    assert reopened.get("new-1") == documents[1]
    assert reopened.search(vectors[3:4], top_k=1)[0][0].document.id == "new-3"


def test_upsert_replaces_text_metadata_and_vector(encoder: OnnxEncoder, writable_index: Path) -> None:
    collection = Collection(writable_index)
    base = collection.size
    first, first_vectors = new_documents(encoder, 1, "same")
    collection.upsert(first, first_vectors)
    replacement = Document("same-0", "a completely different text", "de", {"topic": "x"})
    vector = encoder.encode([replacement.text], "passage")
    collection.upsert([replacement], vector)
    assert collection.size == base + 1 and collection.get("same-0") == replacement
    (best,) = collection.search(vector, top_k=1, where=parse_filter({"topic": "x"}))[0]
    assert best.score == pytest.approx(1.0, abs=1e-5)
    assert collection.search(first_vectors, top_k=5, where=parse_filter({"tag": "same"}))[0] == []  # old metadata gone


def test_snapshots_run_in_the_background_and_fold_the_log(encoder: OnnxEncoder, writable_index: Path) -> None:
    collection = Collection(writable_index, snapshot_every=3)
    documents, vectors = new_documents(encoder, 6)
    for i in range(6):
        collection.upsert(documents[i : i + 1], vectors[i : i + 1])  # answered without waiting for a snapshot
    wait_for(lambda: SearchIndex.load(writable_index).manifest.wal_seq >= 3)
    collection.snapshot()  # the rest, now
    assert SearchIndex.load(writable_index).manifest.wal_seq == 6
    assert read_records(wal_path(writable_index))[0] == []  # the current segment is empty
    previous = SearchIndex.load(version_folders(writable_index)[1]).manifest.wal_seq
    assert [r["seq"] for r in read_log(wal_path(writable_index))] == list(range(previous + 1, 7))  # kept for it
    collection.upsert(*new_documents(encoder, 1, "later"))
    # A crash after a snapshot's link swap but before the log rotation: the log still holds seq 7.
    collection.index.save(writable_index, wal_seq=7)
    crash(collection)
    reopened = Collection(writable_index)
    assert reopened.size == collection.size and reopened.get("later-0") is not None
    assert reopened.wal is not None and reopened.wal.last_seq == 7
    reopened.close()


def test_a_failing_snapshot_never_fails_a_write(
    encoder: OnnxEncoder, writable_index: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def full_disk(*args: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("app.stores.embedded.collection.write_version", full_disk)
    collection = Collection(writable_index, snapshot_every=2)
    documents, vectors = new_documents(encoder, 5)
    seqs = [collection.upsert(documents[i : i + 1], vectors[i : i + 1]) for i in range(5)]
    assert seqs == [1, 2, 3, 4, 5]
    wait_for(lambda: collection.snapshot_failures >= 1)
    assert "No space left on device" in (collection.snapshot_error or "")
    monkeypatch.undo()  # the disk has room again: the next attempt (after its back-off) succeeds
    collection.snapshot()
    assert collection.snapshot_error is None and SearchIndex.load(writable_index).manifest.wal_seq == 5
    crash(collection)
    assert Collection(writable_index).size == collection.size


def test_a_plain_folder_index_serves_but_refuses_writes(encoder: OnnxEncoder, writable_index: Path) -> None:
    plain = writable_index.parent / "plain"
    shutil.copytree(writable_index.resolve(), plain)  # `cp -a` of the version folder instead of the link
    collection = Collection(plain)
    assert not collection.writable and "plain folder" in (collection.read_only_reason or "")
    with pytest.raises(ReadOnlyIndex, match="plain folder"):
        collection.upsert(*new_documents(encoder, 1))
    assert collection.search(encoder.encode(["x"], "query"), top_k=3)[0]


def test_filters_combine_with_languages(encoder: OnnxEncoder, writable_index: Path) -> None:
    collection = Collection(writable_index)
    documents, vectors = new_documents(encoder, 9)
    collection.upsert(documents, vectors)
    hits = collection.search(vectors[:1], top_k=20, languages=["en"], where=parse_filter({"topic": 1, "tag": "new"}))[0]
    assert sorted(h.document.id for h in hits) == ["new-1", "new-4", "new-7"]
    assert collection.search(vectors[:1], top_k=5, where=parse_filter({"topic": True}))[0] == []  # true is not 1


def test_an_approximate_index_takes_writes_and_deletes(encoder: OnnxEncoder, tiny_corpus: Path, tmp_path: Path) -> None:
    from app.ingest.sources import read_corpus

    hnsw_dir = tmp_path / "hnsw"
    build_index(encoder, list(read_corpus(tiny_corpus)), "hnsw", progress=False).save(hnsw_dir)
    hnsw = Collection(hnsw_dir, tuning=GraphTuning(exact_below=0))
    try:
        assert hnsw.writable and hnsw.index.graph is not None
        documents, vectors = new_documents(encoder, 3)
        hnsw.upsert(documents, vectors)
        assert [hits[0].document.id for hits in hnsw.search(vectors, 1)] == [d.id for d in documents]
        hnsw.delete([documents[0].id])
        assert documents[0].id not in {h.document.id for h in hnsw.search(vectors[:1], 10)[0]}
    finally:
        hnsw.close()


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes through file modes (the Docker test mounts read-only)")
def test_an_unwritable_folder_still_serves_reads(encoder: OnnxEncoder, writable_index: Path) -> None:
    folder = writable_index.parent
    folder.chmod(0o555)
    try:
        locked = Collection(writable_index)
        assert not locked.writable and "write-ahead log" in (locked.read_only_reason or "")
        assert locked.search(encoder.encode(["x"], "query"), top_k=3)[0]
    finally:
        folder.chmod(0o755)


def test_replacing_a_document_swaps_all_its_passages_in_one_logged_write(
    encoder: OnnxEncoder, writable_index: Path
) -> None:
    def passages(n: int) -> list[Document]:
        return [Document(f"doc#{i}", f"part {i} of doc", "en", {"doc_id": "doc", "chunk": i}) for i in range(n)]

    collection = Collection(writable_index)
    base = collection.size
    four = passages(4)
    collection.upsert(four, encoder.encode([d.text for d in four], "passage"), replacing=["doc"])
    assert collection.size == base + 4
    whole = [Document("doc", "now a short document", "en")]
    seq = collection.upsert(whole, encoder.encode([whole[0].text], "passage"), replacing=["doc"])
    assert collection.size == base + 1 and collection.get("doc#0") is None
    crash(collection)
    (record,) = [r for r in read_log(wal_path(writable_index)) if r["seq"] == seq]
    assert record["delete"] == ["doc#0", "doc#1", "doc#2", "doc#3"]  # the same record as the new passage
    reopened = Collection(writable_index)
    assert reopened.size == base + 1 and reopened.get("doc").text == "now a short document"
    two = passages(2)
    reopened.upsert(two, encoder.encode([d.text for d in two], "passage"), replacing=["doc"])
    assert reopened.delete(["doc"]) == ["doc#0", "doc#1"] and reopened.size == base
