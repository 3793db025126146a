"""Our embeddings endpoint vs a peer, in one run on this machine: infinity 0.0.78's ONNX (optimum) engine serving the
same model (the default: base + shipped adapter), every query new (caches off), one text per request.

Servers run one at a time (2 cores), in two rounds (ours int8, ours fp32, infinity; then again) so that machine
noise shows; each level's figure is the better round's QPS with its p50/p99. Also measured: the cores each server
uses under load (its process's CPU time / wall time), our `/search` at concurrency 32, and the model's own
ceiling (in-process queries/s, no HTTP; `--ceiling-only` runs just that).

The peer lives in its own venv (`make infinity-venv`; the recipe installs offline): `infinity-emb[server,torch]
==0.0.78`, `transformers==4.48.3`, `optimum[onnxruntime]==1.24.0`. Its model folder (models/peers/, built once
here) is an optimum ONNX export of the served model's merged HF weights, made with `torch.onnx.export` bound to
`dynamo=False` (the dynamo exporter's external-data file name breaks optimum 1.24), plus the sentence-transformers
module files so that infinity mean-pools and normalises as we do. Queries carry e5's "query: " prefix for the peer
(our server adds it itself).

    python -m benchmarks.serve_vs_infinity            # ~15 min
Writes docs/results/serve-vs-infinity.json and docs/images/serve-vs-infinity.png; prints a markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from benchmarks.loadgen import measure, run_load, wait_until_up
from benchmarks.serve_load import distinct_queries
from tests.conftest import free_port, start_server, stop_server

ROOT = Path(__file__).resolve().parents[1]


PEER_VENV = ROOT / ".venv-infinity"
MODEL = ROOT / "models" / "multilingual-e5-small-hybrid"
INDEX = ROOT / "indexes" / "demo"
SERVERS = ("ours_int8", "ours_fp32", "infinity_onnx")
ST_FILES = {
    "modules.json": [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
        {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"},
    ],
    "sentence_bert_config.json": {"max_seq_length": 512, "do_lower_case": False},
    "1_Pooling/config.json": {"word_embedding_dimension": 384, "pooling_mode_mean_tokens": True},
    "2_Normalize/.keep": None,
}
EXPORT = """
import functools, sys, torch
torch.onnx.export = functools.partial(torch.onnx.export, dynamo=False)
from optimum.exporters.onnx import main_export
main_export(sys.argv[1], output=sys.argv[2], task="feature-extraction", library_name="transformers")
"""


def peer_folder(model_dir: Path) -> Path:
    """The served model as infinity's optimum engine wants it (built once)."""
    folder = ROOT / "models" / "peers" / f"{model_dir.name}-optimum"
    if (folder / "model.onnx").is_file():
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    subprocess.run([str(PEER_VENV / "bin" / "python"), "-c", EXPORT, str(model_dir), str(folder)], check=True)
    for name, content in ST_FILES.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("" if content is None else json.dumps(content, indent=2))
    return folder


