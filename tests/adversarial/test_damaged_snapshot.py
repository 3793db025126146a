"""A damaged snapshot. Before: 4 KiB of zeros in the newest snapshot's ``index.faiss`` loaded without a word, two
passages could no longer be found, and the next snapshot wrote the damage out again and deleted the good previous
one. Now every file of a snapshot is checksummed and the files must agree (unit-length vectors, counts): a damaged
snapshot is set aside (never deleted), the previous one is served with the log replayed from it, and /ready says so.
"""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import faiss
import httpx
import numpy as np
import pytest

from app.encoder import OnnxEncoder
from app.manifest import ManifestError
from app.stores.embedded.collection import Collection
from app.stores.embedded.index import SNAPSHOT_FILES, SearchIndex, write_snapshot_files
from app.stores.embedded.integrity import CHECKSUMS_FILE, SnapshotDamaged
from tests.app.stores.test_collection import crash, new_documents
from tests.conftest import running_server, start_server, writable_server_env


def flip(path: Path) -> None:
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    for i in range(middle, min(middle + 16, len(data))):
        data[i] ^= 0xFF
    path.write_bytes(bytes(data))


def truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])


def zero(path: Path) -> None:
    """What a bad sector or a partial copy does: 4 KiB of zeros (less for a small file) in the middle."""
    data = bytearray(path.read_bytes())
    size = min(4096, len(data) // 2)
    start = (len(data) - size) // 2
    data[start : start + size] = bytes(size)
    path.write_bytes(bytes(data))


DAMAGES: dict[str, Callable[[Path], None]] = {"flip": flip, "truncate": truncate, "zero": zero}


@pytest.fixture(scope="module")
def encoder(tiny_model: Path) -> OnnxEncoder:
    return OnnxEncoder(tiny_model, "fp32", runtime="cpu")


@pytest.mark.parametrize("damage", sorted(DAMAGES))
@pytest.mark.parametrize("file", SNAPSHOT_FILES)
def test_a_damaged_snapshot_file_falls_back_with_nothing_lost(
    encoder: OnnxEncoder, writable_index: Path, file: str, damage: str
) -> None:
    collection = Collection(writable_index, snapshot_every=10**6)
    documents, vectors = new_documents(encoder, 7)
    for i in range(7):
        collection.upsert(documents[i : i + 1], vectors[i : i + 1])
        if i in (2, 5):
            collection.snapshot()  # at log records 3 and 6
    crash(collection)
    newest = writable_index.resolve()
    DAMAGES[damage](newest / file)
    damaged_bytes = (newest / file).read_bytes()

    reopened = Collection(writable_index, snapshot_every=10**6)
    assert reopened.recovered_from and file in reopened.recovered_from
    assert reopened.size == collection.size and all(reopened.get(d.id) == d for d in documents)
    for document, vector in zip(documents, vectors, strict=True):  # every vector is the one written
        assert reopened.search(vector[None, :], top_k=1)[0][0].document.id == document.id
    kept = list(writable_index.parent.glob(f".{writable_index.name}.damaged-*"))
    assert len(kept) == 1 and (kept[0] / file).read_bytes() == damaged_bytes  # set aside as it was
    more, more_vectors = new_documents(encoder, 3, tag="after")
    for i in range(3):  # later snapshots neither overwrite nor delete the damaged one
        reopened.upsert(more[i : i + 1], more_vectors[i : i + 1])
        reopened.snapshot()
    reopened.close()
    assert (kept[0] / file).read_bytes() == damaged_bytes
    again = Collection(writable_index)
    assert again.recovered_from is None and again.size == collection.size + 3
    again.close()


def test_a_zeroed_vector_with_a_valid_checksum_is_caught(writable_index: Path, tmp_path: Path) -> None:
    """A buggy writer's damage: the checksum is of the damaged file, the unit-length check catches it."""
    index = SearchIndex.load(writable_index)
    snapshot = index.snapshot_copy()
    vectors = snapshot.vectors
    matrix = vectors.reconstruct_n(0, vectors.ntotal)
    matrix[7] = 0.0
    damaged = faiss.IndexFlatIP(vectors.d)
    damaged.add(matrix)
    folder = tmp_path / "written-wrong"
    folder.mkdir()
    write_snapshot_files(folder, replace(snapshot, vectors=damaged))
    with pytest.raises(SnapshotDamaged, match="row 7 has norm 0"):
        SearchIndex.load(folder)


def test_counts_that_disagree_are_caught(writable_index: Path, tmp_path: Path) -> None:
    snapshot = SearchIndex.load(writable_index).snapshot_copy()
    folder = tmp_path / "miscounted"
    folder.mkdir()
    write_snapshot_files(
        folder, replace(snapshot, manifest=snapshot.manifest.model_copy(update={"size": snapshot.manifest.size + 1}))
    )
    with pytest.raises(SnapshotDamaged, match="the manifest says"):
        SearchIndex.load(folder)


def test_checksums_are_required_once_written_and_optional_before(writable_index: Path, tmp_path: Path) -> None:
    folder = writable_index.resolve()
    (folder / CHECKSUMS_FILE).unlink()
    with pytest.raises(SnapshotDamaged, match="SHA256SUMS is missing"):
        SearchIndex.load(folder)
    manifest = json.loads((folder / "manifest.json").read_text())
    (folder / "manifest.json").write_text(json.dumps({**manifest, "format_version": 1}))  # written before checksums
    assert SearchIndex.load(folder).size == manifest["size"]


def test_every_snapshot_damaged_refuses_to_serve(encoder: OnnxEncoder, writable_index: Path) -> None:
    collection = Collection(writable_index, snapshot_every=10**6)
    documents, vectors = new_documents(encoder, 2)
    collection.upsert(documents, vectors)
    collection.snapshot()
    crash(collection)
    for version in writable_index.parent.glob(f".{writable_index.name}.2*"):
        zero(version / "index.faiss")
    with pytest.raises(ManifestError, match=r"index\.faiss"):
        Collection(writable_index)


@pytest.mark.e2e
def test_the_server_serves_the_previous_snapshot_and_says_so(
    tiny_model: Path, tiny_index: Path, tmp_path: Path
) -> None:
    """The attack as it was run: snapshots every 5 writes, 4 KiB zeroed in the newest vectors, kill -9, restart."""
    env = writable_server_env(tiny_model, tiny_index, tmp_path, SEARCH_WRITE_API_KEYS="k", SEARCH_SNAPSHOT_EVERY="5")
    index_dir = Path(env["SEARCH_INDEX_DIR"])
    process, base = start_server(env)
    texts = {f"doc-{i}": f"passage {i} about the river {i} and its bridges" for i in range(12)}
    with httpx.Client(base_url=base, headers={"Authorization": "Bearer k"}) as client:
        for doc_id, text in texts.items():
            document = {"id": doc_id, "text": text, "lang": "en", "metadata": {"key": doc_id}}
            assert client.post("/documents", json={"documents": [document]}).status_code == 200
        for _ in range(200):  # the snapshot at the 10th write is written in the background
            if json.loads((index_dir / "manifest.json").read_text())["wal_seq"] >= 10:
                break
            httpx.get(f"{base}/health")
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    zero(index_dir.resolve() / "index.faiss")

    with running_server(env) as base, httpx.Client(base_url=base) as client:
        ready = client.get("/ready").json()
        assert ready["recovered_from"] and "index.faiss" in ready["recovered_from"], ready
        for doc_id, text in texts.items():
            assert client.get(f"/documents/{doc_id}").json()["text"] == text
            hits = client.post("/search", json={"query": text, "top_k": 1, "filters": {"key": doc_id}}).json()
            assert [h["id"] for h in hits["results"]] == [doc_id]
    vectors = SearchIndex.load(index_dir).snapshot_copy().vectors
    norms = np.linalg.norm(vectors.reconstruct_n(0, vectors.ntotal), axis=1)
    assert np.allclose(norms, 1.0, atol=1e-3)  # the snapshot written at the clean stop holds no zero vector
