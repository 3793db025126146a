"""The search engine: model, batcher and collection, loaded once and checked against each other; no HTTP here.

Methods that encode return a ``concurrent.futures.Future`` (the work runs on the batcher's thread); the HTTP
layer awaits it with the request timeout.
"""

from __future__ import annotations

import json
import logging
import threading
from concurrent.futures import Future
from dataclasses import dataclass, field

import faiss

from app.batcher import BatchStats, EncodeBatcher, Encoded
from app.collection import Collection
from app.corpus import Document, Group, Hit
from app.encoder import OnnxEncoder, TextKind, choose_variant
from app.errors import InvalidRequest, NotReady
from app.limits import metadata_problem
from app.manifest import ManifestError, load_index_manifest, load_model_manifest
from app.metrics import Metrics
from app.settings import Settings

log = logging.getLogger(__name__)
PASSAGE_SUFFIX = ":passage"  # the model id that embeds with the passage prefix


@dataclass(frozen=True)
class EngineStatus:
    """What the HTTP layer and the metrics may know about the engine (nothing reaches through it)."""

    ready: bool
    error: str | None = None
    model: str | None = None
    variant: str | None = None
    model_created_at: str = ""
    providers: list[str] = field(default_factory=list)
    index_size: int | None = None
    languages: list[str] = field(default_factory=list)
    group_fields: list[str] = field(default_factory=list)
    writable: bool = False
    snapshot_error: str | None = None
    snapshot_failures: int = 0
    recovered_from: str | None = None
    queue_depth: int = 0
    cache_hits: int = 0
    cache_misses: int = 0


