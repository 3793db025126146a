"""The approximate index: an HNSW graph over int8 scalar-quantised copies of the passage vectors.

The graph only proposes candidates; ``SearchIndex`` re-scores them with the fp32 vectors, so every score it returns
is the exact one and only recall is approximate. FAISS cannot remove a vector from an HNSW graph (faiss#3339): a
deleted or replaced passage's row is marked dead and kept out of results by an ID selector (a bitmap over the
graph's rows), and once dead rows pass ``REBUILD_DEAD_SHARE`` of the graph it is rebuilt from the live vectors, off
the request path (``Collection`` runs the rebuild in its own thread); so is a graph that has doubled since it was
built.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import faiss
import numpy as np

from app.stores.embedded.columns import GrowingColumn

log = logging.getLogger(__name__)

HNSW_M = 32  # links per node: 32 measured at recall@10 0.958 / 0.56 ms over a million real-distribution vectors
EF_CONSTRUCTION = 200
EF_CHOICES = (16, 32, 64, 128, 256, 512)  # efSearch values tried at build time, cheapest first
TARGET_RECALL = 0.97  # recall@10 (after exact re-scoring) the chosen efSearch reaches on a sample of stored vectors
RECALL_SAMPLE = 200  # stored vectors used as queries when efSearch is chosen
RESCORE_CANDIDATES = 64  # the graph proposes at least this many candidates for exact re-scoring
REBUILD_DEAD_SHARE = 0.2  # a graph with more dead rows than this share is rebuilt from the live vectors
# ... and one that has grown to this many times its rows when built or loaded: its int8 ranges were trained on the
# vectors it was built from, and rows added later (another language, another domain) are found less reliably
REBUILD_GROWTH = 2.0
MAX_CACHED_BITMAPS = 64  # language sets whose row bitmaps are kept between writes
# A filtered walk visits every row but keeps only the allowed ones: efSearch grows as the allowed share shrinks, so
# that about as many allowed rows are kept as an unfiltered walk keeps rows; bounded by this (docs/PERFORMANCE.md)
FILTERED_EF_MAX = 1024


@dataclass(frozen=True)
class GraphChoice:
    """The search parameter chosen at build time, and what it measured."""

    ef_search: int
    recall_at_10: float | None  # None: efSearch was given, not measured
    sample: int

    def as_json(self) -> dict:
        return {"ef_search": self.ef_search, "recall_at_10": self.recall_at_10, "sample": self.sample}


class PassageGraph:
    """HNSW over SQ8 codes; graph rows are appended in write order and map to ``SearchIndex`` slots. Each row's
    language is kept beside it, so that a search among some languages selects its rows without touching the
    index's per-document sets (what makes a one-language search as cheap as an unfiltered one)."""

    def __init__(self, graph: faiss.IndexHNSW, slot_of_row: np.ndarray, choice: GraphChoice) -> None:
        if graph.ntotal != len(slot_of_row):
            raise ValueError(f"graph holds {graph.ntotal} rows but {len(slot_of_row)} row slots")
        self.graph = graph
        self.choice = choice
        self._slots = GrowingColumn(np.asarray(slot_of_row, dtype=np.int64))  # -1: dead row
        self._row_of_slot = GrowingColumn(np.zeros(0, dtype=np.int64))  # by slot; -1: not in the graph
        live = np.flatnonzero(self.slot_of_row >= 0)
        self._live = len(live)
        if len(live):
            self._row_of_slot.grow_to(int(self.slot_of_row.max()) + 1, -1)
            self._row_of_slot.values[self.slot_of_row[live]] = live
        self._language_code: dict[str, int] = {}
        self._languages = GrowingColumn(np.full(len(slot_of_row), -1, dtype=np.int16))  # -1: dead or unknown
        self._bitmaps: dict[tuple[str, ...] | None, np.ndarray | None] = {}  # cached; dropped on every write
        self._first_rows = len(slot_of_row)

    @classmethod
    def build(cls, vectors: np.ndarray, slots: np.ndarray, ef_search: int = 0, progress: bool = False) -> PassageGraph:
        """A graph over ``vectors`` (rows of ``slots``), its efSearch measured unless given."""
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        started = time.perf_counter()
        graph = faiss.IndexHNSWSQ(vectors.shape[1], faiss.ScalarQuantizer.QT_8bit, HNSW_M, faiss.METRIC_INNER_PRODUCT)
        graph.hnsw.efConstruction = EF_CONSTRUCTION
        graph.train(vectors)
        graph.verbose = progress
        graph.add(vectors)
        choice = choose_ef_search(graph, vectors) if not ef_search else GraphChoice(ef_search, None, 0)
        log.info(
            "graph over %d vectors built in %.1f s; efSearch %d (recall@10 %s on %d stored vectors)",
            len(vectors),
            time.perf_counter() - started,
            choice.ef_search,
            choice.recall_at_10,
            choice.sample,
        )
        return cls(graph, slots, choice)

    @property
    def rows(self) -> int:
        return len(self.slot_of_row)

    @property
    def slot_of_row(self) -> np.ndarray:
        return self._slots.values

    @property
    def dead(self) -> int:
        return self.rows - self._live

    @property
    def wants_rebuild(self) -> bool:
        grown = self.rows > REBUILD_GROWTH * max(self._first_rows, 1)
        return grown or self.dead > REBUILD_DEAD_SHARE * max(self.rows, 1)

    def _code(self, language: str) -> int:
        return self._language_code.setdefault(language, len(self._language_code))

    def _rows_of(self, slots: np.ndarray) -> np.ndarray:
        """Each slot's row, -1 for a slot the graph does not hold."""
        slots = np.asarray(slots, dtype=np.int64)
        by_slot = self._row_of_slot.values
        rows = np.full(len(slots), -1, dtype=np.int64)
        inside = (slots >= 0) & (slots < len(by_slot))
        rows[inside] = by_slot[slots[inside]]
        return rows

    def label(self, language_codes: np.ndarray, names: list[str]) -> None:
        """Set the live rows' languages (after a build or a load; ``add`` labels the rows it adds) from the index's
        column: ``names[language_codes[slot]]``, a negative code for none."""
        live = np.flatnonzero(self.slot_of_row >= 0)
        slots = self.slot_of_row[live]
        codes = np.full(len(slots), -1, dtype=np.int64)
        inside = slots < len(language_codes)
        codes[inside] = language_codes[slots[inside]]
        mine = np.array([self._code(name) for name in names] or [-1], dtype=np.int16)
        self._languages.values[live] = np.where(codes >= 0, mine[np.maximum(codes, 0)], -1)
        self._bitmaps.clear()

    def add(self, vectors: np.ndarray, slots: np.ndarray, languages: list[str]) -> None:
        start = self.rows
        slots = np.asarray(slots, dtype=np.int64)
        self.graph.add(np.ascontiguousarray(vectors, dtype=np.float32))
        self._slots.extend(slots)
        self._languages.extend(np.array([self._code(lang) for lang in languages], dtype=np.int16))
        if len(slots):
            self._row_of_slot.grow_to(int(slots.max()) + 1, -1)
            self._row_of_slot.values[slots] = np.arange(start, start + len(slots))
        self._live += len(slots)
        self._bitmaps.clear()

    def remove(self, slots: np.ndarray | list[int]) -> None:
        slots = np.asarray(slots, dtype=np.int64)
        rows = self._rows_of(slots)
        held = rows >= 0
        self.slot_of_row[rows[held]] = -1
        self._languages.values[rows[held]] = -1
        self._row_of_slot.values[slots[held]] = -1
        self._live -= int(held.sum())
        self._bitmaps.clear()

    def slots(self) -> np.ndarray:
        """The live slots the graph holds (in row order)."""
        return self.slot_of_row[self.slot_of_row >= 0]

    def candidates(
        self,
        queries: np.ndarray,
        count: int,
        allowed: np.ndarray | None = None,
        ef_search: int | None = None,
        languages: list[str] | None = None,
        share: float = 1.0,
    ) -> np.ndarray:
        """Up to ``count`` candidate slots per query (-1 pads): among ``allowed`` slots when given, else among the
        rows in ``languages`` when given, else among all live rows; ``share``: the part of the live rows allowed."""
        if allowed is not None:
            rows = self._rows_of(allowed)
            bitmap: np.ndarray | None = _packed(rows[rows >= 0], self.rows)
        else:
            bitmap = self._rows_in(languages)
        selector = None if bitmap is None else faiss.IDSelectorBitmap(self.rows, faiss.swig_ptr(bitmap))
        ef = filtered_ef(max(ef_search or self.choice.ef_search, count), share if selector is not None else 1.0)
        params = faiss.SearchParametersHNSW(sel=selector, efSearch=ef)
        _, rows = self.graph.search(np.ascontiguousarray(queries, dtype=np.float32), count, params=params)
        return np.where(rows >= 0, self.slot_of_row[np.maximum(rows, 0)], -1)

    def _rows_in(self, languages: list[str] | None) -> np.ndarray | None:
        """The live rows (in ``languages``, when given) as a bitmap for the selector; None when every row is."""
        key = None if languages is None else tuple(sorted(set(languages)))
        if key not in self._bitmaps:
            if len(self._bitmaps) >= MAX_CACHED_BITMAPS:
                self._bitmaps.clear()
            if key is None:
                flags = self.slot_of_row >= 0
                self._bitmaps[key] = None if flags.all() else np.packbits(flags, bitorder="little")
            else:
                codes = [self._language_code[lang] for lang in key if lang in self._language_code]
                flags = np.isin(self._languages.values, np.array(codes, dtype=np.int16))
                self._bitmaps[key] = np.packbits(flags, bitorder="little")
        return self._bitmaps[key]

    def serialized(self) -> tuple[np.ndarray, np.ndarray, dict]:
        """Graph bytes, row slots and parameters, copied (what a snapshot writes off the lock)."""
        return faiss.serialize_index(self.graph), self.slot_of_row.copy(), self.choice.as_json()

    @classmethod
    def deserialized(cls, data: np.ndarray, slot_of_row: np.ndarray, choice: GraphChoice) -> PassageGraph:
        graph = faiss.deserialize_index(data)  # already the concrete type; a second wrapper would free it early
        if not isinstance(graph, faiss.IndexHNSW):
            raise ValueError(f"expected an HNSW graph, found {type(graph).__name__}")
        return cls(graph, slot_of_row, choice)


