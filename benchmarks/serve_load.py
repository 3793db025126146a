"""Serving benchmark: our service vs a naive torch FastAPI baseline, in one run, on this machine.

1. Load: both servers on loopback (same model, same FAISS index), concurrency 1/8/32/64, bounded by request
   count and time: QPS, p50/p95/p99, errors, ratio. Queries are XQuAD-R questions in 11 languages that our server
   has never seen (its query cache cannot help); a second workload cycles 240 demo questions (cache hits).
2. Encode throughput: torch fp32 vs ONNX Runtime fp32 vs ONNX int8 on 256 passages of ~60 words,
   and on 512 demo queries, in batches of 32.
   Also: a lone request with dynamic batching vs one text per model call (does batching cost it anything?),
   and what a durable write, a snapshot and a search cost in-process.
3. int8 vs fp32: top-10 agreement on XQuAD-R English, XQuAD-R mAP (mono/cross/multi) on the test articles,
   and how much dynamic batching moves int8 query embeddings (batch-dependence).

    python -m benchmarks.serve_load                      # everything, ~16 min
    python -m benchmarks.serve_load --skip-quality       # load + encode only
Writes docs/results/serve_load.json and prints markdown tables.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from collections.abc import Callable

    from app.stores.embedded.collection import Collection

from benchmarks.loadgen import LoadResult, run_load, wait_until_up
from tests.conftest import free_port, start_server, stop_server

ROOT = Path(__file__).resolve().parents[1]


XQUAD = ROOT / "data" / "xquad-r"
SPLITS = ROOT / "data" / "splits" / "xquad-r-articles.json"


def start_baseline(model_dir: Path, index_dir: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, str(ROOT / "benchmarks" / "naive_server.py"), "--model-dir", str(model_dir),
         "--index-dir", str(index_dir), "--port", str(port)],
        cwd=ROOT,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    wait_until_up(process, f"{base}/ready", "baseline", 180)
    return process, base


def distinct_queries() -> list[str]:
    """Every XQuAD-R question in every language (~13k), shuffled: a stream in which no query repeats."""
    questions = []
    for path in sorted(XQUAD.glob("*.json")):
        for article in json.loads(path.read_text(encoding="utf-8"))["data"]:
            questions += [qa["question"].strip() for p in article["paragraphs"] for qa in p["qas"]]
    order = np.random.default_rng(0).permutation(len(questions))
    return [questions[i] for i in order]


def load_section(args: argparse.Namespace) -> list[dict]:
    fresh = iter(distinct_queries())

    def unseen(n: int) -> list[dict]:  # queries our server has not seen: its query cache cannot help
        return [{"query": next(fresh), "top_k": 10} for _ in range(n)]

    demo = [json.loads(line)["query"] for line in (ROOT / "data/demo/queries.jsonl").open(encoding="utf-8")]
    repeated = [{"query": q, "top_k": 10} for q in demo[:240]]  # a hot set of 240 queries, asked again and again
    env = {
        "SEARCH_MODEL_DIR": str(args.model_dir),
        "SEARCH_INDEX_DIR": str(args.index_dir),
        "SEARCH_LOG_LEVEL": "warning",
        "SEARCH_MAX_QUEUE": "100000",
    }
    ours, ours_base = start_server(env, timeout=300)
    baseline, baseline_base = start_baseline(args.model_dir, args.index_dir)
    rows = []
    try:
        for base in (ours_base, baseline_base):  # warm both (first requests allocate)
            run_load(f"{base}/search", unseen(40), concurrency=4, max_requests=40)
        for concurrency in args.concurrency:
            naive = run_load(
                f"{baseline_base}/search", unseen(args.baseline_requests), concurrency, args.baseline_requests,
                args.max_seconds,
            )  # fmt: skip
            new = run_load(f"{ours_base}/search", unseen(args.requests), concurrency, args.requests, args.max_seconds)
            rows.append(compare(concurrency, "distinct queries", new, naive))
            if args.repeated:
                again = run_load(f"{ours_base}/search", repeated, concurrency, args.requests, args.max_seconds)
                rows.append(compare(concurrency, "240 repeated queries (cache)", again, naive))
    finally:
        stop_server(ours)
        stop_server(baseline)
    return rows


def single_request_section(args: argparse.Namespace) -> list[dict]:
    """Does batching cost a lone request anything? The same server settings with batching on and with one text
    per model call, unseen queries at concurrency 1, interleaved rounds; query cache off in both."""
    fresh = iter(distinct_queries()[-3000:])  # the other end of the stream from load_section's
    env = {
        "SEARCH_MODEL_DIR": str(args.model_dir),
        "SEARCH_INDEX_DIR": str(args.index_dir),
        "SEARCH_LOG_LEVEL": "warning",
        "SEARCH_QUERY_CACHE_SIZE": "0",
    }
    servers = {
        "dynamic batching": start_server(env, timeout=300),
        "one text per model call": start_server({**env, "SEARCH_BATCH_MAX_TEXTS": "1"}, timeout=300),
    }
    rows = []
    try:
        for _, base in servers.values():
            run_load(f"{base}/search", [{"query": next(fresh)} for _ in range(50)], 1, 50)
        for round_number in range(2):
            for name, (_, base) in servers.items():
                result = run_load(f"{base}/search", [{"query": next(fresh)} for _ in range(400)], 1, 400)
                rows.append({"round": round_number, "server": name, **result.row()})
                print(json.dumps(rows[-1]), flush=True)
    finally:
        for process, _ in servers.values():
            stop_server(process)
    return rows


def compare(concurrency: int, workload: str, ours: LoadResult, baseline: LoadResult) -> dict:
    row = {
        "concurrency": concurrency,
        "workload": workload,
        "ours": ours.row(),
        "baseline": baseline.row(),
        "qps_ratio": round(ours.qps / baseline.qps, 1) if baseline.qps else None,
    }
    for name, result in (("ours", ours), ("baseline", baseline)):
        if result.errors:
            row[name]["first_error"] = result.first_error
    print(json.dumps(row), flush=True)
    return row


def sixty_word_passages(n: int = 256) -> list[str]:
    rows = [json.loads(line) for line in (ROOT / "data/demo/corpus.jsonl").open(encoding="utf-8")]
    spaced = [r["text"] for r in rows if r["lang"] not in ("zh", "th")]  # languages that separate words
    return [" ".join(text.split()[:60]) for text in spaced if len(text.split()) >= 60][:n]


def interleaved_rates(
    backends: dict[str, Callable[[list[str], str], object]], texts: list[str], kind: str, rounds: int
) -> dict[str, float]:
    """Texts per second of each backend, best of ``rounds`` interleaved rounds: machine noise hits every backend
    alike, so the ratios hold where the absolute rates do not."""
    seconds: dict[str, list[float]] = {name: [] for name in backends}
    for _ in range(rounds):
        for name, run in backends.items():
            started = time.perf_counter()
            run(texts, kind)
            seconds[name].append(time.perf_counter() - started)
    return {name: len(texts) / min(times) for name, times in seconds.items()}


def encode_section(args: argparse.Namespace) -> dict:
    import torch

    from app.encoder import PLURAL, OnnxEncoder
    from training.model import load_encoder

    passages = sixty_word_passages()
    queries = [json.loads(line)["query"] for line in (ROOT / "data/demo/queries.jsonl").open(encoding="utf-8")][:512]
    torch_encoder = load_encoder(args.model_dir)
    onnx = {variant: OnnxEncoder(args.model_dir, variant, "cpu") for variant in ("fp32", "int8")}
    backends = {
        "torch fp32": lambda texts, kind: torch_encoder.embed(texts, onnx["fp32"].prefix(kind), batch_size=32),
        "onnx fp32": lambda texts, kind: onnx["fp32"].encode(texts, kind, 32),
        "onnx int8": lambda texts, kind: onnx["int8"].encode(texts, kind, 32),
    }
    result: dict = {
        "passages": len(passages),
        "mean_words": round(float(np.mean([len(p.split()) for p in passages])), 1),
        "queries": len(queries),
        "torch_threads": torch.get_num_threads(),
    }
    for kind, texts in (("passage", passages), ("query", queries)):
        rates = {name: round(rate, 1) for name, rate in interleaved_rates(backends, texts, kind, args.rounds).items()}
        result[f"{PLURAL[kind]}_per_s"] = rates
        result[f"{kind}_speedup_vs_onnx_fp32"] = {n: round(v / rates["onnx fp32"], 2) for n, v in rates.items()}
    print(json.dumps(result), flush=True)
    return result


def search_while_snapshotting(collection: Collection, vectors: np.ndarray, round_: int) -> float:
    """The slowest of the searches that ran while one snapshot was written (ms)."""
    from app.corpus import Document

    collection.upsert([Document(f"during-{round_}", "text", "en")], vectors[:1])
    done, worst = threading.Event(), [0.0]

    def searcher() -> None:
        while not done.is_set():
            started = time.perf_counter()
            collection.search(vectors[:1], 10)
            worst[0] = max(worst[0], (time.perf_counter() - started) * 1000)

    thread = threading.Thread(target=searcher)
    thread.start()
    collection.snapshot()
    done.set()
    thread.join()
    return worst[0]


def writes_section(args: argparse.Namespace) -> dict:
    """The durable collection in-process on a copy of the index: what a write, a snapshot and a search cost."""
    import tempfile

    from app.corpus import Document
    from app.filters import parse_filter
    from app.stores.embedded.collection import Collection
    from app.stores.embedded.index import SearchIndex

    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((200, 384)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)

    def timed_ms(action: object, repeat: int) -> list[float]:
        times = []
        for i in range(repeat):
            started = time.perf_counter()
            action(i)  # type: ignore[operator]
            times.append((time.perf_counter() - started) * 1000)
        return times

    # Beside the real index: the same file system, so fsync costs what it will cost there (not tmpfs).
    with tempfile.TemporaryDirectory(dir=Path(args.index_dir).parent, prefix=".bench-") as tmp:
        folder = Path(tmp) / "index"
        SearchIndex.load(args.index_dir).save(folder)
        collection = Collection(folder, snapshot_every=10**9)
        upserts = timed_ms(lambda i: collection.upsert([Document(f"w{i}", "text", "en")], vectors[i : i + 1]), 100)
        deletes = timed_ms(lambda i: collection.delete([f"w{i}"]), 100)
        snapshot = timed_ms(lambda i: collection.snapshot() if collection.upsert(
            [Document("s", "text", "en")], vectors[:1]) else None, 3)  # fmt: skip
        during = [search_while_snapshotting(collection, vectors, i) for i in range(3)]
        searches = timed_ms(lambda i: collection.search(vectors[i % 200 : i % 200 + 1], 10), 500)
        one_title = parse_filter({"title": "Super_Bowl_50"})
        filtered = timed_ms(lambda i: collection.search(vectors[:1], 10, where=one_title), 500)
        result = {
            "documents": collection.size,
            "upsert_one_ms_p50": round(float(np.median(upserts)), 2),
            "delete_one_ms_p50": round(float(np.median(deletes)), 2),
            "snapshot_ms_median": round(float(np.median(snapshot)), 1),
            # the background snapshot holds the lock only to copy the rows and rotate the log
            "slowest_search_during_snapshot_ms_median": round(float(np.median(during)), 2),
            "search_ms_p50": round(float(np.median(searches)), 3),
            "filtered_search_ms_p50": round(float(np.median(filtered)), 3),
        }
        collection.close()
    print(json.dumps(result), flush=True)
    return result


def quality_section(args: argparse.Namespace) -> dict:
    from app.encoder import OnnxEncoder
    from training.data import load_split_titles
    from training.evaluate import OnnxEmbedder, evaluate, load_retrieval_set

    fp32, int8 = OnnxEncoder(args.model_dir, "fp32", "cpu"), OnnxEncoder(args.model_dir, "int8", "cpu")
    english = load_retrieval_set(XQUAD, ["en"])
    questions = [text for _, text in english.questions["en"]]
    top10 = {}
    for name, encoder in (("fp32", fp32), ("int8", int8)):
        q = encoder.encode(questions, "query", 64, progress=True)
        c = encoder.encode(english.candidates, "passage", 64, progress=True)
        top10[name] = np.argsort(-(q @ c.T), axis=1)[:, :10]
    overlap = float(np.mean([len(set(a) & set(b)) / 10 for a, b in zip(top10["fp32"], top10["int8"], strict=True)]))
    top1 = float(np.mean(top10["fp32"][:, 0] == top10["int8"][:, 0]))
    result: dict = {
        "xquad_r_en": {"questions": len(questions), "candidates": len(english.candidates),
                       "top10_overlap": round(overlap, 3), "top1_agreement": round(top1, 3)},
    }  # fmt: skip
    # Batch-dependence: each question alone vs inside a dynamic batch of 32 different questions.
    alone = np.stack([int8.encode([q], "query")[0] for q in questions[:256]])
    batched = int8.encode(questions[:256], "query", batch_size=32)
    alone_fp32 = np.stack([fp32.encode([q], "query")[0] for q in questions[:256]])
    result["batch_dependence"] = {
        "int8_min_cosine_alone_vs_batched": round(float(np.min(np.sum(alone * batched, axis=1))), 5),
        "fp32_max_abs_diff_alone_vs_batched": float(
            np.max(np.abs(alone_fp32 - fp32.encode(questions[:256], "query", 32)))
        ),
    }
    languages = sorted(p.stem for p in XQUAD.glob("*.json"))
    test = load_retrieval_set(XQUAD, languages, load_split_titles(SPLITS, "test"))
    result["xquad_r_test_map"] = {}
    for variant in ("fp32", "int8"):
        figures = evaluate(OnnxEmbedder(args.model_dir, variant), test)
        result["xquad_r_test_map"][variant] = {
            **{k: round(figures[f"{k}_map"], 4) for k in ("mono", "cross", "multi")},
            "rank_distance": round(figures["rank_distance"], 1),
            "seconds": figures["seconds"],
        }
    print(json.dumps(result), flush=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model-dir", type=Path, default=ROOT / "models/multilingual-e5-small-hybrid")
    parser.add_argument("--index-dir", type=Path, default=ROOT / "indexes/demo")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32, 64])
    parser.add_argument("--requests", type=int, default=1500, help="cap per level for our service")
    parser.add_argument("--baseline-requests", type=int, default=300, help="cap per level for the baseline")
    parser.add_argument("--max-seconds", type=float, default=30, help="time cap per level and server")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds of the encode benchmark")
    parser.add_argument(
        "--repeated",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also run our service on the demo's 240 queries cycled (query cache hits)",
    )
    parser.add_argument("--skip-load", action="store_true")
    parser.add_argument("--skip-single", action="store_true")
    parser.add_argument("--skip-writes", action="store_true")
    parser.add_argument("--skip-encode", action="store_true")
    parser.add_argument("--skip-quality", action="store_true")
    parser.add_argument("--out", type=Path, default=ROOT / "docs/results/serve_load.json")
    args = parser.parse_args()
    report: dict = {"machine": f"{os.cpu_count()} cores", "date": time.strftime("%Y-%m-%d %H:%M"), "argv": sys.argv[1:]}
    if not args.skip_load:
        report["load"] = load_section(args)
    if not args.skip_single:
        report["single_request"] = single_request_section(args)
    if not args.skip_writes:
        report["writes"] = writes_section(args)
    if not args.skip_encode:
        report["encode"] = encode_section(args)
    if not args.skip_quality:
        report["int8"] = quality_section(args)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    previous = json.loads(args.out.read_text()) if args.out.exists() else {}
    args.out.write_text(json.dumps({**previous, **report}, indent=2, ensure_ascii=False) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
