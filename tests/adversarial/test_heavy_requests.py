"""Heavy requests. Before: twelve /search/batch requests of 64 x 2,000-character queries (truncate: true, within every
documented limit) held the model one after the other: eleven got 504 and a light search waited 30 s. Now model
calls are short and shared fairly, so a light search stays fast while they run (the real default model)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest

from tests.conftest import DEMO_INDEX_DIR, running_server

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
HEAVY_REQUESTS = 12


@pytest.fixture(scope="module")
def server(default_model: Path) -> Iterator[str]:
    with running_server({"SEARCH_MODEL_DIR": str(default_model), "SEARCH_INDEX_DIR": str(DEMO_INDEX_DIR)}) as base:
        yield base


def heavy_batch(n: int) -> dict:
    words = "Wer gewann das Spiel und wie viele Punkte erzielte die Mannschaft in der zweiten Halbzeit "
    queries = [f"{n}-{i} " + words * 22 for i in range(64)]  # ~2,000 characters, cut to 512 tokens each
    return {"queries": [q[:2000] for q in queries], "top_k": 10, "truncate": True}


def test_light_searches_stay_fast_while_twelve_maximum_batches_run(server: str) -> None:
    heavy_statuses: list[int] = []
    running = threading.Event()

    def heavy(n: int) -> None:
        running.set()
        answer = httpx.post(f"{server}/search/batch", json=heavy_batch(n), timeout=300)
        heavy_statuses.append(answer.status_code)

    threads = [threading.Thread(target=heavy, args=(n,)) for n in range(HEAVY_REQUESTS)]
    for thread in threads:
        thread.start()
    running.wait()
    time.sleep(2)  # every heavy request is in
    latencies = []
    busy_during_probes = 0
    with httpx.Client(base_url=server, timeout=60) as client:
        for i in range(40):  # a new query each time: no cache hit
            started = time.perf_counter()
            answer = client.post("/search", json={"query": f"Wer hat den Super Bowl {i} gewonnen?", "top_k": 5})
            latencies.append(time.perf_counter() - started)
            assert answer.status_code == 200, answer.text
            if i == 20:
                busy_during_probes = sum(t.is_alive() for t in threads)
    for thread in threads:
        thread.join()
    p99 = float(np.percentile(latencies, 99))
    print(f"light search under {HEAVY_REQUESTS} heavy batches: p50 {np.median(latencies):.3f} s, p99 {p99:.3f} s;")
    print(f"heavy answers: {sorted(heavy_statuses)}; heavy requests still running at probe 20: {busy_during_probes}")
    assert busy_during_probes > 0, "the heavy requests ended early: the probes measured nothing"
    # The target is p99 <= 1 s (measured: see docs/PERFORMANCE.md); 1.5 s leaves room for this shared,
    # noisy machine without letting the old behaviour (a 30 s wait) pass.
    assert p99 <= 1.5
    # 12 x 64 x 512 tokens is about a minute of model time: the first ones finish, the rest pass the request
    # timeout (504) instead of all finishing late together
    assert set(heavy_statuses) <= {200, 504} and heavy_statuses.count(200) >= 1
