"""FAISS vectors + the id/text/metadata store, persisted atomically, tied by manifest to the model that built it.

On disk, ``<index_dir>`` is a symlink to a complete version folder ``.<name>.<stamp>/`` holding ``index.faiss`` (the
fp32 vectors), ``docs.jsonl`` and ``manifest.json``, and with an approximate index ``graph.faiss`` and
``graph-rows.npy`` (``app.stores.embedded.graph``). A loaded index reads the vectors and documents from the
version's files, memory-mapped (``app.stores.embedded.passages``); only the graph, the filters' columns and the
writes made since are in memory. A new version is written and fsynced beside the old one, then
the link is swapped with one ``rename``: a reader (or a crash) sees the old index or the new one, never a mix.
"""

from __future__ import annotations

import heapq
import logging
import os
import shutil
from array import array
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

import faiss
import numpy as np

from app.corpus import Document, Group, Hit
from app.errors import GroupingError
from app.filters import Filter
from app.jsonl import json_objects_at
from app.manifest import IndexManifest, ManifestError, fsync_path, load_index_manifest, write_json_atomic
from app.stores.base import top_groups
from app.stores.embedded.columns import FilterColumns
from app.stores.embedded.graph import REBUILD_DEAD_SHARE, RESCORE_CANDIDATES, GraphChoice, PassageGraph
from app.stores.embedded.integrity import (
    CHECKSUMMED_FORMAT,
    ChecksumCheck,
    SnapshotDamaged,
    check_consistency,
    write_checksums,
)
from app.stores.embedded.passages import (
    DocumentList,
    DocumentRows,
    MappedLines,
    PassageStore,
    VectorRows,
    base_matrix,
    document_line,
    write_flat_index,
)

log = logging.getLogger(__name__)

# flat: exact search only; hnsw: an approximate graph beside the vectors; auto: the graph from AUTO_GRAPH_FROM
IndexType = Literal["flat", "hnsw", "auto"]
VECTORS_FILE, DOCS_FILE, MANIFEST_FILE = "index.faiss", "docs.jsonl", "manifest.json"
SNAPSHOT_FILES = (VECTORS_FILE, DOCS_FILE, MANIFEST_FILE)
GRAPH_FILE, GRAPH_ROWS_FILE = "graph.faiss", "graph-rows.npy"
AUTO_GRAPH_FROM = 20_000  # passages: below it exact search is as fast as the graph (docs/PERFORMANCE.md)
EXACT_BELOW = 20_000  # a filter allowing fewer passages than this is searched exactly, the graph passed by
GATHER_SHARE = 8  # an exact search allowed less than 1/8 of the index scores those passages' vectors alone


@dataclass(frozen=True)
class GraphTuning:
    """When the graph is used (settings ``SEARCH_GRAPH_*``): built for ``auto`` indexes from ``auto_from``
    passages, passed by for searches among fewer than ``exact_below`` passages, searched with ``ef_search`` (None:
    the value it measured when built)."""

    auto_from: int = AUTO_GRAPH_FROM
    exact_below: int = EXACT_BELOW
    ef_search: int | None = None


@dataclass(frozen=True)
class Selection:
    """What a search may return: ``allowed`` slots (None: all), or ``languages`` whose rows the graph selects
    itself; ``available``: how many passages that is."""

    allowed: np.ndarray | None
    languages: list[str] | None
    available: int


@dataclass(frozen=True)
class Snapshot:
    """What a version folder holds, copied from the index so that it can be written without a lock. ``graph``:
    the serialised graph and each graph row's snapshot row (-1: dead), or None without a graph."""

    vectors: faiss.Index | VectorRows
    documents: Sequence[Document]
    manifest: IndexManifest
    graph: tuple[np.ndarray, np.ndarray] | None = None
    slots: np.ndarray | None = None  # the index's slot of each row, when copied from an index


