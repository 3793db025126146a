"""The passages' vectors and documents by slot: what the last snapshot holds is read from its files, memory-mapped
(the operating system pages it in and out as searches touch it), and only what was written since lives in memory.
An index built in memory has the documents it was built from as its base until it is saved and loaded.

A snapshot's rows are its live slots in ascending order (``base_slots``). A slot is never reused, so a later write
gets a slot past every base slot: the mapped part and the in-memory part never overlap, and a deleted base row is
only flagged dead.
"""

from __future__ import annotations

import json
import mmap
import os
import struct
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import faiss
import numpy as np

from app.corpus import Document


def document_line(document: Document) -> bytes:
    """A document as one ``docs.jsonl`` line."""
    row = {"id": document.id, "text": document.text, "lang": document.lang, "metadata": document.metadata}
    return (json.dumps(row, ensure_ascii=False) + "\n").encode("utf-8")


def parsed_document(line: bytes) -> Document:
    row = json.loads(line)
    return Document(row["id"], row["text"], row["lang"], row.get("metadata", {}))


class RowSource(Protocol):
    """Where base rows' documents are read from."""

    def line(self, row: int) -> bytes: ...

    def document(self, row: int) -> Document: ...


class DocumentList:
    """Base rows held as objects: an index built in memory (``SearchIndex(...)``) before it is saved."""

    def __init__(self, documents: Sequence[Document]) -> None:
        self.documents = documents

    def line(self, row: int) -> bytes:
        return document_line(self.documents[row])

    def document(self, row: int) -> Document:
        return self.documents[row]


class MappedLines:
    """A snapshot's ``docs.jsonl``, memory-mapped; ``offsets[i]`` is where row ``i``'s line starts."""

    def __init__(self, path: Path, offsets: np.ndarray) -> None:
        self.path = path
        self.offsets = np.asarray(offsets, dtype=np.int64)
        with open(path, "rb") as handle:  # the mapping outlives the descriptor (and the file, once unlinked)
            self._map = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) if len(self.offsets) else b""

    @classmethod
    def scanned(cls, path: Path) -> MappedLines:
        """A file written by a snapshot (one line per row, no blank lines), its line starts found by scanning."""
        with open(path, "rb") as handle:
            if not os.fstat(handle.fileno()).st_size:
                return cls(path, np.zeros(0, np.int64))
            with mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as mapped:
                data = np.frombuffer(mapped, dtype=np.uint8)
                ends = np.flatnonzero(data == ord("\n"))
                del data  # the mapping closes only without views on it
        return cls(path, np.concatenate([[0], ends[:-1] + 1]).astype(np.int64))

    def document(self, row: int) -> Document:
        return parsed_document(self.line(row))

    def line(self, row: int) -> bytes:
        start = int(self.offsets[row])
        end = self._map.find(b"\n", start)
        return self._map[start : len(self._map) if end < 0 else end + 1]


@dataclass(frozen=True)
class DocumentRows(Sequence[Document]):
    """Documents in slot order, copied cheaply for a snapshot: mapped base rows by number, later writes by value.
    Written out line by line (``lines``), base lines as they were, so that a snapshot never holds every document
    as an object."""

    base: RowSource | None
    base_rows: np.ndarray
    written: tuple[Document, ...]

    def __len__(self) -> int:
        return len(self.base_rows) + len(self.written)

    def __getitem__(self, index):  # type: ignore[no-untyped-def]
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError(index)
        if index < len(self.base_rows):
            assert self.base is not None
            return self.base.document(int(self.base_rows[index]))
        return self.written[index - len(self.base_rows)]

    def __iter__(self) -> Iterator[Document]:
        return (self[i] for i in range(len(self)))

    def lines(self) -> Iterator[bytes]:
        if self.base is None and len(self.base_rows):
            raise ValueError("base rows without the file they are read from")
        if self.base is not None:
            for row in self.base_rows.tolist():
                line = self.base.line(row)
                yield line if line.endswith(b"\n") else line + b"\n"
        for document in self.written:
            yield document_line(document)


