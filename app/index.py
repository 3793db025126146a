"""FAISS vectors + the id/text/metadata store, persisted atomically, tied by manifest to the model that built it.

On disk, ``<index_dir>`` is a symlink to a complete version folder ``.<name>.<stamp>/`` holding ``index.faiss``,
``docs.jsonl`` and ``manifest.json``. A new version is written and fsynced beside the old one, then the link is
swapped with one ``rename``: a reader (or a crash) sees the old index or the new one, never a mix.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

import faiss
import numpy as np

from app.encoder import OnnxEncoder
from app.jsonl import json_objects
from app.manifest import IndexManifest, ManifestError, load_index_manifest, write_json_atomic

log = logging.getLogger(__name__)

IndexType = Literal["flat", "hnsw"]
VECTORS_FILE, DOCS_FILE = "index.faiss", "docs.jsonl"


class CorpusError(ValueError):
    """A corpus record is malformed; the message names the file and line."""


@dataclass(frozen=True)
class Document:
    id: str
    text: str
    lang: str
    metadata: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Hit:
    document: Document
    score: float


def read_corpus(path: Path) -> Iterator[Document]:
    """Validate and yield JSONL records ``{"id", "text", "lang", "metadata"?}``; duplicate ids are an error."""
    seen: set[str] = set()
    for where, record in json_objects(path, CorpusError, ("id", "text", "lang")):
        metadata = record.get("metadata", {})
        if not isinstance(metadata, dict):
            raise CorpusError(f"{where}: 'metadata' must be an object")
        if record["id"] in seen:
            raise CorpusError(f"{where}: duplicate id {record['id']!r}")
        seen.add(record["id"])
        yield Document(record["id"], record["text"], record["lang"], metadata)


def _new_faiss_index(dim: int, index_type: IndexType, hnsw_m: int = 32) -> faiss.Index:
    if index_type == "hnsw":
        index = faiss.IndexHNSWFlat(dim, hnsw_m, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = 200
        index.hnsw.efSearch = 128
        return index
    return faiss.IndexFlatIP(dim)


class SearchIndex:
    def __init__(self, vectors: faiss.Index, documents: list[Document], manifest: IndexManifest) -> None:
        if vectors.ntotal != len(documents):
            raise ManifestError(f"index holds {vectors.ntotal} vectors but {len(documents)} documents")
        self.vectors = vectors
        self.documents = documents
        self.manifest = manifest
        self._rows_by_lang: dict[str, np.ndarray] = {}
        for lang in sorted({d.lang for d in documents}):
            self._rows_by_lang[lang] = np.array(
                [row for row, d in enumerate(documents) if d.lang == lang], dtype=np.int64
            )

    @property
    def size(self) -> int:
        return len(self.documents)

    @property
    def languages(self) -> list[str]:
        return list(self._rows_by_lang)

    def search(self, queries: np.ndarray, top_k: int, languages: Iterable[str] | None = None) -> list[list[Hit]]:
        """Top-k by inner product (cosine for normalised vectors), optionally only among some languages."""
        params = None
        if languages is not None:
            rows = np.concatenate([self._rows_by_lang[lang] for lang in languages])
            top_k = min(top_k, len(rows))
            selector = faiss.IDSelectorBatch(rows)
            params = (
                faiss.SearchParametersHNSW(sel=selector, efSearch=max(128, top_k))
                if isinstance(self.vectors, faiss.IndexHNSW)
                else faiss.SearchParameters(sel=selector)
            )
        top_k = min(top_k, self.size)
        if top_k <= 0:
            return [[] for _ in range(len(queries))]
        scores, rows = self.vectors.search(np.ascontiguousarray(queries, dtype=np.float32), top_k, params=params)
        return [
            [Hit(self.documents[row], float(score)) for score, row in zip(s, r, strict=True) if row >= 0]
            for s, r in zip(scores, rows, strict=True)
        ]

    @classmethod
    def build(
        cls,
        encoder: OnnxEncoder,
        documents: list[Document],
        index_type: IndexType = "flat",
        batch_size: int = 32,
        progress: bool = True,
        corpus_name: str = "",
    ) -> SearchIndex:
        started = time.perf_counter()
        limit = encoder.manifest.max_length
        truncated = sum(n > limit for n in encoder.token_lengths([d.text for d in documents], "passage"))
        if truncated:
            log.warning(
                "%d of %d passages exceed %d tokens; only their first %d tokens are embedded",
                truncated,
                len(documents),
                limit,
                limit,
            )
        embeddings = encoder.encode([d.text for d in documents], "passage", batch_size, progress)
        vectors = _new_faiss_index(encoder.dim, index_type)
        vectors.add(embeddings)
        manifest = IndexManifest(
            model_name=encoder.manifest.name,
            model_fingerprint=encoder.manifest.fingerprint,
            model_variant=encoder.variant,
            embedding_dim=encoder.dim,
            index_type=index_type,
            size=len(documents),
            languages=dict(sorted(Counter(d.lang for d in documents).items())),
            corpus=corpus_name,
            created_at=datetime.now(UTC).isoformat(timespec="seconds"),
            build_seconds=round(time.perf_counter() - started, 2),
            truncated_passages=truncated,
        )
        return cls(vectors, documents, manifest)

    def save(self, index_dir: Path) -> Path:
        """Write a new version folder, fsync it, then atomically point ``index_dir`` at it."""
        index_dir = Path(index_dir)
        index_dir.parent.mkdir(parents=True, exist_ok=True)
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%f")
        version = index_dir.parent / f".{index_dir.name}.{stamp}"
        version.mkdir()
        faiss.write_index(self.vectors, str(version / VECTORS_FILE))
        with open(version / DOCS_FILE, "w", encoding="utf-8") as handle:
            for d in self.documents:
                row = {"id": d.id, "text": d.text, "lang": d.lang, "metadata": d.metadata}
                handle.write(json.dumps(row, ensure_ascii=False) + "\n")
        write_json_atomic(version / "manifest.json", self.manifest)
        for name in (VECTORS_FILE, DOCS_FILE, "manifest.json"):
            _fsync(version / name)
        _fsync(version)
        _point_link(index_dir, version)
        return version

    @classmethod
    def load(cls, index_dir: Path) -> SearchIndex:
        folder = Path(index_dir).resolve()  # resolve once: every file comes from the same version
        manifest = load_index_manifest(folder)
        for name in (VECTORS_FILE, DOCS_FILE):
            if not (folder / name).is_file():
                raise ManifestError(f"index folder {index_dir} is missing {name}")
        vectors = faiss.read_index(str(folder / VECTORS_FILE))
        with open(folder / DOCS_FILE, encoding="utf-8") as handle:
            rows = [json.loads(line) for line in handle]
        documents = [Document(r["id"], r["text"], r["lang"], r.get("metadata", {})) for r in rows]
        return cls(vectors, documents, manifest)


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _point_link(link: Path, version: Path, keep: int = 2) -> None:
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
    _fsync(link.parent)
    versions = sorted(p for p in link.parent.glob(f".{link.name}.2*") if p.is_dir())
    for old in versions[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