def filtered_ef(ef_search: int, share: float) -> int:
    """The efSearch of a walk that may keep only ``share`` of the rows it visits."""
    if share >= 1.0:
        return ef_search
    return max(ef_search, min(FILTERED_EF_MAX, int(np.ceil(ef_search / max(share, 1e-9)))))


def _packed(rows: np.ndarray, size: int) -> np.ndarray:
    """Rows as the bit array ``IDSelectorBitmap`` reads (bit ``i`` of byte ``i // 8``, lowest bit first)."""
    flags = np.zeros(size, dtype=bool)
    flags[rows] = True
    return np.packbits(flags, bitorder="little")


def choose_ef_search(graph: faiss.IndexHNSW, vectors: np.ndarray, seed: int = 0) -> GraphChoice:
    """The cheapest efSearch whose re-scored recall@10 reaches ``TARGET_RECALL`` on probe queries: sampled stored
    vectors moved in a random direction by their distance to their 10th neighbour, so that each probe sits among
    its neighbours as a real query does (a stored vector itself is found far too easily)."""
    n = len(vectors)
    k = min(10, n - 1)
    if k <= 0:
        return GraphChoice(EF_CHOICES[-1], 1.0, 0)
    rng = np.random.default_rng(seed)
    picked = vectors[rng.choice(n, size=min(RECALL_SAMPLE, n), replace=False)]
    # brute force straight over the vectors: no second copy of them in an index
    similarity, _ = faiss.knn(picked, vectors, k + 1, metric=faiss.METRIC_INNER_PRODUCT)
    reach = np.sqrt(np.maximum(2 - 2 * similarity[:, k], 0))[:, None]  # unit vectors: distance from similarity
    direction = rng.standard_normal(picked.shape).astype(np.float32)
    direction /= np.linalg.norm(direction, axis=1, keepdims=True)
    queries = picked + reach * direction
    queries = np.ascontiguousarray(queries / np.linalg.norm(queries, axis=1, keepdims=True), dtype=np.float32)
    _, truth = faiss.knn(queries, vectors, k, metric=faiss.METRIC_INNER_PRODUCT)
    count = max(RESCORE_CANDIDATES, k)
    recall = 0.0
    for ef in EF_CHOICES:
        _, rows = graph.search(queries, count, params=faiss.SearchParametersHNSW(efSearch=max(ef, count)))
        found = 0
        for query, candidates, truth_rows in zip(queries, rows, truth, strict=True):
            candidates = candidates[candidates >= 0]
            best = candidates[np.argsort(-(vectors[candidates] @ query), kind="stable")[:k]]
            found += len(set(truth_rows.tolist()) & set(best.tolist()))
        recall = found / truth.size
        if recall >= TARGET_RECALL:
            return GraphChoice(ef, round(recall, 4), len(picked))
    return GraphChoice(EF_CHOICES[-1], round(recall, 4), len(picked))
