"""The served collection: a ``SearchIndex`` made safe to write to while it is searched.

Every write is appended to the write-ahead log (fsynced) and applied to the in-memory index under one lock before
it is acknowledged, so a search never sees half a write and an acknowledged write survives ``kill -9``. Every
``snapshot_every`` writes (and at shutdown) the index is saved as a new version folder that records the last log
record it holds, and the log is emptied. Start-up loads the newest snapshot and replays the records after it.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

import numpy as np

from app.index import HNSW_READ_ONLY, Document, Group, Hit, ReadOnlyIndex, SearchIndex
from app.wal import WriteAheadLog, decode_vector, encode_vector, read_records

log = logging.getLogger(__name__)


def wal_path(index_dir: Path) -> Path:
    return Path(index_dir).parent / f"{Path(index_dir).name}.wal"


class Collection:
    def __init__(self, index_dir: Path, snapshot_every: int = 1000) -> None:
        self.index_dir = Path(index_dir)
        self.snapshot_every = snapshot_every
        self.index = SearchIndex.load(self.index_dir)
        self._lock = threading.Lock()
        self._writes_since_snapshot = 0
        path = wal_path(self.index_dir)
        replayed = self._replay(read_records(path)[0])
        self.wal: WriteAheadLog | None = None
        self.read_only_reason: str | None = None
        if not self.index.writable:
            self.read_only_reason = HNSW_READ_ONLY
        else:
            try:
                self.wal = WriteAheadLog(path)
                self.wal.last_seq = max(self.wal.last_seq, self.index.manifest.wal_seq)
            except OSError as exc:  # e.g. a read-only volume: searching still works
                self.read_only_reason = f"cannot open the write-ahead log {path}: {exc.strerror or exc.args[0]}"
                log.warning("documents API disabled: %s", self.read_only_reason)
        if replayed:
            log.info("replayed %d logged writes after the snapshot", replayed)
            self._writes_since_snapshot = replayed

    def _replay(self, records: list[dict]) -> int:
        replayed = 0
        for record in records:
            if record["seq"] <= self.index.manifest.wal_seq:
                continue  # already in the snapshot (a crash came between snapshot and log reset)
            if record["op"] == "upsert":
                docs = [Document(d["id"], d["text"], d["lang"], d.get("metadata", {})) for d in record["documents"]]
                vectors = np.stack([decode_vector(d["vector"]) for d in record["documents"]])
                self.index.upsert(docs, vectors)
            elif record["op"] == "delete":
                self.index.delete(record["ids"])
            replayed += 1
        return replayed

    @property
    def writable(self) -> bool:
        return self.wal is not None

    @property
    def size(self) -> int:
        return self.index.size

    @property
    def languages(self) -> list[str]:
        with self._lock:  # a concurrent write may add or drop a language
            return self.index.languages

    def search(
        self, queries: np.ndarray, top_k: int, languages: list[str] | None = None, filters: dict | None = None
    ) -> list[list[Hit]]:
        with self._lock:
            return self.index.search(queries, top_k, languages, filters)

    def search_grouped(
        self,
        queries: np.ndarray,
        top_k: int,
        group_by: str,
        languages: list[str] | None = None,
        filters: dict | None = None,
    ) -> list[list[Group]]:
        with self._lock:
            return self.index.search_grouped(queries, top_k, group_by, languages, filters)

    @property
    def group_fields(self) -> list[str]:
        with self._lock:
            return self.index.group_fields

    def check_group_field(self, group_by: str) -> None:
        with self._lock:
            self.index.check_group_field(group_by)

    def get(self, doc_id: str) -> Document | None:
        with self._lock:
            return self.index.get(doc_id)

    def upsert(self, documents: list[Document], embeddings: np.ndarray) -> int:
        """Log, apply, and return the log sequence number; when this returns the write is durable and visible."""
        rows = [
            {"id": d.id, "text": d.text, "lang": d.lang, "metadata": d.metadata, "vector": encode_vector(e)}
            for d, e in zip(documents, embeddings, strict=True)
        ]
        with self._lock:
            wal = self.require_writable()
            seq = wal.append({"op": "upsert", "documents": rows})
            self.index.upsert(documents, embeddings)
            self._after_write()
            return seq

    def delete(self, doc_ids: list[str]) -> list[str]:
        """Delete the ids that exist (logged first); return them."""
        with self._lock:
            wal = self.require_writable()
            present = [i for i in doc_ids if i in self.index]
            if present:
                wal.append({"op": "delete", "ids": present})
                self.index.delete(present)
                self._after_write()
            return present

    def require_writable(self) -> WriteAheadLog:
        """The log to write to, or ReadOnlyIndex saying why there is none."""
        if self.wal is None:
            raise ReadOnlyIndex(f"this index takes no writes: {self.read_only_reason}")
        return self.wal

    def _after_write(self) -> None:
        self._writes_since_snapshot += 1
        if self._writes_since_snapshot >= self.snapshot_every:
            self._snapshot_locked()

    def snapshot(self) -> None:
        """Save the index with everything logged so far and empty the log (no-op without logged writes)."""
        with self._lock:
            if self.wal is not None and self._writes_since_snapshot:
                self._snapshot_locked()

    def _snapshot_locked(self) -> None:
        assert self.wal is not None
        started = time.perf_counter()
        seq = self.wal.last_seq
        self.index.save(self.index_dir, wal_seq=seq)
        self.wal.reset(seq)  # a crash before this line only means replay skips records <= seq
        self._writes_since_snapshot = 0
        log.info("snapshot at log record %d (%d documents) in %.2f s", seq, self.size, time.perf_counter() - started)

    def close(self) -> None:
        self.snapshot()
        if self.wal is not None:
            self.wal.close()