class SearchEngine:
    def __init__(self, settings: Settings, metrics: Metrics | None = None) -> None:
        self.settings = settings
        self.metrics = metrics
        self.encoder: OnnxEncoder | None = None
        self.collection: Collection | None = None
        self.batcher: EncodeBatcher | None = None
        self.error: str | None = None
        self._loaded = threading.Event()

    def check(self) -> None:
        """Cheap start-up checks (manifests only) so a wrong path or model/index mismatch fails at once."""
        model = load_model_manifest(self.settings.model_dir)
        index = load_index_manifest(self.settings.index_dir)
        if index.model_fingerprint != model.fingerprint:
            raise ManifestError(
                f"index {self.settings.index_dir} was built by model '{index.model_name}' "
                f"(fingerprint {index.model_fingerprint[:12]}), but the service loads '{model.name}' from "
                f"{self.settings.model_dir} (fingerprint {model.fingerprint[:12]}); rebuild the index with this model"
            )
        variant = choose_variant(model, self.settings.int8)
        if variant != index.model_variant:
            log.warning("index was encoded with %s, queries use %s", index.model_variant, variant)

    def load(self) -> None:
        try:
            settings = self.settings
            if settings.faiss_threads:  # one search is a few ms at most: more threads only spin against the model's
                faiss.omp_set_num_threads(settings.faiss_threads)
            manifest = load_model_manifest(settings.model_dir)
            self.encoder = OnnxEncoder(
                settings.model_dir,
                choose_variant(manifest, settings.int8),
                settings.runtime,
                settings.intra_op_threads,
                manifest,
                spin_threads=settings.spin_threads,
            )
            self.collection = Collection(settings.index_dir, settings.snapshot_every)
            self._warm_up()
            self.batcher = EncodeBatcher(
                self.encoder,
                settings.batch_max_texts,
                settings.batch_max_tokens,
                settings.batch_wait_ms,
                settings.max_queue,
                on_batch=self._record_batch,
                query_cache_size=settings.query_cache_size,
                fair_tokens=settings.batch_fair_tokens,
                max_request_tokens=settings.max_request_tokens,
            )
            self._loaded.set()
            log.info("ready: %d documents, model %s (%s)", self.collection.size, manifest.name, self.encoder.variant)
        except Exception as exc:  # reported by /ready; the process stays up to say why
            self.error = f"{type(exc).__name__}: {exc}"
            log.exception("loading failed")

    def _warm_up(self) -> None:
        """The first ORT runs allocate and pick kernels; do that for a few shapes before the first request."""
        assert self.encoder is not None
        for rows, width in ((1, 16), (8, 32), (self.settings.batch_max_texts, 24)):
            self.encoder.run_padded(*self.encoder.pad([[self.encoder.pad_id + 5] * width] * rows))

    def _record_batch(self, stats: BatchStats) -> None:
        if self.metrics is not None:
            self.metrics.batch_texts.observe(stats.texts)
            self.metrics.encode_latency.observe(stats.seconds)

    @property
    def ready(self) -> bool:
        return self._loaded.is_set()

    def _parts(self) -> tuple[OnnxEncoder, Collection, EncodeBatcher]:
        if not self.ready or self.encoder is None or self.collection is None or self.batcher is None:
            raise NotReady(self.error or "model and index are still loading")
        return self.encoder, self.collection, self.batcher

    def status(self) -> EngineStatus:
        if not self.ready or self.encoder is None or self.collection is None or self.batcher is None:
            return EngineStatus(ready=False, error=self.error)
        encoder, collection, batcher = self.encoder, self.collection, self.batcher
        return EngineStatus(
            ready=True,
            model=encoder.manifest.name,
            variant=encoder.variant,
            model_created_at=encoder.manifest.created_at,
            providers=list(encoder.providers),
            index_size=collection.size,
            languages=collection.languages,
            group_fields=collection.group_fields,
            writable=collection.writable,
            snapshot_error=collection.snapshot_error,
            snapshot_failures=collection.snapshot_failures,
            recovered_from=collection.recovered_from,
            queue_depth=batcher.depth,
            cache_hits=batcher.cache.hits,
            cache_misses=batcher.cache.misses,
        )

    @property
    def model_name(self) -> str:
        """The served model's name (NotReady while loading)."""
        return self._parts()[0].manifest.name

    @property
    def embedding_dim(self) -> int:
        return self._parts()[0].dim

    def require_writable(self) -> None:
        self._parts()[1].require_writable()

    def max_query_tokens(self) -> int:
        encoder, _, _ = self._parts()
        return min(self.settings.max_query_tokens, encoder.manifest.max_length)

    def search(
        self,
        queries: list[str],
        top_k: int,
        languages: list[str] | None = None,
        filters: dict | None = None,
        truncate: bool = False,
        group_by: str | None = None,
    ) -> Future:
        """Future of one hit list per query; with ``group_by``, of one list of ``top_k`` groups per query."""
        _, collection, batcher = self._parts()
        limits = self.settings
        self._check_count(queries, limits.max_batch_queries, "queries")
        if not 1 <= top_k <= limits.max_top_k:
            raise InvalidRequest(f"top_k must be between 1 and {limits.max_top_k}, got {top_k}")
        self._check_texts(queries, limits.max_query_chars, "query")
        if languages is not None:
            unknown = sorted(set(languages) - set(collection.languages))
            if unknown:
                raise InvalidRequest(f"unknown language(s) {unknown}; the index has {collection.languages}")
        wanted = sorted(set(languages)) if languages else None
        if group_by is not None:
            collection.check_group_field(group_by)  # 422 before any encoding

        def find(encoded: Encoded) -> list[list[Hit]] | list[list[Group]]:
            if group_by is not None:
                return collection.search_grouped(encoded.embeddings, top_k, group_by, wanted, filters)
            return collection.search(encoded.embeddings, top_k, wanted, filters)

        return batcher.submit(queries, "query", self.max_query_tokens(), truncate, then=find)

    def model_ids(self) -> dict[str, TextKind]:
        """The ids the served model answers to, with the prefix each applies: '<name>' embeds queries and
        '<name>:passage' passages, so a client that cannot send input_type (LangChain) can embed documents."""
        name = self.model_name
        return {name: "query", name + PASSAGE_SUFFIX: "passage"}

    def embed_inputs(
        self,
        inputs: str | list,
        model: str,
        input_type: TextKind | None = None,
        dimensions: int | None = None,
        truncate: bool = False,
    ) -> Future:
        """An OpenAI-style embeddings request, every check of it here; the future of ``Encoded``."""
        texts = [inputs] if isinstance(inputs, str) else inputs
        if not texts:
            raise InvalidRequest("input must be a text or a non-empty list of texts")
        if not all(isinstance(text, str) for text in texts):
            raise InvalidRequest(
                "token arrays are not supported: they are ids of OpenAI's tokenizer, not of this model's; send the "
                "texts (LangChain's OpenAIEmbeddings: check_embedding_ctx_length=False)"
            )
        self._check_count(texts, self.settings.max_batch_queries, "inputs")
        kinds = self.model_ids()
        if model not in kinds:
            raise InvalidRequest(f"model {model!r} is not served here; this server serves {sorted(kinds)}")
        kind = kinds[model]
        if input_type is not None and input_type != kind and model != self.model_name:
            raise InvalidRequest(f"model {model!r} embeds passages; input_type {input_type!r} contradicts it")
        if dimensions is not None and dimensions != self.embedding_dim:
            raise InvalidRequest(f"dimensions must be {self.embedding_dim} (this model does not shorten embeddings)")
        return self.embed(texts, input_type or kind, truncate)

    def embed_documents(self, documents: list[Document], truncate: bool = False) -> Future:
        """Documents to be written: count and metadata checks, then the future of their passage embeddings."""
        limits = self.settings
        self._check_count(documents, limits.max_documents_per_request, "documents", "request")
        for i, document in enumerate(documents):
            if problem := metadata_problem(document.metadata, limits.max_metadata_depth):
                raise InvalidRequest(f"document {i} ({document.id!r}): {problem}")
            size = len(json.dumps(document.metadata, ensure_ascii=False, separators=(",", ":")).encode())
            if size > limits.max_metadata_bytes:
                raise InvalidRequest(
                    f"document {i} ({document.id!r}): metadata is {size} bytes as JSON; "
                    f"the limit is {limits.max_metadata_bytes}"
                )
        return self.embed([d.text for d in documents], "passage", truncate)

    @staticmethod
    def _check_count(items: list, limit: int, what: str, unit: str = "call") -> None:
        if len(items) > limit:
            raise InvalidRequest(f"{len(items)} {what} in one {unit}; the limit is {limit}")

    def embed(self, texts: list[str], kind: TextKind, truncate: bool = False) -> Future:
        """Future of ``Encoded`` (embeddings and token counts)."""
        encoder, _, batcher = self._parts()
        limit = self.settings.max_query_chars if kind == "query" else self.settings.max_document_chars
        self._check_texts(texts, limit, kind)
        max_tokens = self.max_query_tokens() if kind == "query" else encoder.manifest.max_length
        return batcher.submit(texts, kind, max_tokens, truncate)

    def _check_texts(self, texts: list[str], max_chars: int, what: str) -> None:
        for i, text in enumerate(texts):
            if not text.strip():
                raise InvalidRequest(f"{what} {i} is empty or whitespace")
            if len(text) > max_chars:
                raise InvalidRequest(f"{what} {i} is {len(text)} characters long; the limit is {max_chars}")

    def upsert(self, documents: list[Document], encoded: Encoded) -> int:
        _, collection, _ = self._parts()
        return collection.upsert(documents, encoded.embeddings)

    def delete(self, doc_id: str) -> bool:
        _, collection, _ = self._parts()
        return bool(collection.delete([doc_id]))

    def size(self) -> int:
        return self._parts()[1].size

    def get(self, doc_id: str) -> Document | None:
        _, collection, _ = self._parts()
        return collection.get(doc_id)

    def close(self) -> None:
        if self.batcher is not None:
            self.batcher.close()
        if self.collection is not None:
            self.collection.close()