class SearchIndex:
    """Vectors and documents kept in step. Not thread-safe: ``Collection`` serialises access.

    Each document has a *slot*, never reused; ``passages`` holds its vector and document by slot and searches the
    vectors exactly; an approximate index adds a ``PassageGraph`` that proposes candidates, re-scored from those
    vectors. The id, language and metadata columns that filters read are kept here. On disk the slots are
    renumbered 0..n-1, so that ``index.faiss`` rows and ``docs.jsonl`` lines line up.
    """

    def __init__(
        self,
        vectors: faiss.Index,
        documents: Sequence[Document],
        manifest: IndexManifest,
        graph: PassageGraph | None = None,
    ) -> None:
        """An index of these documents and vectors, all held in memory (``load`` maps a saved one instead)."""
        if vectors.ntotal != len(documents):
            raise ManifestError(f"index holds {vectors.ntotal} vectors but {len(documents)} documents")
        flat = faiss.IndexFlatIP(vectors.d)
        if len(documents):  # an older snapshot's HNSW index.faiss gives its vectors up the same way
            flat.add(vectors.reconstruct_n(0, vectors.ntotal))
        passages = PassageStore(vectors.d, flat, DocumentList(documents), np.arange(len(documents)))
        self._start(passages, enumerate(documents), manifest, graph)

    def _start(
        self,
        passages: PassageStore,
        documents: Iterable[tuple[int, Document]],
        manifest: IndexManifest,
        graph: PassageGraph | None,
    ) -> None:
        self.manifest = manifest
        self.dim = passages.dim
        self.passages = passages
        self._slot_of: dict[str, int] = {}
        self._filters = FilterColumns()
        for slot, document in documents:
            self._remember(slot, document)
        self._next_slot = len(self._slot_of)
        self.tuning = GraphTuning()
        self.graph = graph
        if graph is not None:
            self._reconcile(graph)

    def _remember(self, slot: int, document: Document) -> None:
        if document.id in self._slot_of:
            raise ManifestError(f"document id '{document.id}' appears twice")
        self._slot_of[document.id] = slot
        self._filters.add(slot, document)

    def _forget(self, slot: int) -> None:
        document = self.passages.document(slot)
        del self._slot_of[document.id]
        self._filters.remove(slot, document)

    @property
    def size(self) -> int:
        return len(self._slot_of)

    @property
    def languages(self) -> list[str]:
        return sorted(self._filters.language_count)

    @property
    def group_fields(self) -> list[str]:
        """Metadata fields that ``group_by`` accepts: held by some document, never as a list or object."""
        counts = self._filters.field_count
        return sorted(name for name in counts[True] if not counts[False][name])

    def get(self, doc_id: str) -> Document | None:
        slot = self._slot_of.get(doc_id)
        return None if slot is None else self.passages.document(slot)

    def __contains__(self, doc_id: str) -> bool:
        return doc_id in self._slot_of

    def passage_ids(self, doc_ids: Iterable[str]) -> list[str]:
        """The passages of these documents: the passage with the id itself, and those split from it."""
        doc_ids = list(doc_ids)
        found = dict.fromkeys(doc_id for doc_id in doc_ids if doc_id in self._slot_of)
        split = self._filters.slots_holding("doc_id", [("string", doc_id) for doc_id in doc_ids])
        for slot in split.tolist():
            found[self.passages.document(slot).id] = None
        return list(found)

    def _allowed_slots(self, languages: Iterable[str] | None, where: Filter | None) -> np.ndarray | None:
        """Slots a search may return (ascending), or None for all of them."""
        return self._filters.allowed(None if languages is None else list(languages), where)

    def search(
        self,
        queries: np.ndarray,
        top_k: int,
        languages: Iterable[str] | None = None,
        where: Filter | None = None,
        exact: bool = False,
    ) -> list[list[Hit]]:
        """Top-k by inner product (cosine for normalised vectors), optionally among some languages and the
        documents whose metadata satisfies ``where`` (filtered inside the search, not after it). Scores are always
        the exact ones; with a graph the top-k is approximate unless ``exact``."""
        return self._search_among(queries, top_k, self._selection(languages, where), exact)

    def _selection(self, languages: Iterable[str] | None, where: Filter | None) -> Selection:
        if where is None and languages is not None and self.graph is not None:
            # languages alone: the graph selects their rows itself, no mask over every slot is built unless needed
            counts = self._filters.language_count
            wanted = sorted(set(languages) & counts.keys())
            return Selection(None, wanted, sum(counts[lang] for lang in wanted))
        allowed = self._allowed_slots(languages, where)
        return Selection(allowed, None, self.size if allowed is None else len(allowed))

    def _graph_pays_off(self, available: int, top_k: int) -> bool:
        """Search through the graph: over many passages, asked for a small share of them."""
        return available >= self.tuning.exact_below and 2 * max(RESCORE_CANDIDATES, top_k) <= available

    def _search_among(
        self, queries: np.ndarray, top_k: int, selection: Selection, exact: bool = False
    ) -> list[list[Hit]]:
        """Top-k among the selected slots."""
        top_k = min(top_k, selection.available)
        if top_k <= 0:
            return [[] for _ in range(len(queries))]
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        if self.graph is not None and not exact and self._graph_pays_off(selection.available, top_k):
            candidates = max(RESCORE_CANDIDATES, top_k)
            return self._graph_search(
                queries, top_k, candidates, selection.available, selection.allowed, selection.languages
            )
        allowed = selection.allowed
        if selection.languages is not None:
            allowed = self._allowed_slots(selection.languages, None)
        if allowed is not None and GATHER_SHARE * len(allowed) < self.size:
            return self._gathered_search(queries, top_k, allowed)
        scores, slots = self.passages.search(queries, top_k, allowed)
        return [
            [Hit(self.passages.document(slot), float(score)) for score, slot in zip(s, r, strict=True) if slot >= 0]
            for s, r in zip(scores.tolist(), slots.tolist(), strict=True)
        ]

    def _gathered_search(self, queries: np.ndarray, top_k: int, slots: np.ndarray) -> list[list[Hit]]:
        """Exact search among a few allowed slots: their vectors gathered and scored, the cost growing with them
        rather than with the index (a selector over the flat index checks every row)."""
        scores = queries @ self.passages.vectors(slots).T
        return [self._top_hits(slots, row, top_k) for row in scores]

    def _top_hits(self, slots: np.ndarray, scores: np.ndarray, top_k: int) -> list[Hit]:
        """The ``top_k`` best of scored slots, ties broken by slot as the flat index breaks them."""
        best = np.argpartition(-scores, top_k - 1)[:top_k] if top_k < len(scores) else np.arange(len(scores))
        best = best[np.lexsort((slots[best], -scores[best]))]
        return [Hit(self.passages.document(int(slots[i])), float(scores[i])) for i in best]

    def _graph_search(
        self,
        queries: np.ndarray,
        top_k: int,
        candidates: int,
        available: int,
        allowed: np.ndarray | None = None,
        languages: list[str] | None = None,
    ) -> list[list[Hit]]:
        """The graph's candidates, and every passage written since the last snapshot, re-scored with the fp32
        vectors: exact scores, approximate recall, and a write found at once whatever the graph makes of it."""
        assert self.graph is not None
        share = available / max(self.size, 1)
        proposed = self.graph.candidates(queries, candidates, allowed, self.tuning.ef_search, languages, share)
        recent = self.passages.written_slots()
        if allowed is not None:
            recent = np.intersect1d(recent, allowed, assume_unique=True)
        elif languages is not None:
            recent = recent[self._filters.language.having(languages, self._filters.slots, at=recent)]
        results = []
        for query, slots in zip(queries, proposed, strict=True):
            slots = np.union1d(slots[slots >= 0], recent)
            scores = self.passages.vectors(slots) @ query if len(slots) else np.empty(0, np.float32)
            results.append(self._top_hits(slots, scores, top_k))
        return results

    def selected_ids(self, languages: Iterable[str] | None = None, where: Filter | None = None) -> Iterator[str]:
        """The ids of the passages in ``languages`` that satisfy ``where`` (no order)."""
        allowed = self._allowed_slots(languages, where)
        if allowed is None:
            return iter(list(self._slot_of))
        flags = np.zeros(self._filters.slots, dtype=bool)
        flags[allowed] = True
        return (doc_id for doc_id, slot in list(self._slot_of.items()) if flags[slot])

    def count(self, languages: Iterable[str] | None = None, where: Filter | None = None) -> int:
        allowed = self._allowed_slots(languages, where)
        return self.size if allowed is None else len(allowed)

    def scroll(
        self, limit: int, after: str | None = None, languages: Iterable[str] | None = None, where: Filter | None = None
    ) -> list[Document]:
        """The first ``limit`` selected passages by id after ``after``: one pass, no sort of the whole set."""
        ids = self.selected_ids(languages, where)
        if after is not None:
            ids = (doc_id for doc_id in ids if doc_id > after)
        return [self.passages.document(self._slot_of[doc_id]) for doc_id in heapq.nsmallest(limit, ids)]

    def check_group_field(self, group_by: str) -> None:
        counts = self._filters.field_count
        if counts[False][group_by]:
            raise GroupingError(
                f"cannot group by '{group_by}': {counts[False][group_by]} document(s) hold a list or "
                "object there; grouping needs a string, number or boolean"
            )
        if not counts[True][group_by]:
            known = sorted(counts[True])
            raise GroupingError(f"no document has a metadata field '{group_by}'; groupable fields: {known}")

    def search_grouped(
        self,
        queries: np.ndarray,
        top_k: int,
        group_by: str,
        languages: Iterable[str] | None = None,
        where: Filter | None = None,
        first_fetch: int = 0,
        exact: bool = False,
    ) -> list[list[Group]]:
        """The ``top_k`` groups among the allowed documents (see ``top_groups``; approximate as ``search`` is)."""
        self.check_group_field(group_by)
        selection = self._selection(languages, where)

        def search(rows: np.ndarray, fetch: int) -> list[list[Hit]]:
            return self._search_among(rows, fetch, selection, exact)

        return top_groups(search, queries, top_k, group_by, selection.available, first_fetch)

    def upsert(self, documents: list[Document], embeddings: np.ndarray) -> None:
        """Add documents; a document whose id exists replaces the old one (text, metadata and vector)."""
        if len(documents) != len(embeddings) or len({d.id for d in documents}) != len(documents):
            raise ValueError("upsert needs one embedding per document and distinct ids")
        self.delete([d.id for d in documents if d.id in self._slot_of])
        slots = np.arange(self._next_slot, self._next_slot + len(documents), dtype=np.int64)
        self._next_slot += len(documents)
        embeddings = np.ascontiguousarray(embeddings, dtype=np.float32)
        self.passages.add(slots, documents, embeddings)
        if self.graph is not None:
            self.graph.add(embeddings, slots, [d.lang for d in documents])
        for slot, document in zip(slots.tolist(), documents, strict=True):
            self._remember(slot, document)

    def delete(self, doc_ids: list[str]) -> list[str]:
        """Remove the documents that exist; return their ids."""
        present = [i for i in doc_ids if i in self._slot_of]
        if present:
            slots = np.array([self._slot_of[i] for i in present], dtype=np.int64)
            for slot in slots.tolist():
                self._forget(slot)
            self.passages.remove(slots)
            if self.graph is not None:
                self.graph.remove(slots)
        return present

    @property
    def wants_graph(self) -> bool:
        """Whether this index should have a graph: ``hnsw``, or ``auto`` over ``AUTO_GRAPH_FROM`` passages."""
        kind = self.manifest.index_type
        return self.size > 0 and (kind == "hnsw" or (kind == "auto" and self.size >= self.tuning.auto_from))

    @property
    def needs_graph(self) -> bool:
        """A graph should be (re)built: wanted and missing, or holding too many dead rows."""
        return self.wants_graph and (self.graph is None or self.graph.wants_rebuild)

    def search_description(self) -> str:
        """How searches are answered, in words (``/ready``)."""
        graph = self.graph
        if graph is None:
            if self.wants_graph:
                return "exact, until the approximate graph is built (under way)"
            return f"exact ({self.manifest.index_type} index)"
        dead = f"{graph.dead / max(graph.rows, 1):.1%} dead, rebuilt past {REBUILD_DEAD_SHARE:.0%}"
        ef_search = self.tuning.ef_search or graph.choice.ef_search
        return (
            f"approximate over {self.tuning.exact_below:,} passages: HNSW over int8 codes ({graph.rows:,} rows, "
            f"{dead}, efSearch {ef_search}), candidates re-scored exactly; exact below it"
        )

    def graph_inputs(self) -> tuple[np.ndarray, np.ndarray]:
        """The live vectors and their slots, copied: what a graph is built from off the lock."""
        slots = self.passages.live_slots()
        return self.passages.vectors(slots), slots

    def install_graph(self, graph: PassageGraph) -> None:
        """Serve ``graph``, built from ``graph_inputs`` a while ago: the writes made since are applied to it."""
        self._reconcile(graph)
        self.graph = graph

    def build_graph(self, progress: bool = False) -> None:
        """Build the graph here and now (the index CLI; the service builds it in the background)."""
        vectors, slots = self.graph_inputs()
        self.install_graph(PassageGraph.build(vectors, slots, progress=progress))

    def _reconcile(self, graph: PassageGraph) -> None:
        """Bring ``graph`` to the documents held now: add the slots it lacks, drop the ones gone."""
        held, in_graph = self.passages.live_slots(), graph.slots()
        graph.remove(np.setdiff1d(in_graph, held))
        graph.label(self._filters.language.codes(self._filters.slots), self._filters.language.keys)
        missing = np.setdiff1d(held, in_graph)
        if len(missing):
            languages = [self.passages.document(slot).lang for slot in missing.tolist()]
            graph.add(self.passages.vectors(missing), missing, languages)

    def save(self, index_dir: Path, wal_seq: int | None = None) -> Path:
        """Write a new version folder, fsync it, then atomically point ``index_dir`` at it.

        ``wal_seq`` records the last write-ahead-log record the snapshot holds (replay starts after it).
        """
        snapshot = self.snapshot_copy(wal_seq)
        version = write_version(index_dir, snapshot)
        self.manifest = snapshot.manifest
        return version

    def snapshot_copy(self, wal_seq: int | None = None) -> Snapshot:
        """What a snapshot writes, copied so that the writing can happen without a lock."""
        vectors, documents, slots = self.passages.snapshot_rows()
        graph = None
        if self.graph is not None:
            data, graph_slots, choice = self.graph.serialized()
            # snapshot rows are the live slots in order; a dead graph row (-1) stays dead
            rows = np.where(graph_slots >= 0, np.searchsorted(slots, graph_slots), -1)
            graph = (data, rows)
        manifest = self.manifest.model_copy(
            update={
                "format_version": max(self.manifest.format_version, CHECKSUMMED_FORMAT),
                "size": len(documents),
                "languages": dict(sorted(self._filters.language_count.items())),
                "wal_seq": self.manifest.wal_seq if wal_seq is None else wal_seq,
                "graph": None if self.graph is None else choice,
            }
        )
        return Snapshot(vectors, documents, manifest, graph, slots)

    def rebase(self, mapped: tuple[faiss.IndexFlat, MappedLines], slots: np.ndarray) -> None:
        """Read the vectors and texts from a snapshot of this index just written (``mapped_rows``; ``slots``: its
        rows' slots) instead of from the previous one and memory: the writes it holds give their memory back."""
        self.passages = self.passages.rebased(*mapped, slots)

    @classmethod
    def load(cls, index_dir: Path) -> SearchIndex:
        """Load a version folder, verifying its checksums and that its files agree (``SnapshotDamaged`` if not)."""
        folder = Path(index_dir).resolve()  # resolve once: every file comes from the same version
        manifest = load_index_manifest(folder)
        for name in (VECTORS_FILE, DOCS_FILE):
            if not (folder / name).is_file():
                raise ManifestError(f"index folder {index_dir} is missing {name}")
        has_graph = (folder / GRAPH_FILE).is_file()
        required = SNAPSHOT_FILES + ((GRAPH_FILE, GRAPH_ROWS_FILE) if has_graph else ())
        checksums = ChecksumCheck(folder, required, manifest.format_version)  # hashes while we read
        try:
            vectors = faiss.read_index(str(folder / VECTORS_FILE), faiss.IO_FLAG_MMAP_IFC)
        except RuntimeError as exc:
            checksums.result()  # a checksum mismatch says more than FAISS's parse error
            raise SnapshotDamaged(f"{folder / VECTORS_FILE} is damaged: {str(exc).splitlines()[0]}") from exc
        if isinstance(vectors, faiss.IndexFlat):
            checked = mapped_vectors(folder / VECTORS_FILE, vectors)
        else:  # an older snapshot's HNSW index: its vectors, in memory
            flat = faiss.IndexFlatIP(vectors.d)
            flat.add(stored_vectors(vectors))
            vectors, checked = flat, stored_vectors(flat)
        offsets = array("q")  # where each row's line starts in docs.jsonl
        index = cls.__new__(cls)

        def rows() -> Iterator[tuple[int, Document]]:  # ids, languages and metadata: the texts stay in the file
            for _, offset, row in json_objects_at(folder / DOCS_FILE, ManifestError, ("id", "text", "lang")):
                offsets.append(offset)
                yield len(offsets) - 1, Document(row["id"], "", row["lang"], row.get("metadata", {}))

        try:
            index._start(PassageStore(vectors.d), rows(), manifest, None)  # the filters' columns, streamed
        except ManifestError:
            checksums.result()
            raise
        checksums.result()  # before the graph is parsed: a damaged graph is refused, never read
        graph = load_graph(folder, manifest) if has_graph else None
        check_consistency(folder, checked, len(offsets), manifest)
        del checked
        if graph is not None and graph.rows and int(graph.slot_of_row.max()) >= len(offsets):
            raise SnapshotDamaged(f"{folder / GRAPH_ROWS_FILE} names rows past the {len(offsets)} documents")
        lines = MappedLines(folder / DOCS_FILE, np.frombuffer(offsets, dtype=np.int64))
        index.passages = PassageStore(vectors.d, vectors, lines, np.arange(len(offsets), dtype=np.int64))
        if graph is not None:
            index.install_graph(graph)
        return index


