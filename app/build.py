"""Building an index from an encoder: the one place where the FAISS store meets the model."""

from __future__ import annotations

import logging
import time
from collections import Counter
from datetime import UTC, datetime

from app.corpus import Document
from app.encoder import OnnxEncoder
from app.manifest import IndexManifest
from app.stores.embedded.index import IndexType, SearchIndex, new_faiss_index

log = logging.getLogger(__name__)


def build_index(
    encoder: OnnxEncoder,
    documents: list[Document],
    index_type: IndexType = "flat",
    batch_size: int = 32,
    progress: bool = True,
    corpus_name: str = "",
    passage_tokens: int | None = None,
    passage_overlap_tokens: int = 0,
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
    embeddings = encoder.encode([d.text for d in documents], "passage", batch_size, progress)
    vectors = new_faiss_index(encoder.dim, index_type)
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
        passage_tokens=passage_tokens,
        passage_overlap_tokens=passage_overlap_tokens,
    )
    return SearchIndex(vectors, documents, manifest)
