"""Dynamic batching with fair shares: texts from concurrent requests are tokenized and encoded together on one
worker thread, one bounded model call at a time, so that a large request never holds the model for its whole run.

The worker admits every waiting request (optionally waiting up to ``max_wait_ms`` for more), tokenizes it, refuses
it when a text is too long (and it did not ask for truncation) or when it would encode more than
``max_request_tokens`` tokens, and then runs model calls of at most ``max_texts`` rows and ``max_tokens`` padded
tokens (while several requests share the worker: ``fair_tokens``, and no more than the batcher measured to take
``fair_ms`` at that width, so that each call is short on any hardware and model variant). Each call takes
rows from the requests with the fewest rows left to encode: a lone search that arrives while twelve large batches
are running goes into the next call, and the large ones finish one after another rather than all late together. A
call never pads short rows to more than twice their width, so that search's call is a short one of its own.
A request is answered as soon as its last row is encoded; a follow-up (e.g. the FAISS search) runs on the worker
too, off the event loop. Query embeddings can be kept in an LRU cache, so a repeated query skips tokenizer and
model (not the search).
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
from app.errors import Overloaded, RequestTooLarge, TooLong

log = logging.getLogger(__name__)


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


@dataclass
class _Active:
    """An admitted job: its token counts, the rows still to encode (longest last) and the vectors so far."""

    job: _Job
    arrival: int
    counts: list[int]
    vectors: dict[str, np.ndarray]  # by text
    pending: list[tuple[str, list[int]]]  # (text, token ids as cut), shortest first


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
        fair_tokens: int = 2048,
        max_request_tokens: int = 0,
        narrow_rows: int = 64,
        fair_ms: float = 0.0,
    ) -> None:
        self.encoder = encoder
        self.cache = QueryCache(query_cache_size)
        self.max_texts = max_texts
        self.max_tokens = max_tokens
        self.fair_tokens = fair_tokens
        self.max_request_tokens = max_request_tokens  # 0: no per-request limit
        self.narrow_rows = narrow_rows  # rows up to this many tokens share a call whatever their lengths
        self.fair_seconds = fair_ms / 1000  # 0: shared calls are capped by fair_tokens alone
        # Measured seconds per padded token by call width (a power of two): attention makes wide rows dearer per
        # token, and an fp32 graph costs about twice an int8 one, so a cap in tokens alone is no cap in time.
        self._seconds_per_token: dict[int, float] = {}
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
        active: list[_Active] = []
        arrivals = 0
        stopping = False
        while not stopping or active:
            jobs, stopping = self._gather(block=not active, stopping=stopping)
            live = [job for job in jobs if job.future.set_running_or_notify_cancel()]  # skip timed-out requests
            try:
                admitted = self._admit(live, arrivals)
            except Exception as exc:  # never kill the worker: fail these requests and go on
                log.exception("tokenizing requests failed")
                self._fail(live, exc)
                admitted = []
            arrivals += len(live)
            active += admitted
            if active:
                active = self._step(active)

    def _gather(self, block: bool, stopping: bool) -> tuple[list[_Job], bool]:
        """Waiting jobs: block for the first when idle (then up to ``max_wait_ms`` for more), else take what is
        queued. A ``None`` in the queue means: stop once the admitted jobs are done."""
        jobs: list[_Job] = []
        if stopping:
            return jobs, True
        if block:
            first = self._queue.get()
            if first is None:
                return jobs, True
            jobs.append(first)
        deadline = time.monotonic() + (self.max_wait_s if block else 0.0)
        while len(jobs) < self.max_queue:
            try:
                remaining = deadline - time.monotonic()
                job = self._queue.get(timeout=remaining) if remaining > 0 else self._queue.get_nowait()
            except queue.Empty:
                break
            if job is None:
                return jobs, True
            jobs.append(job)
        return jobs, False

    def _admit(self, jobs: list[_Job], arrivals: int) -> list[_Active]:
        """Tokenize new jobs (one tokenizer call per kind), refuse the ones over a limit, answer the fully cached."""
        encodings: dict[tuple[str, str], Encoding] = {}
        cached: dict[tuple[str, int], tuple[np.ndarray, int]] = {}
        for kind in ("query", "passage"):
            keys = {(text, job.max_tokens) for job in jobs if job.kind == kind for text in job.texts}
            if kind == "query":  # the cache key holds the limit: an over-long text's embedding depends on the cut
                cached.update((key, hit) for key in keys if (hit := self.cache.get(key)) is not None)
            fresh = sorted({text for text, limit in keys if (text, limit) not in cached})
            encodings.update(zip(((kind, t) for t in fresh), self.encoder.encodings(fresh, kind), strict=True))
        admitted = []
        for number, job in enumerate(jobs):

            def hit(text: str, job: _Job = job) -> tuple[np.ndarray, int] | None:
                return cached.get((text, job.max_tokens)) if job.kind == "query" else None

            counts = [h[1] if (h := hit(t)) else len(encodings[(job.kind, t)].ids) for t in job.texts]
            refusal = self._refusal(job, counts)
            if refusal is not None:
                job.future.set_exception(refusal)
                continue
            vectors = {t: h[0] for t in job.texts if (h := hit(t)) is not None}
            rows = {t: truncate_tokens(encodings[(job.kind, t)], job.max_tokens) for t in job.texts if t not in vectors}
            pending = sorted(rows.items(), key=lambda row: len(row[1]))
            state = _Active(job, arrivals + number, counts, vectors, pending)
            if pending:
                admitted.append(state)
            else:
                self._finish(state)
        return admitted

    def _refusal(self, job: _Job, counts: list[int]) -> Exception | None:
        too_long = [i for i, n in enumerate(counts) if n > job.max_tokens]
        if too_long and not job.truncate:
            first = too_long[0]
            return TooLong(
                f"text {first} is {counts[first]} tokens long (prefix and special tokens included); "
                f'the limit is {job.max_tokens}. Shorten it, or send "truncate": true to embed only '
                f"its first {job.max_tokens} tokens"
            )
        total = sum(min(n, job.max_tokens) for n in counts)
        if self.max_request_tokens and total > self.max_request_tokens:
            return RequestTooLarge(
                f"this request would encode {total} tokens; one request may encode at most "
                f"{self.max_request_tokens} (SEARCH_MAX_REQUEST_TOKENS): split it into smaller requests"
            )
        return None

    def _step(self, active: list[_Active]) -> list[_Active]:
        """One model call, rows of the jobs with the least work left first; finish the jobs it completes."""
        shared = len(active) > 1
        chosen: list[tuple[_Active, str, list[int]]] = []
        width = 0
        # Fewest rows left first (shortest remaining work): a light request goes into the next call, and among
        # large ones the furthest along finishes first instead of all finishing late together.
        for state in sorted(active, key=lambda a: (len(a.pending), a.arrival)):
            while state.pending and len(chosen) < self.max_texts:
                text, ids = state.pending[0]
                wider = max(width, len(ids))
                cap = self.shared_cap(wider) if shared else self.max_tokens
                if chosen and ((len(chosen) + 1) * wider > cap or wider > max(2 * width, self.narrow_rows)):
                    # this job's next row does not fit, or would more than double the padding of the rows taken
                    # (a 12-token query padded to 512 costs a 512-token row): a shorter one of another job may
                    break
                chosen.append((state, text, ids))
                state.pending.pop(0)
                width = wider
        try:
            vectors = self._call([ids for _, _, ids in chosen])
        except Exception as exc:  # never kill the worker: fail the requests of this call and go on
            log.exception("a model call failed")
            failed = {id(state) for state, _, _ in chosen}
            self._fail([a.job for a in active if id(a) in failed], exc)
            return [a for a in active if id(a) not in failed]
        for (state, text, _), vector in zip(chosen, vectors, strict=True):
            state.vectors[text] = vector
        still = []
        for state in active:
            if state.pending:
                still.append(state)
            else:
                self._finish(state)
        return still

    def warm_up(self, max_width: int) -> None:
        """Before the first request: the first ORT runs allocate and pick kernels, so run a few shapes; then one row
        of each width bucket up to ``max_width``, measured, so that the first shared calls are capped in time too
        (one row costs more per token than many: the first caps err on the short side)."""
        token = self.encoder.pad_id + 5
        for rows, width in ((1, 16), (8, 32), (self.max_texts, 24)):
            self.encoder.run_padded(*self.encoder.pad([[token] * width] * rows))
        width = 16
        while width <= max_width:
            self._call([[token] * width], report=False)
            width *= 2

    def shared_cap(self, width: int) -> int:
        """Most padded tokens in a call of rows this wide while several requests share the model."""
        cap = min(self.max_tokens, self.fair_tokens)
        cost = self._seconds_per_token.get(_width_bucket(width))
        if self.fair_seconds and cost:
            cap = min(cap, int(self.fair_seconds / cost))
        return cap

    def _measured(self, width: int, padded_tokens: int, seconds: float) -> None:
        bucket, cost = _width_bucket(width), seconds / padded_tokens
        before = self._seconds_per_token.get(bucket)
        self._seconds_per_token[bucket] = cost if before is None else 0.8 * before + 0.2 * cost

    def _finish(self, state: _Active) -> None:
        job = state.job
        if job.kind == "query":
            for text, count in zip(job.texts, state.counts, strict=True):
                self.cache.put((text, job.max_tokens), state.vectors[text], count)
        encoded = Encoded(np.stack([state.vectors[t] for t in job.texts]), state.counts)
        try:
            job.future.set_result(job.then(encoded) if job.then else encoded)
        except Exception as exc:  # the follow-up's error belongs to its own request
            job.future.set_exception(exc)

    @staticmethod
    def _fail(jobs: list[_Job], exc: Exception) -> None:
        for job in jobs:
            if not job.future.done():
                job.future.set_exception(exc)

    def _call(self, rows: list[list[int]], report: bool = True) -> np.ndarray:
        ids, mask = self.encoder.pad(rows)
        started = time.perf_counter()
        out = self.encoder.run_padded(ids, mask)
        seconds = time.perf_counter() - started
        self._measured(ids.shape[1], ids.size, seconds)
        if report and self.on_batch:
            self.on_batch(BatchStats(len(rows), ids.size, seconds))
        return out


def _width_bucket(width: int) -> int:
    """The power of two at or above ``width`` (at least 16): calls of similar widths share a cost estimate."""
    return max(16, 1 << max(0, width - 1).bit_length())