def mapped_rows(folder: Path) -> tuple[faiss.IndexFlat, MappedLines]:
    """A version folder's vectors and documents, memory-mapped (its checksums verified by whoever wrote it)."""
    vectors = faiss.read_index(str(folder / VECTORS_FILE), faiss.IO_FLAG_MMAP_IFC)
    return vectors, MappedLines.scanned(folder / DOCS_FILE)


def load_graph(folder: Path, manifest: IndexManifest) -> PassageGraph:
    """The graph a snapshot saved beside its vectors (its checksums verified already)."""
    try:
        rows = np.load(folder / GRAPH_ROWS_FILE, allow_pickle=False)
        data = np.fromfile(folder / GRAPH_FILE, dtype=np.uint8)
        return PassageGraph.deserialized(data, rows, GraphChoice(**(manifest.graph or {})))
    except (OSError, ValueError, RuntimeError, TypeError) as exc:
        raise SnapshotDamaged(f"{folder}: the graph files are damaged: {str(exc).splitlines()[0]}") from exc


def mapped_vectors(path: Path, index: faiss.IndexFlat) -> np.ndarray:
    """The vectors of a saved flat index, read through a mapping of their own: checking them all leaves no pages
    resident in the index's mapping (they stay in the page cache, not in this process)."""
    size = index.ntotal * index.d * 4
    if not size:
        return np.empty((0, index.d), np.float32)
    # the flat format ends with its vectors
    return np.memmap(path, dtype=np.float32, mode="r", offset=path.stat().st_size - size, shape=(index.ntotal, index.d))


