"""Dynamic batching: texts from concurrent requests are tokenized and encoded together on one worker thread.

The worker takes the first waiting job, then everything else already queued (up to ``max_texts``; optionally
waiting up to ``max_wait_ms`` for more). A lone request therefore waits for nobody, while under load the
requests that arrive during one model call share the next one. Texts are sorted by token count and split into
calls of at most ``max_texts`` rows and ``max_tokens`` padded tokens, so long and short texts do not pad each other.
A job may carry a follow-up (e.g. the FAISS search) that also runs on the worker, off the event loop.
Query embeddings can be kept in an LRU cache, so a repeated query skips tokenizer and model (not the search).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from tokenizers import Encoding

from app.encoder import OnnxEncoder, TextKind, truncate_tokens

log = logging.getLogger(__name__)


class TooLong(ValueError):
    """A text has more tokens than allowed and the request did not ask for truncation."""


class Overloaded(RuntimeError):
    """The queue is full; the caller should answer 503 and let the client retry."""


@dataclass(frozen=True)
class Encoded:
    embeddings: np.ndarray
    token_counts: list[int]  # before any truncation; prefix and special tokens included


@dataclass
class _Job:
    texts: list[str]
    kind: TextKind
    max_tokens: int
    truncate: bool
    then: Callable[[Encoded], Any] | None
    future: Future = field(default_factory=Future)


@dataclass(frozen=True)
class BatchStats:
    texts: int
    padded_tokens: int
    seconds: float


class QueryCache:
    """LRU map (query text, token limit) -> (embedding, full token count). Used by the worker thread only, so it
    needs no lock."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._items: OrderedDict[tuple[str, int], tuple[np.ndarray, int]] = OrderedDict()
        self.hits = self.misses = 0

    def get(self, key: tuple[str, int]) -> tuple[np.ndarray, int] | None:
        item = self._items.get(key)
        if item is None:
            self.misses += 1
            return None
        self._items.move_to_end(key)
        self.hits += 1
        return item

    def put(self, key: tuple[str, int], vector: np.ndarray, token_count: int) -> None:
        if self.capacity <= 0:
            return
        self._items[key] = (vector, token_count)
        self._items.move_to_end(key)
        while len(self._items) > self.capacity:
            self._items.popitem(last=False)


