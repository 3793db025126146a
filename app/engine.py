"""The search engine: model + index, loaded once, checked against each other; no HTTP in here."""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass

from app.encoder import OnnxEncoder, choose_variant
from app.index import Hit, SearchIndex
from app.manifest import ManifestError, load_index_manifest, load_model_manifest
from app.settings import Settings

log = logging.getLogger(__name__)


class InvalidQuery(ValueError):
    """The request is well-formed JSON but cannot be served as asked (the message says why)."""


class NotReady(RuntimeError):
    """Model or index still loading (or failed to load)."""


@dataclass(frozen=True)
class SearchOutcome:
    hits: list[Hit]
    encode_seconds: float


class SearchEngine:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.encoder: OnnxEncoder | None = None
        self.index: SearchIndex | None = None
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
            manifest = load_model_manifest(self.settings.model_dir)
            self.encoder = OnnxEncoder(
                self.settings.model_dir,
                choose_variant(manifest, self.settings.int8),
                self.settings.runtime,
                self.settings.intra_op_threads,
                manifest,
            )
            self.index = SearchIndex.load(self.settings.index_dir)
            self.encoder.encode(["warm-up"], "query")  # first ORT run allocates; keep it off the first request
            self._loaded.set()
            log.info("ready: %d documents, model %s (%s)", self.index.size, manifest.name, self.encoder.variant)
        except Exception as exc:  # reported by /ready; the process stays up to say why
            self.error = f"{type(exc).__name__}: {exc}"
            log.exception("loading failed")

    @property
    def ready(self) -> bool:
        return self._loaded.is_set()

    def max_query_tokens(self) -> int:
        assert self.encoder is not None
        return min(self.settings.max_query_tokens, self.encoder.manifest.max_length)

    def search(self, query: str, top_k: int, languages: list[str] | None) -> SearchOutcome:
        if not self.ready or self.encoder is None or self.index is None:
            raise NotReady(self.error or "model and index are still loading")
        limits = self.settings
        if not 1 <= top_k <= limits.max_top_k:
            raise InvalidQuery(f"top_k must be between 1 and {limits.max_top_k}, got {top_k}")
        if len(query) > limits.max_query_chars:
            raise InvalidQuery(f"query is {len(query)} characters long; the limit is {limits.max_query_chars}")
        if languages is not None:
            unknown = sorted(set(languages) - set(self.index.languages))
            if unknown:
                raise InvalidQuery(f"unknown language(s) {unknown}; the index has {self.index.languages}")
        started = time.perf_counter()
        batch = self.encoder.tokenize([query], "query")
        if batch.lengths[0] > self.max_query_tokens():
            raise InvalidQuery(
                f"query is {batch.lengths[0]} tokens long (prefix and special tokens included); "
                f"the limit is {self.max_query_tokens()}"
            )
        vector = self.encoder.run(batch)
        encode_seconds = time.perf_counter() - started
        hits = self.index.search(vector, top_k, sorted(set(languages)) if languages else None)[0]
        return SearchOutcome(hits, encode_seconds)