@dataclass(frozen=True)
class VectorRows:
    """Vectors in slot order, copied cheaply for a snapshot: mapped base rows by number (the file never changes),
    later writes by value. Read like a flat index (``ntotal``, ``d``, ``reconstruct_*``) and written out in blocks
    (``write_flat_index``), so that a snapshot neither holds the lock nor a second copy of every vector."""

    base: faiss.IndexFlat
    base_rows: np.ndarray
    written: np.ndarray

    @property
    def d(self) -> int:
        return self.base.d

    @property
    def ntotal(self) -> int:
        return len(self.base_rows) + len(self.written)

    def reconstruct_batch(self, rows: np.ndarray | list[int]) -> np.ndarray:
        rows = np.asarray(rows, dtype=np.int64)
        found = np.empty((len(rows), self.d), dtype=np.float32)
        in_base = rows < len(self.base_rows)
        if in_base.any():
            found[in_base] = base_matrix(self.base)[self.base_rows[rows[in_base]]]
        found[~in_base] = self.written[rows[~in_base] - len(self.base_rows)]
        return found

    def reconstruct_n(self, start: int, count: int) -> np.ndarray:
        return self.reconstruct_batch(np.arange(start, start + count))

    def blocks(self, size: int = 65536) -> Iterator[np.ndarray]:
        for start in range(0, self.ntotal, size):
            yield self.reconstruct_n(start, min(size, self.ntotal - start))


def base_matrix(index: faiss.IndexFlat) -> np.ndarray:
    """A flat index's vectors as a read-only view (no copy; for a mapped index, of the mapping)."""
    if not index.ntotal:
        return np.empty((0, index.d), np.float32)
    return faiss.rev_swig_ptr(index.get_xb(), index.ntotal * index.d).reshape(index.ntotal, index.d)


def write_flat_index(path: Path, vectors: VectorRows) -> None:
    """``vectors`` as the file ``faiss.write_index`` writes for an ``IndexFlatIP`` (byte for byte; tested), block
    by block."""
    count = vectors.ntotal
    header = struct.pack(
        "<4siqqqBiQ", b"IxFI", vectors.d, count, 1 << 20, 1 << 20, 1, faiss.METRIC_INNER_PRODUCT, count * vectors.d
    )
    with open(path, "wb") as handle:
        handle.write(header)
        for block in vectors.blocks():
            handle.write(np.ascontiguousarray(block, dtype="<f4").tobytes())


