"""A bounded loopback load test: concurrent searches all succeed, and they share model calls."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest

from benchmarks.loadgen import run_load
from tests.conftest import running_server
from tests.tiny import demo_records

pytestmark = pytest.mark.e2e


def test_concurrent_searches_all_succeed_and_are_batched(tiny_model: Path, tiny_index: Path) -> None:
    # Cache off: the 50 queries repeat, and this test is about batching the model calls.
    env = {"SEARCH_MODEL_DIR": str(tiny_model), "SEARCH_INDEX_DIR": str(tiny_index), "SEARCH_QUERY_CACHE_SIZE": "0"}
    payloads = [{"query": r["text"][:60], "top_k": 5} for r in demo_records(limit=50)]
    with running_server(env) as base:
        result = run_load(f"{base}/search", payloads, concurrency=32, max_requests=600, max_seconds=60)
        metrics = httpx.get(f"{base}/metrics").text
    assert result.errors == 0, (result.statuses, result.first_error)
    assert result.requests == 600
    calls = float(re.search(r"search_encode_batch_texts_count (\S+)", metrics).group(1))
    texts = float(re.search(r"search_encode_batch_texts_sum (\S+)", metrics).group(1))
    assert texts >= 600 and texts / calls > 1.5, f"{texts} texts in {calls} model calls: little batching"
