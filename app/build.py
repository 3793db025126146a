"""Building an index from an encoder: the one place where the FAISS store meets the model.

With a ``shard_dir`` the passages are encoded in shards of ``SHARD_PASSAGES``, each saved (fsynced, renamed into
place) under a name derived from the model and the shard's passages: an interrupted build run again loads the shards
it had finished and encodes only the rest, and a changed corpus or model never reuses a stale shard.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import faiss
import numpy as np
from tqdm import tqdm

from app.corpus import Document
from app.encoder import OnnxEncoder
from app.manifest import IndexManifest
from app.stores.embedded.index import IndexType, SearchIndex

log = logging.getLogger(__name__)
SHARD_PASSAGES = 2048


def build_index(
    encoder: OnnxEncoder,
    documents: list[Document],
    index_type: IndexType = "flat",
    batch_size: int = 32,
    progress: bool = True,
    corpus_name: str = "",
    passage_tokens: int | None = None,
    passage_overlap_tokens: int = 0,
    shard_dir: Path | None = None,
    model_choice: str = "",
) -> SearchIndex:
    """Encode the documents as passages into a new FAISS index, with a manifest tying it to the model."""
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
    if shard_dir is None:
        embeddings = encoder.encode([d.text for d in documents], "passage", batch_size, progress)
    else:
        embeddings = encode_in_shards(encoder, documents, shard_dir, batch_size, progress)
    vectors = faiss.IndexFlatIP(encoder.dim)
    vectors.add(embeddings)
    manifest = IndexManifest(
        model_name=encoder.manifest.name,
        model_fingerprint=encoder.manifest.fingerprint,
        model_variant=encoder.variant,
        embedding_dim=encoder.dim,
        normalized=encoder.manifest.normalize,
        index_type=index_type,
        size=len(documents),
        languages=dict(sorted(Counter(d.lang for d in documents).items())),
        corpus=corpus_name,
        created_at=datetime.now(UTC).isoformat(timespec="seconds"),
        build_seconds=round(time.perf_counter() - started, 2),
        truncated_passages=truncated,
        passage_tokens=passage_tokens,
        passage_overlap_tokens=passage_overlap_tokens,
        model_choice=model_choice,
    )
    index = SearchIndex(vectors, documents, manifest)
    if index.wants_graph:
        index.build_graph(progress)
    return index


def _shard_key(encoder: OnnxEncoder, shard: list[Document]) -> str:
    digest = hashlib.sha256(f"{encoder.manifest.fingerprint}\0{encoder.variant}".encode())
    for document in shard:
        digest.update(f"\0{document.id}\0{document.text}".encode())
    return digest.hexdigest()[:32]


def encode_in_shards(
    encoder: OnnxEncoder, documents: list[Document], shard_dir: Path, batch_size: int = 32, progress: bool = True
) -> np.ndarray:
    """The passages' embeddings, resuming from the shards an earlier run of the same build saved in ``shard_dir``."""
    shard_dir.mkdir(parents=True, exist_ok=True)
    out = np.empty((len(documents), encoder.dim), dtype=np.float32)
    starts = range(0, len(documents), SHARD_PASSAGES)
    paths = [shard_dir / f"{_shard_key(encoder, documents[i : i + SHARD_PASSAGES])}.npy" for i in starts]
    done = sum(min(SHARD_PASSAGES, len(documents) - i) for i, path in zip(starts, paths, strict=True) if path.is_file())
    if done:
        log.info("resuming: %d of %d passages were encoded by an earlier run (%s)", done, len(documents), shard_dir)
    with tqdm(total=len(documents), initial=done, desc="encoding passages", unit="text", disable=not progress) as bar:
        for start, path in zip(starts, paths, strict=True):
            shard = documents[start : start + SHARD_PASSAGES]
            try:
                out[start : start + len(shard)] = np.load(path)
                continue
            except (OSError, ValueError, EOFError):  # not there yet (or unreadable): encode it
                pass
            vectors = encoder.encode([d.text for d in shard], "passage", batch_size)
            tmp = path.with_name(f".{path.name}.tmp")
            with open(tmp, "wb") as handle:
                np.save(handle, vectors)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, path)
            out[start : start + len(shard)] = vectors
            bar.update(len(shard))
    return out


def discard_shards(shard_dir: Path) -> None:
    """After the index is saved: the shards are no longer needed."""
    shutil.rmtree(shard_dir, ignore_errors=True)
