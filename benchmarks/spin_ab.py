"""ONNX Runtime thread spinning, A/B through the service: `SEARCH_SPIN_THREADS=never` against `during_calls` (the
default), in alternating rounds on this machine. `/v1/embeddings` at concurrency 1, 8 and 32 and `/search` at 32,
int8 default model, caches off, every query new; QPS, p50/p99 and the cores the server used.

    python -m benchmarks.spin_ab            # ~6 min
Writes docs/results/spin-ab.json.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from benchmarks.loadgen import measure, run_load
from benchmarks.serve_load import distinct_queries
from benchmarks.serve_vs_infinity import MODEL
from tests.conftest import start_server, stop_server

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=8.0)
    args = parser.parse_args()
    questions = distinct_queries()
    name = json.loads((MODEL / "manifest.json").read_text())["name"]
    env = {
        "SEARCH_MODEL_DIR": str(MODEL),
        "SEARCH_INDEX_DIR": str(ROOT / "indexes" / "demo"),
        "SEARCH_QUERY_CACHE_SIZE": "0",
        "SEARCH_MAX_QUEUE": "100000",
        "SEARCH_LOG_LEVEL": "warning",
    }
    rows, offset = [], 0
    for round_number in range(args.rounds):
        for spin in ("never", "during_calls"):
            process, base = start_server({**env, "SEARCH_SPIN_THREADS": spin}, timeout=300)
            try:
                warm = [{"model": name, "input": [q]} for q in questions[:64]]
                run_load(f"{base}/v1/embeddings", warm, 8, 64)
                for route, concurrency in (("/v1/embeddings", 1), ("/v1/embeddings", 8), ("/v1/embeddings", 32),
                                           ("/search", 32)):  # fmt: skip
                    offset = (offset + 2500) % (len(questions) - 2500)
                    batch = questions[offset : offset + 2500]
                    payloads = (
                        [{"model": name, "input": [q]} for q in batch]
                        if route == "/v1/embeddings"
                        else [{"query": q, "top_k": 10} for q in batch]
                    )
                    result, cores = measure(process.pid, base + route, payloads, concurrency, args.seconds)
                    rows.append({"round": round_number, "spin": spin, "route": route, **result.row(),
                                 "cores": round(cores, 2)})  # fmt: skip
                    print(json.dumps(rows[-1]), flush=True)
            finally:
                stop_server(process)
    out = ROOT / "docs" / "results" / "spin-ab.json"
    out.write_text(json.dumps({"machine": "2-core CPU (shared)", "rows": rows}, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
