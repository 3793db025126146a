"""The store interface: what the engine, the routes and the index CLI need from wherever the documents live.

Two stores implement it: the embedded FAISS collection (``app.stores.embedded``: vectors in this process, our own
write-ahead log and snapshots) and Milvus (``app.stores.milvus``: the documents in a Milvus server, cluster or
Milvus Lite file; the API process holds no data). What both share sits here: how hits are grouped, and the
search-in-rounds that makes grouping exact.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from app.corpus import Document, Group, Hit
from app.errors import NotOnThisStore
from app.filters import Filter, value_key
from app.manifest import IndexManifest


@dataclass(frozen=True)
class StoreHealth:
    """What ``/ready`` and the metrics report about the store."""

    writable: bool
    snapshot_error: str | None = None
    snapshot_failures: int = 0
    recovered_from: str | None = None
    search_index: str = ""  # how searches are answered: exact, or through which approximate index


class Store(ABC):
    """Documents with their passage embeddings: exact or approximate inner-product search, filtered by language
    and by metadata (``app.filters``), and writes that are durable when they return. Thread-safe."""

    #: searches wait on the network: the engine runs them off the batcher's thread
    remote: bool = False

    @property
    @abstractmethod
    def size(self) -> int: ...

    @property
    @abstractmethod
    def languages(self) -> list[str]: ...

    @property
    @abstractmethod
    def group_fields(self) -> list[str]:
        """Metadata fields that ``group_by`` accepts."""

    @abstractmethod
    def search(
        self,
        queries: np.ndarray,
        top_k: int,
        languages: list[str] | None = None,
        where: Filter | None = None,
        exact: bool = False,
    ) -> list[list[Hit]]:
        """Top-k per query by inner product among the documents in ``languages`` whose metadata satisfies
        ``where`` (filtered inside the search, so that there are ``top_k`` when that many match); ``exact``: the
        true top-k even where the index is approximate (``NotOnThisStore`` where the store cannot)."""

    @abstractmethod
    def search_grouped(
        self,
        queries: np.ndarray,
        top_k: int,
        group_by: str,
        languages: list[str] | None = None,
        where: Filter | None = None,
        exact: bool = False,
    ) -> list[list[Group]]:
        """The ``top_k`` groups (by ``group_by``'s value) with the best best-member score, per query."""

    @abstractmethod
    def check_group_field(self, group_by: str) -> None:
        """Raise ``GroupingError`` when ``group_by`` cannot be grouped by."""

    @abstractmethod
    def get(self, doc_id: str) -> Document | None: ...

    @abstractmethod
    def upsert(self, documents: list[Document], embeddings: np.ndarray, replacing: Sequence[str] = ()) -> int | None:
        """Add or replace passages; durable and searchable when this returns. The other passages of the documents
        ``replacing`` names (see ``delete``) are removed in the same write. The write-ahead-log sequence number
        where the store keeps one, else None."""

    @abstractmethod
    def delete(self, doc_ids: list[str]) -> list[str]:
        """Delete documents: the passages with these ids and the passages split from them (``metadata.doc_id``);
        return the passage ids deleted. Durable when this returns."""

    @abstractmethod
    def count(self, languages: list[str] | None = None, where: Filter | None = None) -> int:
        """How many passages are in ``languages`` and satisfy ``where``."""

    @abstractmethod
    def scroll(
        self, limit: int, after: str | None = None, languages: list[str] | None = None, where: Filter | None = None
    ) -> list[Document]:
        """The next ``limit`` passages in id order after the id ``after``, among those selected: a stable listing
        for export that writes between pages do not disturb (a passage written behind the cursor is not listed)."""

    @abstractmethod
    def delete_where(self, languages: list[str] | None, where: Filter | None) -> int:
        """Delete every passage selected, in one write; how many. Durable when this returns."""

    @abstractmethod
    def require_writable(self) -> None:
        """Raise ``ReadOnlyIndex`` saying why when this store takes no writes."""

    @abstractmethod
    def health(self) -> StoreHealth: ...

    def backup(self) -> tuple[Path, IndexManifest]:
        """Everything acknowledged so far as a checksummed snapshot in a new folder (the caller removes it)."""
        raise NotOnThisStore(
            f"{type(self).__name__} is not backed up through this service: use its own tools (docs/OPERATIONS.md, "
            "Backups)"
        )

    @abstractmethod
    def close(self) -> None: ...


def is_scalar(value: object) -> bool:
    return value_key(value) is not None


def group_hits(hits: list[Hit], group_by: str) -> list[Group]:
    """Hits (best first) -> groups in order of their best member; no field -> a group of one, keyed by id."""
    groups: dict[tuple[str, object], list[Hit]] = {}
    for hit in hits:
        metadata = hit.document.metadata
        key = ("value", value_key(metadata[group_by])) if group_by in metadata else ("id", hit.document.id)
        groups.setdefault(key, []).append(hit)
    return [Group(members[0].document.metadata.get(group_by), members) for members in groups.values()]


def top_groups(
    search: Callable[[np.ndarray, int], list[list[Hit]]],
    queries: np.ndarray,
    top_k: int,
    group_by: str,
    available: int,
    first_fetch: int = 0,
) -> list[list[Group]]:
    """The ``top_k`` groups with the highest best-member score among ``available`` allowed documents, exactly.

    Walking hits best first, groups appear in the order of their best member, so once ``top_k`` distinct groups
    have appeared they are the answer. Candidates are fetched with ``search(queries, k)`` in rounds
    (``first_fetch``, default 10 x top_k, doubling) until every query has its groups or the documents are exhausted.
    """
    fetch = min(available, max(first_fetch or 10 * top_k, top_k))
    results: list[list[Group] | None] = [None] * len(queries)
    while True:
        pending = [i for i, groups in enumerate(results) if groups is None]
        hit_lists = search(queries[pending], fetch) if fetch > 0 else [[] for _ in pending]
        for i, hits in zip(pending, hit_lists, strict=True):
            groups = group_hits(hits, group_by)
            if len(groups) >= top_k or fetch >= available:
                results[i] = groups[:top_k]
        if fetch >= available or all(groups is not None for groups in results):
            return [groups or [] for groups in results]
        fetch = min(available, fetch * 2)