def stored_vectors(index: faiss.Index) -> np.ndarray:
    """The raw vectors of a flat or HNSW-flat index as a read-only view (no copy)."""
    flat = faiss.downcast_index(index.storage) if isinstance(index, faiss.IndexHNSW) else index
    if not isinstance(flat, faiss.IndexFlat):
        return flat.reconstruct_n(0, flat.ntotal) if flat.ntotal else np.empty((0, flat.d), np.float32)
    return base_matrix(flat)


def write_snapshot_files(folder: Path, snapshot: Snapshot) -> None:
    """Vectors, documents, manifest (and graph) and their checksums into an existing empty ``folder``, fsynced."""
    if isinstance(snapshot.vectors, VectorRows):
        write_flat_index(folder / VECTORS_FILE, snapshot.vectors)
    else:
        faiss.write_index(snapshot.vectors, str(folder / VECTORS_FILE))
    documents = snapshot.documents
    with open(folder / DOCS_FILE, "wb") as handle:
        handle.writelines(documents.lines() if isinstance(documents, DocumentRows) else map(document_line, documents))
    write_json_atomic(folder / MANIFEST_FILE, snapshot.manifest)
    names = list(SNAPSHOT_FILES)
    if snapshot.graph is not None:
        data, rows = snapshot.graph
        data.tofile(folder / GRAPH_FILE)
        with open(folder / GRAPH_ROWS_FILE, "wb") as handle:
            np.save(handle, rows)
        names += [GRAPH_FILE, GRAPH_ROWS_FILE]
    for name in names:
        fsync_path(folder / name)
    write_checksums(folder, names)  # last: a folder with checksums is complete


