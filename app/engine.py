"""The search engine: model, batcher and store, loaded once and checked against each other; no HTTP here.

Methods that encode return a ``concurrent.futures.Future`` (the work runs on the batcher's thread); the HTTP
layer awaits it with the request timeout.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from functools import partial
from pathlib import Path

import faiss
import numpy as np

from app.batcher import BatchStats, EncodeBatcher, Encoded
from app.corpus import Document, Group, Groups, Hit, Hits, metadata_problem
from app.encoder import OnnxEncoder, TextKind, choose_variant
from app.errors import InvalidRequest, NotReady, RequestTooLarge, ServiceError
from app.filters import AllOf, Condition, Filter, value_key
from app.ingest.passages import PassageMaker, passage_maker
from app.ingest.sources import SourceDocument
from app.manifest import IndexManifest
from app.metrics import Metrics
from app.model_choice import ModelChoice, model_for_store
from app.results import SearchSpec, group_page, hit_page
from app.settings import Settings
from app.status import EngineStatus
from app.stores import Store, StoredEmbeddings, check_index, open_store, stored_embeddings

log = logging.getLogger(__name__)
MAX_PREFERRED_MEMBERS = 10_000  # members in the preferred languages looked up for one page of groups


class SearchEngine:
    def __init__(self, settings: Settings, metrics: Metrics | None = None) -> None:
        self.settings = settings
        self.metrics = metrics
        self.encoder: OnnxEncoder | None = None
        self.store: Store | None = None
        self._store_calls: ThreadPoolExecutor | None = None  # a remote store's searches, off the batcher's thread
        self.batcher: EncodeBatcher | None = None
        self._passage_maker: PassageMaker | None = None
        self._choice: ModelChoice | None = None  # decided by check() (or load()), once
        self._stored: StoredEmbeddings | None = None
        self.error: str | None = None
        self._loaded = threading.Event()

    def stored_embeddings(self) -> StoredEmbeddings:
        """The store's record of its model, read once (the model choice and the check both need it)."""
        if self._stored is None:
            self._stored = stored_embeddings(self.settings)
        return self._stored

    def model_choice(self) -> ModelChoice:
        """The configured model that encoded the store (app.model_choice), decided once."""
        if self._choice is None:
            self._choice = model_for_store(self.settings, lambda: self.stored_embeddings().model_fingerprint)
            log.info("model: %s (%s): %s", self._choice.model_dir, self._choice.role, self._choice.reason)
        return self._choice

    def check(self) -> None:
        """Cheap start-up checks so a wrong path or a model/store mismatch fails at once (FAISS: the manifests;
        Milvus: the store is opened here, its collection created when missing)."""
        choice = self.model_choice()
        model = choice.manifest
        variant = choose_variant(model, self.settings.int8)
        if self.settings.store == "milvus":
            self.store = open_store(self.settings, model, variant)
            return
        stored_variant = check_index(self.settings.index_dir, self.stored_embeddings(), model, choice.model_dir)
        if variant != stored_variant:
            log.warning("index was encoded with %s, queries use %s", stored_variant, variant)

    def load(self) -> None:
        try:
            settings = self.settings
            if settings.faiss_threads:  # one search is a few ms at most: more threads only spin against the model's
                faiss.omp_set_num_threads(settings.faiss_threads)
            choice = self.model_choice()
            manifest = choice.manifest
            self.encoder = OnnxEncoder(
                choice.model_dir,
                choose_variant(manifest, settings.int8),
                settings.runtime,
                settings.intra_op_threads,
                manifest,
                spin_threads=settings.spin_threads,
            )
            if self.store is None:
                self.store = open_store(settings, manifest, self.encoder.variant)
            if self.store.remote:
                self._store_calls = ThreadPoolExecutor(max_workers=8, thread_name_prefix="store")
            self._passage_maker = passage_maker(self.encoder, settings)
            self.batcher = EncodeBatcher(
                self.encoder,
                settings.batch_max_texts,
                settings.batch_max_tokens,
                settings.batch_wait_ms,
                settings.max_queue,
                on_batch=self._record_batch,
                query_cache_size=settings.query_cache_size,
                fair_tokens=settings.batch_fair_tokens,
                fair_ms=settings.batch_fair_ms,
                max_request_tokens=settings.max_request_tokens,
            )
            self.batcher.warm_up(manifest.max_length)
            self._loaded.set()
            log.info(
                "ready: %d documents (%s store), model %s (%s)",
                self.store.size,
                settings.store,
                manifest.name,
                self.encoder.variant,
            )
        except Exception as exc:  # reported by /ready; the process stays up to say why
            self.error = f"{type(exc).__name__}: {exc}"
            log.exception("loading failed")

    def _record_batch(self, stats: BatchStats) -> None:
        if self.metrics is not None:
            self.metrics.batch_texts.observe(stats.texts)
            self.metrics.encode_latency.observe(stats.seconds)

    @property
    def ready(self) -> bool:
        return self._loaded.is_set()

    def _parts(self) -> tuple[OnnxEncoder, Store, EncodeBatcher]:
        if not self.ready or self.encoder is None or self.store is None or self.batcher is None:
            raise NotReady(self.error or "model and index are still loading")
        return self.encoder, self.store, self.batcher

    def status(self) -> EngineStatus:
        if not self.ready or self.encoder is None or self.store is None or self.batcher is None:
            return EngineStatus(ready=False, error=self.error)
        encoder, store, batcher = self.encoder, self.store, self.batcher
        try:
            health, size, languages, group_fields = store.health(), store.size, store.languages, store.group_fields
        except ServiceError as exc:  # a Milvus server that does not answer: not ready, and why
            return EngineStatus(ready=False, error=str(exc), model=encoder.manifest.name, store=self.settings.store)
        return EngineStatus(
            ready=True,
            model=encoder.manifest.name,
            model_role=self._choice.role if self._choice else None,
            model_choice=self._choice.reason if self._choice else None,
            variant=encoder.variant,
            model_created_at=encoder.manifest.created_at,
            providers=list(encoder.providers),
            store=self.settings.store,
            index_size=size,
            languages=languages,
            group_fields=group_fields,
            writable=health.writable,
            snapshot_error=health.snapshot_error,
            snapshot_failures=health.snapshot_failures,
            recovered_from=health.recovered_from,
            search_index=health.search_index,
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

    def search(self, queries: list[str], spec: SearchSpec) -> Future:
        """Future of one ``Hits`` per query; with ``group_by``, of one ``Groups`` per query (``top_k`` groups)."""
        _, store, batcher = self._parts()
        limits = self.settings
        check_count(queries, limits.max_batch_queries, "queries")
        if not 1 <= spec.top_k <= limits.max_top_k:
            raise InvalidRequest(f"top_k must be between 1 and {limits.max_top_k}, got {spec.top_k}")
        if spec.window > limits.max_result_window:
            raise InvalidRequest(
                f"offset + top_k is {spec.window}; a search pages through the first {limits.max_result_window} "
                "results (SEARCH_MAX_RESULT_WINDOW): narrow it with filters or languages instead"
            )
        self._check_texts(queries, limits.max_query_chars, "query")
        wanted = self._known_languages(store, spec.languages)
        group_by = spec.group_by
        if group_by is not None:
            store.check_group_field(group_by)  # 422 before any encoding

        def find(encoded: Encoded) -> list[Hits] | list[Groups]:
            vectors = encoded.embeddings
            if group_by is None:
                found_hits = store.search(vectors, spec.window, wanted, spec.where, spec.exact)
                return [hit_page(hits, spec) for hits in found_hits]
            found = store.search_grouped(vectors, spec.window, group_by, wanted, spec.where, spec.exact)
            return [
                group_page(groups, spec, partial(self._preferred_members, store, vectors[i : i + 1], group_by, spec))
                for i, groups in enumerate(found)
            ]

        if self._store_calls is None:  # an in-process search takes ~1 ms: on the batcher's thread, no hop
            return batcher.submit(queries, "query", self.max_query_tokens(), spec.truncate, then=find)
        encoded = batcher.submit(queries, "query", self.max_query_tokens(), spec.truncate)
        return _then_on(self._store_calls, encoded, find)

    @staticmethod
    def _preferred_members(
        store: Store, vector: np.ndarray, group_by: str, spec: SearchSpec, groups: Sequence[Group]
    ) -> list[list[Hit]]:
        """Per group, its members in the preferred languages (one filtered search over all the page's groups)."""
        preferred = sorted(set(spec.prefer_languages) & set(store.languages))
        values = [group.value for group in groups if isinstance(group.value, str | int | float | bool)]
        extra: list[list[Hit]] = [[] for _ in groups]
        if not preferred or not values:
            return extra
        in_groups: Filter = Condition(group_by, "in", tuple(values))
        where = in_groups if spec.where is None else AllOf((spec.where, in_groups))
        wanted = [lang for lang in preferred if spec.languages is None or lang in spec.languages]
        available = min(store.count(wanted, where), MAX_PREFERRED_MEMBERS) if wanted else 0
        if available == 0:
            return extra
        position = {value_key(group.value): i for i, group in enumerate(groups)}
        for hit in store.search(vector, available, wanted, where, spec.exact)[0]:
            i = position.get(value_key(hit.document.metadata.get(group_by)))
            if i is not None:
                extra[i].append(hit)
        return extra

    @staticmethod
    def _known_languages(store: Store, languages: list[str] | None) -> list[str] | None:
        """``languages`` sorted, or 422 naming those the store has never held."""
        if languages is None:
            return None
        known = store.languages
        unknown = sorted(set(languages) - set(known))
        if unknown:
            raise InvalidRequest(f"unknown language(s) {unknown}; the index has {known}")
        return sorted(set(languages))

    def count(self, languages: list[str] | None, where: Filter | None) -> int:
        store = self._parts()[1]
        return store.count(self._known_languages(store, languages), where)

    def scroll(
        self, limit: int, after: str | None, languages: list[str] | None, where: Filter | None
    ) -> list[Document]:
        store = self._parts()[1]
        return store.scroll(limit, after, self._known_languages(store, languages), where)

    def delete_where(self, languages: list[str] | None, where: Filter | None) -> int:
        """Delete every passage selected (one write); how many. Blocking: call it off the event loop."""
        store = self._parts()[1]
        store.require_writable()
        return store.delete_where(self._known_languages(store, languages), where)

    def document_passages(self, documents: list[SourceDocument], split: bool = True) -> list[Document]:
        """Documents to be written: count, text and metadata checks, then their passages (split above the passage
        size unless ``split`` is false; languages detected where missing). CPU work: call it off the event loop."""
        encoder = self._parts()[0]  # NotReady while loading
        limits = self.settings
        check_count(documents, limits.max_documents_per_request, "documents", "request")
        self._check_texts([d.text for d in documents], limits.max_document_chars, "document")
        for i, document in enumerate(documents):
            if problem := metadata_problem(document.metadata, limits.max_metadata_depth):
                raise InvalidRequest(f"document {i} ({document.id!r}): {problem}")
            size = len(json.dumps(document.metadata, ensure_ascii=False, separators=(",", ":")).encode())
            if size > limits.max_metadata_bytes:
                raise InvalidRequest(
                    f"document {i} ({document.id!r}): metadata is {size} bytes as JSON; "
                    f"the limit is {limits.max_metadata_bytes}"
                )
        maker = self._passage_maker
        assert maker is not None  # made in load(), with the encoder
        passages: list[Document] = []
        total = 0
        for i, document in enumerate(documents):
            # Counted document by document, so a request certainly over the budget is refused after tokenising
            # about the budget, here in the request's thread, not all of it in the batcher's (which other requests
            # wait for). A document's count bounds its passages' total from below.
            tokens = maker.splitter.count([document.text])[0]
            total += tokens if split else min(tokens, encoder.manifest.max_length)
            if total > limits.max_request_tokens:
                raise RequestTooLarge(
                    f"these documents hold at least {total} tokens (counted up to document {i} of "
                    f"{len(documents)}); one request may encode at most {limits.max_request_tokens} "
                    "(SEARCH_MAX_REQUEST_TOKENS): send them in smaller requests"
                )
            passages += maker.passages(document, tokens) if split else [maker.whole(document)]
        return passages

    def embed_passages(self, passages: list[Document], truncate: bool = False) -> Future:
        """The future of the passages' embeddings (an over-long one is refused unless ``truncate``)."""
        return self.embed([p.text for p in passages], "passage", truncate)

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

    def upsert(self, passages: list[Document], encoded: Encoded, documents: list[str]) -> int | None:
        """Write the passages; every other passage of ``documents`` goes in the same write."""
        _, store, _ = self._parts()
        return store.upsert(passages, encoded.embeddings, replacing=documents)

    def delete(self, doc_ids: list[str]) -> list[str]:
        """Delete documents (all their passages) in one write; the passage ids deleted."""
        _, store, _ = self._parts()
        return store.delete(doc_ids)

    def size(self) -> int:
        return self._parts()[1].size

    def backup(self) -> tuple[Path, IndexManifest]:
        """Everything acknowledged so far in a new folder (see ``Store.backup``); blocking: call it off the loop."""
        return self._parts()[1].backup()

    def get(self, doc_id: str) -> Document | None:
        _, store, _ = self._parts()
        return store.get(doc_id)

    def close(self) -> None:
        if self.batcher is not None:
            self.batcher.close()
        if self._store_calls is not None:
            self._store_calls.shutdown(wait=True)
        if self.store is not None:
            self.store.close()


def _then_on(executor: ThreadPoolExecutor, future: Future, then: Callable) -> Future:
    """A future of ``then(future's result)``, run on ``executor`` once ``future`` is done (errors pass through)."""
    chained: Future = Future()

    def run(result: object) -> None:
        try:
            chained.set_result(then(result))
        except BaseException as exc:
            chained.set_exception(exc)

    def done(finished: Future) -> None:
        if finished.exception() is not None:
            chained.set_exception(finished.exception())
        else:
            executor.submit(run, finished.result())

    future.add_done_callback(done)
    return chained


def check_count(items: list, limit: int, what: str, unit: str = "call") -> None:
    if len(items) > limit:
        raise InvalidRequest(f"{len(items)} {what} in one {unit}; the limit is {limit}")