class EncodeBatcher:
    def __init__(
        self,
        encoder: OnnxEncoder,
        max_texts: int = 32,
        max_tokens: int = 8192,
        max_wait_ms: float = 0.0,
        max_queue: int = 2048,
        on_batch: Callable[[BatchStats], None] | None = None,
        query_cache_size: int = 0,
    ) -> None:
        self.encoder = encoder
        self.cache = QueryCache(query_cache_size)
        self.max_texts = max_texts
        self.max_tokens = max_tokens
        self.max_wait_s = max_wait_ms / 1000
        self.max_queue = max_queue
        self.on_batch = on_batch
        self._queue: queue.Queue[_Job | None] = queue.Queue()
        self._thread = threading.Thread(target=self._loop, name="encode-batcher", daemon=True)
        self._thread.start()

    @property
    def depth(self) -> int:
        return self._queue.qsize()

    def submit(
        self,
        texts: list[str],
        kind: TextKind,
        max_tokens: int,
        truncate: bool = False,
        then: Callable[[Encoded], Any] | None = None,
    ) -> Future:
        """Queue texts; the future holds ``then(Encoded)`` (or the ``Encoded`` itself), or the error."""
        if self._queue.qsize() >= self.max_queue:
            raise Overloaded(f"{self.max_queue} requests are already waiting to be encoded; retry shortly")
        job = _Job(list(texts), kind, max_tokens, truncate, then)
        self._queue.put(job)
        return job.future

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join(timeout=10)

    def _loop(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            jobs = [first]
            count = len(first.texts)
            deadline = time.monotonic() + self.max_wait_s
            while count < self.max_texts:
                try:
                    remaining = deadline - time.monotonic()
                    job = self._queue.get(timeout=remaining) if remaining > 0 else self._queue.get_nowait()
                except queue.Empty:
                    break
                if job is None:
                    self._queue.put(None)  # finish this batch, then stop
                    break
                jobs.append(job)
                count += len(job.texts)
            live = [job for job in jobs if job.future.set_running_or_notify_cancel()]  # skip timed-out requests
            try:
                self._run(live)
            except Exception as exc:  # never kill the worker: fail this batch's requests and go on
                log.exception("encoding a batch failed")
                for job in live:
                    if not job.future.done():
                        job.future.set_exception(exc)

    def _run(self, jobs: list[_Job]) -> None:
        # 1. Tokenize each distinct text that is not cached: one tokenizer call per kind.
        # The cache key holds the token limit too: an over-long text's embedding depends on where it was cut.
        cached: dict[tuple[str, int], tuple[np.ndarray, int]] = {}
        encodings: dict[tuple[str, str], Encoding] = {}
        for kind in ("query", "passage"):
            texts = {text for job in jobs if job.kind == kind for text in job.texts}
            if kind == "query":
                keys = {(text, job.max_tokens) for job in jobs if job.kind == kind for text in job.texts}
                cached.update((key, hit) for key in keys if (hit := self.cache.get(key)) is not None)
                texts = {text for text, _ in keys - cached.keys()}
            fresh = sorted(texts)
            encodings.update(zip(((kind, t) for t in fresh), self.encoder.encodings(fresh, kind), strict=True))

        def is_cached(job: _Job, text: str) -> bool:
            return job.kind == "query" and (text, job.max_tokens) in cached

        # 2. Refuse over-long texts per job; collect the rows to encode (identical texts are encoded once).
        accepted: list[tuple[_Job, list[int]]] = []
        rows: dict[tuple[str, str, int], list[int]] = {}
        for job in jobs:
            counts = [
                cached[(t, job.max_tokens)][1] if is_cached(job, t) else len(encodings[(job.kind, t)].ids)
                for t in job.texts
            ]
            too_long = [i for i, n in enumerate(counts) if n > job.max_tokens]
            if too_long and not job.truncate:
                first = too_long[0]
                job.future.set_exception(
                    TooLong(
                        f"text {first} is {counts[first]} tokens long (prefix and special tokens included); "
                        f'the limit is {job.max_tokens}. Shorten it, or send "truncate": true to embed only '
                        f"its first {job.max_tokens} tokens"
                    )
                )
                continue
            accepted.append((job, counts))
            for text in job.texts:
                if not is_cached(job, text):
                    key = (job.kind, text, job.max_tokens)
                    rows.setdefault(key, truncate_tokens(encodings[(job.kind, text)], job.max_tokens))

        # 3. Encode, remember query embeddings, answer each job (running its follow-up).
        keys = list(rows)
        computed = dict(zip(keys, self._encode_rows([rows[k] for k in keys]), strict=True))
        for (kind, text, limit), vector in computed.items():
            if kind == "query":
                self.cache.put((text, limit), vector, len(encodings[(kind, text)].ids))
        for job, counts in accepted:
            vectors = [
                cached[(t, job.max_tokens)][0] if is_cached(job, t) else computed[(job.kind, t, job.max_tokens)]
                for t in job.texts
            ]
            encoded = Encoded(np.stack(vectors), counts)
            try:
                job.future.set_result(job.then(encoded) if job.then else encoded)
            except Exception as exc:  # the follow-up's error belongs to its own request
                job.future.set_exception(exc)

    def _encode_rows(self, rows: list[list[int]]) -> np.ndarray:
        out = np.empty((len(rows), self.encoder.dim), dtype=np.float32)
        order = sorted(range(len(rows)), key=lambda i: len(rows[i]))
        start = 0
        while start < len(order):
            stop = start + 1
            # Grow the call while it stays within max_texts rows and max_tokens padded tokens (sorted: the last
            # row is the widest).
            while stop < len(order) and stop - start < self.max_texts:
                if (stop - start + 1) * len(rows[order[stop]]) > self.max_tokens:
                    break
                stop += 1
            chunk = order[start:stop]
            ids, mask = self.encoder.pad([rows[i] for i in chunk])
            started = time.perf_counter()
            out[chunk] = self.encoder.run_padded(ids, mask)
            if self.on_batch:
                self.on_batch(BatchStats(len(chunk), ids.size, time.perf_counter() - started))
            start = stop
        return out
