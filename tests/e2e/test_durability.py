"""kill -9 during a stream of concurrent writes: after a restart nothing acknowledged is lost, nothing is half-written.

On both stores. With FAISS, snapshots are taken every few writes, so the kill also lands during snapshots and log
resets; with Milvus (Lite), the kill takes our API process, and Milvus Lite's process stops with it.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import httpx
import pytest

from app.stores.embedded.index import SearchIndex
from tests.conftest import running_server, start_server, writable_server_env

pytestmark = pytest.mark.e2e
KEY = {"Authorization": "Bearer k"}


class Writer(threading.Thread):
    """Upserts small batches (and deletes some of its own documents, by id and by filter) until the server dies."""

    def __init__(self, base: str, name: str) -> None:
        super().__init__(daemon=True)
        self.base, self.tag = base, name
        self.acked: dict[str, str] = {}  # id -> text, acknowledged upserts
        self.deleted: set[str] = set()  # acknowledged deletes
        self.in_flight: dict[str, str] = {}  # sent when the server died: may or may not have landed

    def run(self) -> None:
        with httpx.Client(base_url=self.base, headers=KEY, timeout=30) as client:
            for n in range(10_000):
                batch = {f"{self.tag}-{n}-{k}": f"{self.tag} batch {n} item {k} text" for k in range(1 + n % 3)}
                self.in_flight = batch
                documents = [{"id": i, "text": t, "lang": "en", "metadata": {"key": i}} for i, t in batch.items()]
                try:
                    answer = client.post("/documents", json={"documents": documents})
                except httpx.HTTPError:
                    return
                assert answer.status_code == 200, answer.text
                self.acked.update(batch)
                self.in_flight = {}
                if n % 4 == 3:  # one document by id, or two by a filter (one write: both go or neither)
                    victims = (
                        [f"{self.tag}-{n - 2}-0"] if n % 8 == 3 else [f"{self.tag}-{n - 2}-0", f"{self.tag}-{n - 1}-0"]
                    )
                    self.in_flight = dict.fromkeys(victims, "(delete)")
                    try:
                        if len(victims) == 1:
                            answer = client.delete(f"/documents/{victims[0]}")
                        else:
                            answer = client.post("/documents/delete", json={"filters": {"key": {"$in": victims}}})
                    except httpx.HTTPError:
                        return
                    assert answer.status_code == 200, answer.text
                    self.deleted.update(victims)
                    self.in_flight = {}


def test_acknowledged_writes_survive_kill_9(store: str, tiny_model: Path, tiny_index: Path, tmp_path: Path) -> None:
    env = writable_server_env(
        tiny_model, tiny_index, tmp_path, store, SEARCH_WRITE_API_KEYS="k", SEARCH_SNAPSHOT_EVERY="5"
    )
    kill_during_writes_then_check(env, store)


def test_acknowledged_writes_survive_kill_9_on_the_approximate_index(
    store: str, tiny_model: Path, tiny_index: Path, tmp_path: Path
) -> None:
    """The same on an index with its graph (searched through it even when small): writes reach the graph,
    snapshots save it, and a restart serves it with the logged writes replayed into it."""
    if store != "faiss":
        pytest.skip("the graph is the embedded store's")
    graph_index = tmp_path / "graph-source"
    index = SearchIndex.load(tiny_index)
    index.manifest = index.manifest.model_copy(update={"index_type": "hnsw"})
    index.build_graph()
    index.save(graph_index)
    env = writable_server_env(
        tiny_model,
        graph_index,
        tmp_path,
        store,
        SEARCH_WRITE_API_KEYS="k",
        SEARCH_SNAPSHOT_EVERY="5",
        SEARCH_GRAPH_EXACT_BELOW="0",
    )
    kill_during_writes_then_check(env, store)
    assert SearchIndex.load(Path(env["SEARCH_INDEX_DIR"])).graph is not None


def kill_during_writes_then_check(env: dict[str, str], store: str) -> None:
    process, base = start_server(env)
    base_size = httpx.get(f"{base}/ready").json()["index_size"]
    writers = [Writer(base, f"w{i}") for i in range(3)]
    for writer in writers:
        writer.start()
    time.sleep(4)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    for writer in writers:
        writer.join(timeout=30)
    acked = sum(len(w.acked) for w in writers)
    assert acked > 30, f"only {acked} writes were acknowledged before the kill"

    with running_server(env) as base, httpx.Client(base_url=base) as client:
        expected_size = base_size
        for writer in writers:
            for doc_id, text in writer.acked.items():
                answer = client.get(f"/documents/{doc_id}")
                if doc_id in writer.deleted:
                    assert answer.status_code == 404, f"{doc_id} was deleted (acknowledged) but came back"
                elif doc_id in writer.in_flight:  # a delete was in flight: either outcome, never both
                    assert answer.status_code in (200, 404)
                    expected_size += answer.status_code == 200
                else:
                    assert answer.status_code == 200, f"acknowledged {doc_id} was lost"
                    assert answer.json()["text"] == text
                    expected_size += 1
            landed = [
                client.get(f"/documents/{i}").status_code == 200 for i in writer.in_flight if i not in writer.acked
            ]
            assert all(landed) or not any(landed), "an in-flight batch landed only in part"
            expected_size += sum(landed)
            still_there = [client.get(f"/documents/{i}").status_code == 200 for i in writer.in_flight]
            if list(writer.in_flight.values()) == ["(delete)"] * len(still_there):
                assert all(still_there) or not any(still_there), "an in-flight delete by filter landed only in part"
        # The id store and the vectors agree: the count matches, and each document is found by its own vector.
        assert client.get("/ready").json()["index_size"] == expected_size
        for writer in writers:
            for doc_id, text in list(writer.acked.items())[:: max(1, len(writer.acked) // 10)]:
                if doc_id in writer.deleted or doc_id in writer.in_flight:
                    continue
                hits = client.post("/search", json={"query": text, "top_k": 1, "filters": {"key": doc_id}}).json()
                assert [h["id"] for h in hits["results"]] == [doc_id]
    if store != "faiss":
        return
    # A clean stop snapshots: the log is empty and the next start replays nothing.
    process, base = start_server(env)
    process.terminate()  # not stop_server: on a loaded machine the snapshot can outlast its 15 s grace
    assert process.wait(timeout=120) in (0, -signal.SIGTERM), "the server did not stop cleanly"
    assert (Path(env["SEARCH_INDEX_DIR"]).parent / "writable.wal").stat().st_size == 0