def start_peer(folder: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    log = open(ROOT / "runs" / "infinity.log", "w")  # noqa: SIM115 (the server writes to it until it stops)
    process = subprocess.Popen(
        [str(PEER_VENV / "bin" / "infinity_emb"), "v2", "--model-id", str(folder), "--engine", "optimum",
         "--device", "cpu", "--port", str(port), "--batch-size", "32", "--served-model-name", "peer"],
        stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "INFINITY_ANONYMOUS_USAGE_STATS": "0"},
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    wait_until_up(process, f"{base}/health", "infinity (see runs/infinity.log)", 600)
    return process, base


def model_ceiling(questions: list[str], rounds: int = 2) -> list[dict]:
    """What the model alone does on these cores, no HTTP: queries/s in batches of 32 with one session on every
    core (as served), and with one single-threaded session per core running side by side."""
    import threading

    from app.encoder import OnnxEncoder

    rows = []
    batches = [questions[i : i + 32] for i in range(0, 1280, 32)]
    for variant in ("int8", "fp32"):
        for round_number in range(rounds):
            shared = OnnxEncoder(MODEL, variant, "cpu", 0)
            pair = [OnnxEncoder(MODEL, variant, "cpu", 1) for _ in range(2)]
            for encoder in (shared, *pair):
                encoder.encode(questions[:64], "query", 32)  # warm
            started = time.perf_counter()
            for batch in batches:
                shared.encode(batch, "query", 32)
            one = 1280 / (time.perf_counter() - started)

            def work(encoder: OnnxEncoder, mine: list[list[str]]) -> None:
                for batch in mine:
                    encoder.encode(batch, "query", 32)

            threads = [threading.Thread(target=work, args=(pair[k], batches[k::2])) for k in range(2)]
            started = time.perf_counter()
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            two = 1280 / (time.perf_counter() - started)
            rows.append(
                {"variant": variant, "round": round_number, "one_session_qps": round(one, 1),
                 "two_single_thread_sessions_qps": round(two, 1)}
            )  # fmt: skip
            print(json.dumps(rows[-1]), flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--levels", type=int, nargs="+", default=[1, 8, 32, 64])
    parser.add_argument("--seconds", type=float, default=10.0, help="time cap of each level")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--ceiling-only", action="store_true", help="only the model's own throughput (no servers)")
    args = parser.parse_args()
    out = ROOT / "docs" / "results" / "serve-vs-infinity.json"
    if args.ceiling_only:
        report = json.loads(out.read_text())
        report["model_ceiling_in_process"] = model_ceiling(distinct_queries())
        out.write_text(json.dumps(report, indent=2) + "\n")
        return
    if not (PEER_VENV / "bin" / "infinity_emb").exists():
        sys.exit(f"no infinity in {PEER_VENV}: run `make infinity-venv` first")
    (ROOT / "runs").mkdir(exist_ok=True)
    folder = peer_folder(MODEL)
    name = json.loads((MODEL / "manifest.json").read_text())["name"]
    questions = distinct_queries()  # ~13k; caches are off, so a server may see a question another one saw
    offset = 0

    def fresh(n: int) -> list[str]:
        nonlocal offset
        offset = (offset + n) % (len(questions) - n)
        return questions[offset : offset + n]

    env = {
        "SEARCH_MODEL_DIR": str(MODEL),
        "SEARCH_INDEX_DIR": str(INDEX),
        "SEARCH_QUERY_CACHE_SIZE": "0",
        "SEARCH_MAX_QUEUE": "100000",
        "SEARCH_LOG_LEVEL": "warning",
    }
    best: dict[str, dict[int, dict]] = {server: {} for server in SERVERS}
    rounds: list[dict] = []
    search_c32: list[dict] = []
    for round_number in range(args.rounds):
        for server in SERVERS:
            if server == "infinity_onnx":
                process, base = start_peer(folder)
                url, model, prefix = f"{base}/embeddings", "peer", "query: "
            else:
                settings = {**env, "SEARCH_INT8": "true" if server == "ours_int8" else "false"}
                process, base = start_server(settings, timeout=300)
                url, model, prefix = f"{base}/v1/embeddings", name, ""
            try:
                run_load(url, [{"model": model, "input": [prefix + q]} for q in fresh(64)], 8, 64)  # warm
                for level in args.levels:
                    payloads = [{"model": model, "input": [prefix + q]} for q in fresh(3000)]
                    result, cores = measure(process.pid, url, payloads, level, args.seconds)
                    row = {**result.row(), "cores": round(cores, 2), "round": round_number}
                    rounds.append({"server": server, **row})
                    print(json.dumps(rounds[-1]), flush=True)
                    if result.qps > best[server].get(level, {}).get("qps", -1):
                        best[server][level] = row
                if server == "ours_int8":
                    payloads = [{"query": q, "top_k": 10} for q in fresh(3000)]
                    result, cores = measure(process.pid, f"{base}/search", payloads, 32, args.seconds)
                    search_c32.append({**result.row(), "cores": round(cores, 2), "round": round_number})
                    print(json.dumps({"server": "ours_int8 /search", **search_c32[-1]}), flush=True)
            finally:
                stop_server(process)
    levels = {
        str(level): {
            server: {k: best[server][level][k] for k in ("qps", "p50_ms", "p99_ms", "errors", "cores")}
            for server in SERVERS
        }
        for level in args.levels
    }
    report = {
        "machine": "2-core CPU (shared); one run, servers one at a time, best of the rounds per level",
        "model": name,
        "peer": "infinity-emb 0.0.78, --engine optimum (ONNX Runtime, its optimised graph), batch size 32",
        "levels": levels,
        "ratios": {
            level: {
                "int8_vs_infinity": round(row["ours_int8"]["qps"] / row["infinity_onnx"]["qps"], 2),
                "fp32_vs_infinity": round(row["ours_fp32"]["qps"] / row["infinity_onnx"]["qps"], 2),
            }
            for level, row in levels.items()
        },
        "search_c32_ours_int8": max(search_c32, key=lambda r: r["qps"]),
        "rounds": rounds,
        "model_ceiling_in_process": model_ceiling(questions),
    }
    out.write_text(json.dumps(report, indent=2) + "\n")
    plot(levels, ROOT / "docs" / "images" / "serve-vs-infinity.png")
    print("| concurrency | ours int8 QPS (p99) | ours fp32 QPS (p99) | infinity-ONNX QPS (p99) | int8/inf | fp32/inf |")
    print("|---|---|---|---|---|---|")
    for level, row in levels.items():
        cells = [f"{row[s]['qps']} ({row[s]['p99_ms']} ms)" for s in SERVERS]
        ratio = report["ratios"][level]
        print(f"| {level} | {' | '.join(cells)} | {ratio['int8_vs_infinity']}× | {ratio['fp32_vs_infinity']}× |")
    print(f"wrote {out}")


def plot(levels: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    concurrency = [int(level) for level in levels]
    figure, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    for server, label in zip(SERVERS, ("ours, int8 (default)", "ours, fp32", "infinity, ONNX"), strict=True):
        left.plot(concurrency, [levels[str(c)][server]["qps"] for c in concurrency], marker="o", label=label)
        right.plot(concurrency, [levels[str(c)][server]["p99_ms"] for c in concurrency], marker="o", label=label)
    for axis, title in ((left, "throughput (requests/s)"), (right, "p99 latency (ms)")):
        axis.set_xscale("log", base=2)
        axis.set_xticks(concurrency, [str(c) for c in concurrency])
        axis.set_xlabel("concurrent clients")
        axis.set_title(title)
        axis.grid(alpha=0.3)
    left.legend()
    figure.suptitle("/v1/embeddings vs infinity's /embeddings, one new query per request, 2-core CPU")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=120)


if __name__ == "__main__":
    main()