class PassageStore:
    """Vectors and documents by slot. Not thread-safe: ``SearchIndex`` is used under ``Collection``'s lock."""

    def __init__(
        self,
        dim: int,
        base_vectors: faiss.IndexFlat | None = None,
        base_lines: RowSource | None = None,
        base_slots: np.ndarray | None = None,
    ) -> None:
        self.dim = dim
        self.base_slots = np.zeros(0, np.int64) if base_slots is None else np.asarray(base_slots, np.int64)
        if base_vectors is None or not len(self.base_slots):
            base_vectors, base_lines = faiss.IndexFlatIP(dim), None
        if base_vectors.ntotal != len(self.base_slots):
            raise ValueError(f"{base_vectors.ntotal} base vectors for {len(self.base_slots)} base slots")
        self.base_vectors = base_vectors
        self.base_lines = base_lines
        self._base_live = np.ones(len(self.base_slots), dtype=bool)
        self._base_dead = 0
        self.written_vectors = faiss.IndexIDMap2(faiss.IndexFlatIP(dim))
        self.written_documents: dict[int, Document] = {}

    @property
    def size(self) -> int:
        return len(self.base_slots) - self._base_dead + len(self.written_documents)

    def _base_rows(self, slots: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """For each slot: its base row and whether it is a live base row."""
        slots = np.asarray(slots, dtype=np.int64)
        if not len(self.base_slots):
            return np.zeros(len(slots), np.int64), np.zeros(len(slots), bool)
        rows = np.minimum(np.searchsorted(self.base_slots, slots), len(self.base_slots) - 1)
        return rows, (self.base_slots[rows] == slots) & self._base_live[rows]

    def add(self, slots: np.ndarray, documents: list[Document], vectors: np.ndarray) -> None:
        """New slots, past every slot held."""
        self.written_vectors.add_with_ids(np.ascontiguousarray(vectors, dtype=np.float32), slots)
        for slot, document in zip(np.asarray(slots).tolist(), documents, strict=True):
            self.written_documents[slot] = document

    def remove(self, slots: np.ndarray) -> None:
        rows, in_base = self._base_rows(slots)
        self._base_live[rows[in_base]] = False
        self._base_dead += int(in_base.sum())
        written = np.asarray(slots, dtype=np.int64)[~in_base]
        if len(written):
            self.written_vectors.remove_ids(faiss.IDSelectorBatch(written))
            for slot in written.tolist():
                self.written_documents.pop(slot, None)

    def document(self, slot: int) -> Document:
        found = self.written_documents.get(slot)
        if found is not None:
            return found
        rows, in_base = self._base_rows(np.array([slot]))
        if not in_base[0] or self.base_lines is None:
            raise KeyError(slot)
        return self.base_lines.document(int(rows[0]))

    def vectors(self, slots: np.ndarray) -> np.ndarray:
        """The fp32 vectors of held slots, in their order."""
        slots = np.asarray(slots, dtype=np.int64)
        found = np.empty((len(slots), self.dim), dtype=np.float32)
        rows, in_base = self._base_rows(slots)
        if in_base.any():
            found[in_base] = base_matrix(self.base_vectors)[rows[in_base]]
        if not in_base.all():
            found[~in_base] = self.written_vectors.reconstruct_batch(slots[~in_base])
        return found

    def written_slots(self) -> np.ndarray:
        """The slots written since the snapshot the base was read from (no order)."""
        return faiss.vector_to_array(self.written_vectors.id_map)

    def live_slots(self) -> np.ndarray:
        """Every held slot, ascending."""
        return np.concatenate([self.base_slots[self._base_live], np.sort(self.written_slots())])

    def search(
        self, queries: np.ndarray, top_k: int, allowed: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Exact top-k (scores, slots; -1 pads) among ``allowed`` slots (None: all), ties broken by slot."""
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        parts = []
        if len(self.base_slots):
            flags = self._base_live
            if allowed is not None:
                rows, in_base = self._base_rows(allowed)
                flags = np.zeros(len(self.base_slots), dtype=bool)
                flags[rows[in_base]] = True
            params = None
            if not flags.all():
                bitmap = np.packbits(flags, bitorder="little")
                params = faiss.SearchParameters(sel=faiss.IDSelectorBitmap(len(flags), faiss.swig_ptr(bitmap)))
            scores, rows = self.base_vectors.search(queries, top_k, params=params)
            parts.append((scores, np.where(rows >= 0, self.base_slots[np.maximum(rows, 0)], -1)))
        if self.written_vectors.ntotal:
            params = None
            if allowed is not None:
                params = faiss.SearchParameters(sel=faiss.IDSelectorBatch(np.asarray(allowed, dtype=np.int64)))
            parts.append(self.written_vectors.search(queries, top_k, params=params))
        if not parts:
            return np.full((len(queries), top_k), -np.inf, np.float32), np.full((len(queries), top_k), -1, np.int64)
        if len(parts) == 1:
            return parts[0]
        scores = np.concatenate([p[0] for p in parts], axis=1)
        slots = np.concatenate([p[1] for p in parts], axis=1)
        # best score first, then lowest slot; padding (-1) last
        order = np.lexsort((np.where(slots < 0, np.iinfo(np.int64).max, slots), -scores), axis=1)[:, :top_k]
        return np.take_along_axis(scores, order, axis=1), np.take_along_axis(slots, order, axis=1)

    def rebased(self, vectors: faiss.IndexFlat, lines: RowSource, slots: np.ndarray) -> PassageStore:
        """This store over a newer snapshot whose rows are ``slots``: what was deleted since is dropped, what was
        written since stays in memory, and the rest is read from the new files."""
        store = PassageStore(self.dim, vectors, lines, slots)
        held = self.live_slots()
        store.remove(np.setdiff1d(slots, held))
        later = np.setdiff1d(held, slots)
        if len(later):
            store.add(later, [self.document(slot) for slot in later.tolist()], self.vectors(later))
        return store

    def snapshot_rows(self) -> tuple[VectorRows, DocumentRows, np.ndarray]:
        """The live vectors, documents and slots in slot order (a snapshot's rows): the base by row number, the
        writes since copied. Cheap, so that the lock is held only for this."""
        base_rows = np.flatnonzero(self._base_live)
        written_slots = np.sort(self.written_slots())
        written_vectors = (
            self.written_vectors.reconstruct_batch(written_slots)
            if len(written_slots)
            else np.empty((0, self.dim), np.float32)
        )
        vectors = VectorRows(self.base_vectors, base_rows, written_vectors)
        written = tuple(self.written_documents[slot] for slot in written_slots.tolist())
        documents = DocumentRows(self.base_lines, base_rows, written)
        return vectors, documents, np.concatenate([self.base_slots[base_rows], written_slots])