def new_version_folder(index_dir: Path) -> Path:
    """An empty version folder beside ``index_dir``, named by the time (newest sorts last)."""
    index_dir = Path(index_dir)
    index_dir.parent.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%f")
    version = index_dir.parent / f".{index_dir.name}.{stamp}"
    version.mkdir()
    return version


def write_version(index_dir: Path, snapshot: Snapshot) -> Path:
    """A complete, fsynced version folder beside ``index_dir``, then the link swap; a failure leaves no folder."""
    version = new_version_folder(index_dir)
    try:
        write_snapshot_files(version, snapshot)
    except BaseException:
        shutil.rmtree(version, ignore_errors=True)  # a half-written version would only use up the disk
        raise
    try:
        point_link(index_dir, version)
    except BaseException:
        if index_dir.resolve() != version.resolve():  # never delete the version the link already points at
            shutil.rmtree(version, ignore_errors=True)
        raise
    return version


def readable_manifest(index_dir: Path) -> IndexManifest:
    """The manifest of the version the index would serve: the newest, or the newest older one whose manifest reads
    (loading verifies the rest; this answers "which model encoded it" before the index is loaded)."""
    try:
        return load_index_manifest(index_dir)
    except ManifestError:
        for version in version_folders(index_dir):
            try:
                return load_index_manifest(version)
            except ManifestError:
                continue
        raise


def version_folders(index_dir: Path) -> list[Path]:
    """The version folders kept beside ``index_dir``, newest first."""
    index_dir = Path(index_dir)
    return sorted((p for p in index_dir.parent.glob(f".{index_dir.name}.2*") if p.is_dir()), reverse=True)


def point_link(link: Path, version: Path, keep: int = 2) -> None:
    """Swap ``link`` to ``version`` with one rename, then drop all but the newest ``keep`` versions.

    The previous version is kept so that a process that resolved the old link just before the swap can still
    read it. A plain folder at ``link`` (not one of ours) is refused rather than deleted.
    """
    if link.exists() and not link.is_symlink():
        raise ManifestError(f"{link} is a plain folder, not an index link; move it away first")
    tmp_link = link.parent / f".{link.name}.link.tmp"
    tmp_link.unlink(missing_ok=True)
    tmp_link.symlink_to(version.name)
    os.replace(tmp_link, link)
    fsync_path(link.parent)
    for old in version_folders(link)[keep:]:
        shutil.rmtree(old, ignore_errors=True)
