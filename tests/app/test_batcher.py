"""Dynamic batching: concurrent jobs share model calls and each gets exactly its own embeddings back."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pytest

from app.batcher import BatchStats, EncodeBatcher
from app.encoder import OnnxEncoder
from app.errors import Overloaded, RequestTooLarge, TooLong
from tests.tiny import demo_records


@pytest.fixture(scope="module")
def encoder(tiny_model: Path) -> OnnxEncoder:
    return OnnxEncoder(tiny_model, "fp32", runtime="cpu")


def test_concurrent_jobs_are_batched_and_answered_in_order(encoder: OnnxEncoder) -> None:
    texts = [r["text"][: 20 + 7 * (i % 9)] for i, r in enumerate(demo_records(limit=120))]
    expected = encoder.encode(texts, "query", batch_size=1)
    calls: list[BatchStats] = []
    batcher = EncodeBatcher(encoder, max_texts=16, max_tokens=4096, on_batch=calls.append)
    results: dict[int, np.ndarray] = {}

    def client(start: int) -> None:
        for i in range(start, len(texts), 8):
            future = batcher.submit([texts[i]], "query", max_tokens=64, truncate=True)
            results[i] = future.result(timeout=30).embeddings[0]

    threads = [threading.Thread(target=client, args=(k,)) for k in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    batcher.close()
    got = np.stack([results[i] for i in range(len(texts))])
    assert np.allclose(got, expected, atol=1e-5)  # fp32: the same vector whatever the batch companions
    assert sum(c.texts for c in calls) == len(texts)
    assert max(c.texts for c in calls) > 1, "8 concurrent clients never shared a model call"
    assert all(c.texts <= 16 for c in calls)


def test_token_budget_splits_calls(encoder: OnnxEncoder) -> None:
    calls: list[BatchStats] = []
    batcher = EncodeBatcher(encoder, max_texts=64, max_tokens=200, on_batch=calls.append)
    texts = [r["text"] for r in demo_records(limit=12)]  # all long: each is cut to 64 tokens
    encoded = batcher.submit(texts, "passage", max_tokens=64, truncate=True).result(timeout=30)
    batcher.close()
    assert encoded.embeddings.shape == (12, encoder.dim) and all(n > 64 for n in encoded.token_counts)
    assert all(c.padded_tokens <= 200 for c in calls) and len(calls) >= 4


def test_too_long_fails_only_its_own_job(encoder: OnnxEncoder) -> None:
    batcher = EncodeBatcher(encoder, max_wait_ms=50)  # wait, so both jobs share one gather
    long = batcher.submit(["word " * 100], "query", max_tokens=32)
    short = batcher.submit(["short"], "query", max_tokens=32)
    with pytest.raises(TooLong, match=r"text 0 is \d+ tokens long .* the limit is 32"):
        long.result(timeout=30)
    assert short.result(timeout=30).embeddings.shape == (1, encoder.dim)
    batcher.close()


def test_a_failing_follow_up_does_not_stop_the_worker(encoder: OnnxEncoder) -> None:
    batcher = EncodeBatcher(encoder)

    def broken(_: object) -> None:
        raise RuntimeError("search failed")

    with pytest.raises(RuntimeError, match="search failed"):
        batcher.submit(["a"], "query", 32, then=broken).result(timeout=30)
    assert batcher.submit(["b"], "query", 32, then=lambda e: e.token_counts).result(timeout=30)[0] > 0
    batcher.close()


def test_repeated_queries_come_from_the_cache_and_keep_their_limits(encoder: OnnxEncoder) -> None:
    calls: list[BatchStats] = []
    batcher = EncodeBatcher(encoder, on_batch=calls.append, query_cache_size=2)
    first = batcher.submit(["Warschau"], "query", 32).result(timeout=30)
    again = batcher.submit(["Warschau", "Warschau"], "query", 32).result(timeout=30)
    assert len(calls) == 1 and batcher.cache.hits == 1  # one lookup per distinct text in a gather
    assert np.array_equal(again.embeddings[0], first.embeddings[0]) and again.token_counts == first.token_counts * 2
    long = "word " * 100
    batcher.submit([long], "query", 32, truncate=True).result(timeout=30)
    with pytest.raises(TooLong):  # cached, but still too long for a request that did not ask to truncate
        batcher.submit([long], "query", 32).result(timeout=30)
    cut_at_32 = batcher.submit([long], "query", 32, truncate=True).result(timeout=30).embeddings[0]
    cut_at_16 = batcher.submit([long], "query", 16, truncate=True).result(timeout=30).embeddings[0]
    assert not np.array_equal(cut_at_16, cut_at_32)  # another cut is another embedding, not a cache hit
    for text in ("a", "b", "c"):  # capacity 2: the oldest entries go
        batcher.submit([text], "query", 32).result(timeout=30)
    assert batcher.cache.get(("Warschau", 32)) is None
    before = len(calls)
    batcher.submit(["a"], "passage", 32).result(timeout=30)  # passages are never served from the cache
    assert len(calls) == before + 1
    batcher.close()


def test_a_full_queue_is_refused_not_buffered(encoder: OnnxEncoder) -> None:
    release = threading.Event()
    batcher = EncodeBatcher(encoder, max_queue=2)
    busy = batcher.submit(["hold the worker"], "query", 32, then=lambda _: release.wait(30))
    while not busy.running():  # the worker has taken the first job and sits in its follow-up
        pass
    waiting = [batcher.submit([f"q{i}"], "query", 32) for i in range(2)]
    with pytest.raises(Overloaded, match="2 requests are already waiting"):
        batcher.submit(["one too many"], "query", 32)
    release.set()
    assert all(f.result(timeout=30).embeddings.shape == (1, encoder.dim) for f in waiting)
    batcher.close()


def held_batcher(encoder: OnnxEncoder, **options: int) -> tuple[EncodeBatcher, list[BatchStats], threading.Event]:
    """A batcher whose worker is held by call 0 until the event is set, so that what is submitted meanwhile is
    gathered together; and the list of its calls."""
    release = threading.Event()
    calls: list[BatchStats] = []
    batcher = EncodeBatcher(encoder, on_batch=calls.append, **options)
    batcher.submit(["hold the worker"], "query", 32, then=lambda _: release.wait(30))
    while not calls:  # call 0 is recorded once encoded, just before the worker enters its follow-up and waits
        time.sleep(0.001)
    return batcher, calls, release


def test_a_light_request_is_not_queued_behind_a_heavy_one(encoder: OnnxEncoder) -> None:
    """One large batch must not hold the model for its whole run: calls are short and shared fairly."""
    batcher, calls, release = held_batcher(encoder, max_texts=8, max_tokens=4096, fair_tokens=128)
    heavy_texts = [r["text"] for r in demo_records(limit=64)]  # 64 rows of 32 tokens: 16 calls of 4 rows each
    finished_at: dict[str, int] = {}
    heavy = batcher.submit(
        heavy_texts, "passage", 32, truncate=True, then=lambda e: finished_at.setdefault("heavy", len(calls))
    )
    light = batcher.submit(["ein kurzer Satz"], "query", 32, then=lambda e: finished_at.setdefault("light", len(calls)))
    release.set()
    heavy.result(timeout=30), light.result(timeout=30)
    batcher.close()
    assert finished_at["light"] == 2 < finished_at["heavy"]  # the first call after the held one
    assert calls[1].padded_tokens <= 128  # shared: a short call
    assert max(c.padded_tokens for c in calls[2:]) > 128  # the heavy one alone again: full-size calls


def test_a_short_row_is_not_padded_to_the_width_of_long_ones(encoder: OnnxEncoder) -> None:
    batcher, calls, release = held_batcher(encoder, max_texts=8, fair_tokens=512, narrow_rows=8)
    heavy = batcher.submit([r["text"] for r in demo_records(limit=16)], "passage", 64, truncate=True)
    light = batcher.submit(["kurz"], "query", 64)
    release.set()
    heavy.result(timeout=30), light.result(timeout=30)
    batcher.close()
    # call 0 held the worker; call 1 is the light query alone, not 1 + 7 rows of 64 tokens
    assert calls[1].texts == 1 and calls[1].padded_tokens < 16
    assert all(c.padded_tokens == c.texts * 64 for c in calls[2:])


def test_a_request_over_the_token_budget_is_refused_with_the_limit(encoder: OnnxEncoder) -> None:
    batcher = EncodeBatcher(encoder, max_request_tokens=100)
    texts = [r["text"] for r in demo_records(limit=4)]  # 4 x 32 tokens after truncation: 128 > 100
    with pytest.raises(RequestTooLarge, match=r"would encode 128 tokens; one request may encode at most 100"):
        batcher.submit(texts, "passage", 32, truncate=True).result(timeout=30)
    assert batcher.submit(texts[:3], "passage", 32, truncate=True).result(timeout=30).embeddings.shape[0] == 3
    batcher.close()


def test_shared_calls_are_capped_by_their_measured_time(encoder: OnnxEncoder) -> None:
    """A token cap is no time cap (fp32 costs about twice int8, wide rows more per token): while requests share the
    model, a call takes no more rows than the batcher measured to fit in ``fair_ms`` at that width."""
    batcher, calls, release = held_batcher(encoder, max_texts=32, fair_tokens=4096, fair_ms=10)
    assert batcher.shared_cap(64) == 4096  # nothing measured at this width yet: the token cap
    batcher.warm_up(64)
    assert sorted(batcher._seconds_per_token) == [16, 32, 64] and len(calls) == 1  # measured, not reported
    batcher._seconds_per_token[64] = 0.01 / 64  # as if measured: one row of 64 tokens takes 10 ms
    assert batcher.shared_cap(64) == 64 and batcher.shared_cap(40) == 64 and batcher.shared_cap(200) == 4096
    batcher._seconds_per_token[64] = 1.0  # as if the model had been very slow at this width
    rows = [r["text"] for r in demo_records(limit=16)]  # 64 tokens each after truncation
    first, second = (batcher.submit(rows[k::2], "passage", 64, truncate=True) for k in (0, 1))
    release.set()
    first.result(timeout=30), second.result(timeout=30)
    batcher.close()
    # call 0 held the worker; while both requests wait, one row per call; then the second one alone, in one call
    assert [c.texts for c in calls[1:]] == [1] * 8 + [8]
    assert batcher._seconds_per_token[64] < 0.8**8  # each real call was measured and moved the estimate
