"""The served collection: a ``SearchIndex`` made safe to write to while it is searched.

Every write is appended to the write-ahead log (fsynced) and applied to the in-memory index under one lock before
it is acknowledged, so a search never sees half a write and an acknowledged write survives ``kill -9``. Every
``snapshot_every`` writes a background thread saves the index as a new version folder that records the last log
record it holds: the lock is held only to copy the rows and rotate the log, never for the save, and a write is
never answered by a snapshot's failure (the thread retries with back-off; ``/ready`` and a metric report it).
Start-up loads the newest snapshot (or, when it is damaged, the one before, from which the kept log segments
replay) and replays the records after it.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import shutil
import threading
import time
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from app.corpus import Document, Group, Hit
from app.errors import ReadOnlyIndex, StorageFull
from app.filters import Filter
from app.manifest import IndexManifest, ManifestError
from app.stores.base import Store, StoreHealth
from app.stores.embedded.backup import backup_folder, discard_backup_folders
from app.stores.embedded.graph import PassageGraph
from app.stores.embedded.index import (
    GraphTuning,
    SearchIndex,
    Snapshot,
    mapped_rows,
    point_link,
    version_folders,
    write_snapshot_files,
    write_version,
)
from app.stores.embedded.wal import WriteAheadLog, decode_vector, encode_vector, records_after, wal_path

log = logging.getLogger(__name__)
MAX_SNAPSHOT_BACKOFF_S = 300.0


@contextlib.contextmanager
def _storage_errors() -> Iterator[None]:
    try:
        yield
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise StorageFull(
                f"the index's disk is full; this write was not made ({exc.strerror or exc}): free space, then retry"
            ) from exc
        raise


class Collection(Store):
    """The embedded store: a FAISS ``SearchIndex`` in this process, its write-ahead log and snapshots."""

    def __init__(
        self, index_dir: Path, snapshot_every: int = 1000, tuning: GraphTuning | None = None, graphs: bool = True
    ) -> None:
        """``graphs``: build the approximate graph when the index wants one (not for a one-off read of it)."""
        self.index_dir = Path(index_dir)
        self.snapshot_every = snapshot_every
        self.recovered_from: str | None = None  # set when the newest snapshot was damaged (see /ready)
        self.index = self._load()
        self.index.tuning = tuning or GraphTuning()
        self._lock = threading.Lock()
        self._snapshot_mutex = threading.Lock()  # one snapshot at a time: the background thread or close()
        self._writes_since_snapshot = 0
        self._graph_unsaved = False  # a graph built since the last snapshot: the next one saves it
        self._good_snapshot_seq = self.index.manifest.wal_seq  # log records after it are kept on disk
        self.snapshot_failures = 0
        self.snapshot_error: str | None = None
        path = wal_path(self.index_dir)
        replayed = self._replay(records_after(path, self.index.manifest.wal_seq))
        self.wal: WriteAheadLog | None = None
        self.read_only_reason: str | None = None
        if self.index_dir.is_dir() and not self.index_dir.is_symlink():
            self.read_only_reason = (
                f"{self.index_dir} is a plain folder, not the index layout (a link to a version folder) that "
                "snapshots need; rebuild it with `python -m app.cli index`, or move it to "
                f".{self.index_dir.name}.<stamp> beside a link named {self.index_dir.name}"
            )
            log.warning("documents API disabled: %s", self.read_only_reason)
        else:
            try:
                self.wal = WriteAheadLog(path)
                self.wal.last_seq = max(self.wal.last_seq, self.index.manifest.wal_seq)
                discard_backup_folders(self.index_dir)  # a crash's leftovers: only the writing process has any
            except OSError as exc:  # e.g. a read-only volume: searching still works
                self.read_only_reason = f"cannot open the write-ahead log {path}: {exc.strerror or exc.args[0]}"
                log.warning("documents API disabled: %s", self.read_only_reason)
        if replayed:
            log.info("replayed %d logged writes after the snapshot", replayed)
            self._writes_since_snapshot = replayed
        self._wanted, self._stopping = threading.Event(), threading.Event()
        self._thread: threading.Thread | None = None
        if self.wal is not None:
            self._thread = threading.Thread(target=self._snapshot_loop, name="snapshots", daemon=True)
            self._thread.start()
            if self._writes_since_snapshot >= self.snapshot_every:
                self._wanted.set()
        # the approximate graph is built (or rebuilt, once deletes leave too many dead rows) in its own thread, so
        # that neither searches nor snapshots wait for it: until it is there, searches are exact
        self.graph_builds = 0
        self.graph_error: str | None = None
        self._graph_wanted = threading.Event()
        self._graph_thread = threading.Thread(target=self._graph_loop, name="graph", daemon=True)
        if graphs:
            self._graph_thread.start()
            self._check_graph()

    def _load(self) -> SearchIndex:
        """The newest snapshot, or the newest older one that loads when it is damaged (said loudly)."""
        try:
            return SearchIndex.load(self.index_dir)
        except (ManifestError, OSError) as damage:
            newest = self.index_dir.resolve() if self.index_dir.is_symlink() else None
            for version in version_folders(self.index_dir):
                if version.resolve() == newest:
                    continue
                try:
                    index = SearchIndex.load(version)
                except (ManifestError, OSError):
                    continue
                self.recovered_from = f"the newest snapshot could not be loaded ({damage}); serving {version.name}"
                log.error("index %s: %s", self.index_dir, self.recovered_from)
                self._set_aside(newest, version)
                return index
            raise

    def _set_aside(self, damaged: Path | None, good: Path) -> None:
        """Point the link back at the good version and rename the damaged one out of the versions' way."""
        try:
            if damaged is not None and damaged.is_dir():
                stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
                damaged.rename(damaged.with_name(f".{self.index_dir.name}.damaged-{stamp}"))
            point_link(self.index_dir, good)
        except OSError as exc:  # a read-only volume: serve the good version, leave the files as they are
            log.warning("could not set the damaged snapshot aside: %s", exc)

    def _replay(self, records: list[dict]) -> int:
        """Apply logged writes after the snapshot; how many."""
        for record in records:
            if record["op"] == "upsert":
                self.index.delete(record.get("delete", []))
                docs = [Document(d["id"], d["text"], d["lang"], d.get("metadata", {})) for d in record["documents"]]
                vectors = np.stack([decode_vector(d["vector"]) for d in record["documents"]])
                self.index.upsert(docs, vectors)
            elif record["op"] == "delete":
                self.index.delete(record["ids"])
        return len(records)

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
        self,
        queries: np.ndarray,
        top_k: int,
        languages: list[str] | None = None,
        where: Filter | None = None,
        exact: bool = False,
    ) -> list[list[Hit]]:
        with self._lock:
            return self.index.search(queries, top_k, languages, where, exact)

    def search_grouped(
        self,
        queries: np.ndarray,
        top_k: int,
        group_by: str,
        languages: list[str] | None = None,
        where: Filter | None = None,
        exact: bool = False,
    ) -> list[list[Group]]:
        with self._lock:
            return self.index.search_grouped(queries, top_k, group_by, languages, where, exact=exact)

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

    def upsert(self, documents: list[Document], embeddings: np.ndarray, replacing: Sequence[str] = ()) -> int:
        """Log, apply, and return the log sequence number; when this returns the write is durable and visible.
        The stale passages of ``replacing`` go in the same log record, so a document is replaced whole or not."""
        rows = [
            {"id": d.id, "text": d.text, "lang": d.lang, "metadata": d.metadata, "vector": encode_vector(e)}
            for d, e in zip(documents, embeddings, strict=True)
        ]
        with self._lock:
            wal = self.require_writable()
            new = {d.id for d in documents}
            stale = [i for i in self.index.passage_ids(replacing) if i not in new]
            with _storage_errors():
                seq = wal.append({"op": "upsert", "documents": rows, **({"delete": stale} if stale else {})})
            self.index.delete(stale)
            self.index.upsert(documents, embeddings)
            self._after_write()
            return seq

    def delete(self, doc_ids: list[str]) -> list[str]:
        """Delete the ids that exist (logged first); return them."""
        with self._lock:
            wal = self.require_writable()
            present = self.index.passage_ids(doc_ids)
            if present:
                with _storage_errors():
                    wal.append({"op": "delete", "ids": present})
                self.index.delete(present)
                self._after_write()
            return present

    def count(self, languages: list[str] | None = None, where: Filter | None = None) -> int:
        with self._lock:
            return self.index.count(languages, where)

    def scroll(
        self, limit: int, after: str | None = None, languages: list[str] | None = None, where: Filter | None = None
    ) -> list[Document]:
        with self._lock:
            return self.index.scroll(limit, after, languages, where)

    def delete_where(self, languages: list[str] | None, where: Filter | None) -> int:
        """Delete every selected passage: one log record, so all of them or (after a crash) none."""
        with self._lock:
            wal = self.require_writable()
            present = list(self.index.selected_ids(languages, where))
            if present:
                with _storage_errors():
                    wal.append({"op": "delete", "ids": present})
                self.index.delete(present)
                self._after_write()
            return len(present)

    def require_writable(self) -> WriteAheadLog:
        """The log to write to, or ReadOnlyIndex saying why there is none."""
        if self.wal is None:
            raise ReadOnlyIndex(f"this index takes no writes: {self.read_only_reason}")
        return self.wal

    def health(self) -> StoreHealth:
        with self._lock:
            search_index = self.index.search_description()
        if self.graph_error is not None:
            search_index += f"; the last graph build failed: {self.graph_error}"
        return StoreHealth(
            writable=self.writable,
            snapshot_error=self.snapshot_error,
            snapshot_failures=self.snapshot_failures,
            recovered_from=self.recovered_from,
            search_index=search_index,
        )

    def _after_write(self) -> None:
        self._writes_since_snapshot += 1
        if self._writes_since_snapshot >= self.snapshot_every:
            self._wanted.set()  # the snapshot thread saves; this write is answered now
        self._check_graph()

    def _check_graph(self) -> None:
        if self.index.needs_graph:
            self._graph_wanted.set()

    def _graph_loop(self) -> None:
        while not self._stopping.is_set():
            if not self._graph_wanted.wait(timeout=1.0) or self._stopping.is_set():
                continue
            self._graph_wanted.clear()
            try:
                self.build_graph()
            except Exception as exc:  # searches stay exact (slower, never wrong); tried again on the next write
                self.graph_error = f"{type(exc).__name__}: {exc}"
                log.exception("building the approximate graph failed; searches stay exact")

    def build_graph(self) -> None:
        """Build the graph from the live vectors, copied under the lock, then swap it in with the writes since."""
        with self._lock:
            if not self.index.needs_graph:
                return
            vectors, slots = self.index.graph_inputs()
        graph = PassageGraph.build(vectors, slots)
        with self._lock:
            self.index.install_graph(graph)
            self._graph_unsaved = True  # saved by the next snapshot, asked for now: a restart then loads it
        self.graph_builds += 1
        self.graph_error = None
        self._wanted.set()

    def _snapshot_loop(self) -> None:
        backoff = 0.0
        while not self._stopping.is_set():
            if not self._wanted.wait(timeout=1.0) or self._stopping.is_set():
                continue
            try:
                self.snapshot()
                backoff = 0.0
            except Exception:  # recorded by snapshot(); tried again after a pause that doubles up to 5 minutes
                backoff = min(max(1.0, 2 * backoff), MAX_SNAPSHOT_BACKOFF_S)
                self._stopping.wait(backoff)

    def snapshot(self) -> None:
        """Save the index with everything logged so far (no-op without new writes); the lock is held only to copy
        the rows and rotate the log. Raises on failure, after recording it; the writes stay in the log."""
        with self._snapshot_mutex:
            with self._lock:
                pending = self._writes_since_snapshot
                self._wanted.clear()
                graph_unsaved, self._graph_unsaved = self._graph_unsaved, False
                if self.wal is None or not (pending or graph_unsaved):
                    return
                seq = self.wal.last_seq
                snapshot = self.index.snapshot_copy(wal_seq=seq)
                self.wal.rotate()
                self._writes_since_snapshot = 0
            started = time.perf_counter()
            try:
                version = write_version(self.index_dir, snapshot)
                with self._lock:
                    self.index.manifest = self.index.manifest.model_copy(update={"wal_seq": seq})
                    self.wal.drop_through(self._good_snapshot_seq)  # the previous snapshot may still be needed
                    self._good_snapshot_seq = seq
            except Exception as exc:
                with self._lock:
                    self._writes_since_snapshot += pending
                    self._graph_unsaved |= graph_unsaved
                self.snapshot_failures += 1
                self.snapshot_error = f"{type(exc).__name__}: {exc}"
                log.error("snapshot at log record %d failed (the writes stay in the log): %s", seq, exc)
                raise
            self.snapshot_error = None
            self._serve_from(version, snapshot)
            seconds = time.perf_counter() - started
            log.info("snapshot at log record %d (%d documents) in %.2f s", seq, len(snapshot.documents), seconds)

    def _serve_from(self, version: Path, snapshot: Snapshot) -> None:
        """Read vectors and texts from the snapshot just written, so that the writes it holds leave memory (and the
        previous version's files, once deleted, their disk space)."""
        assert snapshot.slots is not None
        try:
            mapped = mapped_rows(version)  # off the lock: finding the line starts reads the whole file
        except (OSError, RuntimeError, ValueError) as exc:
            log.warning("serving on from the previous snapshot's files: %s cannot be mapped: %s", version, exc)
            return
        with self._lock:
            self.index.rebase(mapped, snapshot.slots)

    def backup(self) -> tuple[Path, IndexManifest]:
        """Everything acknowledged so far, checksummed, at the log's last sequence, in a new folder beside the index
        (the caller removes it): like a snapshot, the lock is held only to copy the rows, and the index's own
        versions and log are not touched."""
        with self._lock:
            seq = self.wal.last_seq if self.wal is not None else self.index.manifest.wal_seq
            snapshot = self.index.snapshot_copy(wal_seq=seq)
        folder = backup_folder(self.index_dir)
        try:
            with _storage_errors():
                write_snapshot_files(folder, snapshot)
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            raise
        return folder, snapshot.manifest

    def stop_snapshots(self) -> None:
        """Stop the background snapshot thread (waits for a snapshot in progress)."""
        self._stopping.set()
        self._wanted.set()
        self._graph_wanted.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if self._graph_thread.is_alive():
            self._graph_thread.join(timeout=1.0)  # a build under way is left to finish or die with the process

    def close(self) -> None:
        self.stop_snapshots()
        with contextlib.suppress(Exception):  # recorded and logged; every write is in the log, replayed at start
            self.snapshot()
        if self.wal is not None:
            self.wal.close()
