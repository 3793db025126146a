"""Cost growth of the embedded store with corpus size, per index type: exact (flat) and approximate (the graph).

Corpora of 10k, 100k and 1M passages whose vectors follow the real embedding distribution: each is a mixture of
two of the demo index's real encoded passages plus a little noise, normalised, in the language of its larger part,
with that passage's text (made distinct, so that memory is not flattered by shared strings). Queries are real
encoded questions (XQuAD-R, every language). Per size and index type: recall@10 against exact search (all
languages; one language of eleven), in-process index-search p50/p99 on one thread, the graph's build time and
chosen efSearch, resident memory per passage and start-up time (a fresh process loading the saved index), durable
write throughput and the delay until a write is found, and the service's /search QPS and p99 at concurrency 1, 8
and 32 next to the demo index's in the same run (encoding every query: the query cache is off).

    python -m benchmarks.ann_scale                                 # 10k, 100k and 1M: ~45 min on 2 cores
    python -m benchmarks.ann_scale --sizes 10000 100000            # ~10 min
Writes docs/results/ann-scale.json and docs/results/ann-scale.png.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import faiss
import numpy as np

from app.corpus import Document, Hit
from app.encoder import OnnxEncoder
from app.stores.base import Store
from app.stores.embedded.collection import Collection
from app.stores.embedded.index import GraphTuning, SearchIndex
from benchmarks.serve_load import distinct_queries
from benchmarks.store_compare import DEMO, MODEL, ROOT, ivf_store, percentiles, through_the_service
from tests.conftest import copy_into_milvus

OUT = ROOT / "docs" / "results"
QUERIES = 300
ONE_LANGUAGE = "th"  # one of the eleven: a filter allowing ~9% of the corpus
FILTERS = {"all": None, "one_language": [ONE_LANGUAGE]}
MILVUS_NLIST = 128  # the store's IVF_FLAT setting (nprobe 32)

# run in a fresh process: what serving the index costs in memory and start-up, without this process's copies
LOAD = """
import json, resource, sys, time
from pathlib import Path
import faiss, numpy  # noqa: F401  (imported before the baseline is read)
from app.stores.embedded.collection import Collection
def rss_mib():  # resident: in all, and the part that is file pages (mapped snapshot files)
    fields = dict(line.split(':', 1) for line in open('/proc/self/status'))
    return {name: int(fields[key].split()[0]) / 1024 for name, key in [("all", "VmRSS"), ("file", "RssFile")]}
base = rss_mib()
started = time.perf_counter()
collection = Collection(Path(sys.argv[1]), snapshot_every=10**9, graphs=False)
seconds = time.perf_counter() - started
now = rss_mib()
print(json.dumps({"startup_s": round(seconds, 2), "rss_mib": round(now["all"] - base["all"], 1),
                  "rss_file_mib": round(now["file"] - base["file"], 1), "graph": collection.index.graph is not None}))
collection.stop_snapshots()
"""


def mixed_corpus(demo: SearchIndex, size: int, seed: int = 0) -> tuple[list[Document], np.ndarray]:
    """``size`` passages drawn from the demo index's real embedding distribution (see the module docstring)."""
    snapshot = demo.snapshot_copy()
    real = snapshot.vectors.reconstruct_n(0, snapshot.vectors.ntotal)
    rng = np.random.default_rng(seed)
    vectors = np.empty((size, demo.dim), dtype=np.float32)
    major = rng.integers(0, len(real), size)
    for start in range(0, size, 100_000):
        end = min(size, start + 100_000)
        weight = rng.uniform(0.55, 0.9, (end - start, 1)).astype(np.float32)
        minor = rng.integers(0, len(real), end - start)
        noise = rng.standard_normal((end - start, demo.dim), dtype=np.float32) * 0.02
        block = weight * real[major[start:end]] + (1 - weight) * real[minor] + noise
        vectors[start:end] = block / np.linalg.norm(block, axis=1, keepdims=True)
    documents = [
        Document(
            f"p{i}",
            f"{snapshot.documents[m].text} ({i})",
            snapshot.documents[m].lang,
            {"group": f"g{i // 11}", "source": "generated"},
        )
        for i, m in enumerate(major.tolist())
    ]
    return documents, vectors


def saved_index(demo: SearchIndex, documents: list[Document], vectors: np.ndarray, kind: str, out: Path) -> dict:
    """Build and save an index of ``kind``; what building the graph took."""
    flat = faiss.IndexFlatIP(demo.dim)
    flat.add(vectors)
    manifest = demo.manifest.model_copy(update={"index_type": kind, "size": len(documents), "graph": None})
    index = SearchIndex(flat, documents, manifest)
    figures: dict = {}
    if kind == "hnsw":
        faiss.omp_set_num_threads(0)  # the build uses every core, as the service's background build does
        started = time.perf_counter()
        index.build_graph(progress=False)
        figures["graph_build_s"] = round(time.perf_counter() - started, 1)
        assert index.graph is not None
        figures["ef_search"] = index.graph.choice.ef_search
        figures["build_recall_at_10"] = index.graph.choice.recall_at_10
    started = time.perf_counter()
    index.save(out)
    figures["save_s"] = round(time.perf_counter() - started, 1)
    return figures


def exact_top10(index: SearchIndex, queries: np.ndarray) -> dict[str, list[list[Hit]]]:
    return {name: index.search(queries, 10, languages, exact=True) for name, languages in FILTERS.items()}


def latency_and_recall(store: Store | SearchIndex, queries: np.ndarray, truth: dict[str, list[list[Hit]]]) -> dict:
    """One query at a time: index-search p50/p99 and recall@10 against ``truth``, all languages and one."""
    faiss.omp_set_num_threads(1)
    figures: dict = {}
    for name, languages in FILTERS.items():
        samples, found = [], []
        store.search(queries[:1], 10, languages)  # warm
        for row in range(len(queries)):
            started = time.perf_counter()
            found += store.search(queries[row : row + 1], 10, languages)
            samples.append(time.perf_counter() - started)
        recall = np.mean(
            [
                len({h.document.id for h in a} & {h.document.id for h in b}) / 10
                for a, b in zip(found, truth[name], strict=True)
            ]
        )
        figures[name] = {**percentiles(samples), "recall_at_10": round(float(recall), 4)}
    return figures


def writes(index_dir: Path, new_vectors: np.ndarray, seconds: float = 10.0) -> dict:
    """Durable writes (batches of 8 new passages from the same distribution) through the collection, and how long
    until each batch is found by its first passage's vector."""
    collection = Collection(index_dir, snapshot_every=10**9, graphs=False)
    try:
        written, delays, started = 0, [], time.perf_counter()
        while time.perf_counter() - started < seconds and written + 8 <= len(new_vectors):
            vectors = new_vectors[written : written + 8]
            batch = [Document(f"bench-{written + k}", "a benchmark write", "en") for k in range(8)]
            sent = time.perf_counter()
            collection.upsert(batch, vectors)
            hits = collection.search(vectors[:1], 1)[0]
            assert hits and hits[0].document.id == batch[0].id
            delays.append(time.perf_counter() - sent)
            written += 8
        rate = written / (time.perf_counter() - started)
        collection.delete([f"bench-{i}" for i in range(written)])
    finally:
        collection.stop_snapshots()
        if collection.wal is not None:
            collection.wal.close()
    return {"documents_per_s": round(rate, 1), "write_until_found": percentiles(delays)}


def milvus_figures(
    index_dir: Path, queries: np.ndarray, truth: dict, questions: list[str], folder: Path, seconds: float
) -> dict:
    """The same corpus in Milvus Lite (IVF_FLAT; Milvus Lite builds no HNSW): bulk copy, recall, latency, QPS."""
    uri = folder / "scale.db"
    started = time.perf_counter()
    copy_into_milvus(index_dir, uri, "scale")
    figures: dict = {"bulk_copy_s": round(time.perf_counter() - started, 1), "nlist": MILVUS_NLIST, "nprobe": 32}
    store = ivf_store(uri, "scale", SearchIndex.load(index_dir).manifest, MILVUS_NLIST)
    try:
        figures["search"] = latency_and_recall(store, queries, truth)
    finally:
        store.close()
    env = {
        "SEARCH_STORE": "milvus",
        "SEARCH_MILVUS_URI": str(uri),
        "SEARCH_MILVUS_COLLECTION": "scale",
        "SEARCH_INDEX_DIR": str(index_dir),
        "SEARCH_LOG_LEVEL": "warning",
    }
    figures["service"] = through_the_service(env, questions[:4000], seconds)
    uri.unlink(missing_ok=True)
    return figures


def served_memory(index_dir: Path) -> dict:
    done = subprocess.run([sys.executable, "-c", LOAD, str(index_dir)], cwd=ROOT, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(done.stderr[-2000:])
    return json.loads(done.stdout.strip().splitlines()[-1])


def markdown(report: dict) -> str:
    """The docs' table: one column per size and index."""
    columns = [
        (size, kind) for size, entry in report["sizes"].items() for kind in ("flat", "hnsw", "milvus") if kind in entry
    ]
    names = {"flat": "flat", "hnsw": "graph", "milvus": "Milvus Lite IVF_FLAT"}
    head = "| | " + " | ".join(f"{int(size):,}, {names[kind]}" for size, kind in columns) + " |"
    rows = [head, "|---" * (len(columns) + 1) + "|"]

    def row(label: str, value) -> None:  # type: ignore[no-untyped-def]
        cells = []
        for size, kind in columns:
            try:
                cells.append(value(report["sizes"][size][kind]))
            except (KeyError, TypeError):
                cells.append("")
        rows.append(f"| {label} | " + " | ".join(cells) + " |")

    for name, label in (("all", "all languages"), ("one_language", f"one language ({ONE_LANGUAGE})")):
        row(f"recall@10, {label}", lambda e, n=name: f"{e['search'][n]['recall_at_10']:.3f}")
        row(
            f"index search p50 / p99, {label}",
            lambda e, n=name: f"{e['search'][n]['p50_ms']:.2f} / {e['search'][n]['p99_ms']:.2f} ms",
        )
    row("graph build (efSearch chosen)", lambda e: f"{e['graph_build_s']} s ({e['ef_search']})")
    row("resident memory per passage", lambda e: f"{e['memory']['bytes_per_passage']:,} B")
    row("start-up (load)", lambda e: f"{e['memory']['startup_s']} s")
    row("durable writes (batches of 8)", lambda e: f"{e['writes']['documents_per_s']:,.0f} docs/s")
    row(
        "write until found, p50 / p99",
        lambda e: (
            f"{e['writes']['write_until_found']['p50_ms']:.1f} / {e['writes']['write_until_found']['p99_ms']:.1f} ms"
        ),
    )
    for level, concurrency in enumerate((1, 8, 32)):
        row(
            f"`/search` c={concurrency}: QPS, p99",
            lambda e, i=level: f"{e['service']['search'][i]['qps']}, {e['service']['search'][i]['p99_ms']:.0f} ms",
        )
    ratios = []
    for size, kind in columns:
        try:
            service, baseline = report["sizes"][size][kind]["service"], report["sizes"][size]["demo_service"]
            pairs = zip(service["search"], baseline["search"], strict=True)
            ratios.append(" / ".join(f"{ours['qps'] / demo['qps']:.2f}" for ours, demo in pairs))
        except KeyError:
            ratios.append("")
    rows.append("| `/search` QPS / the demo index's in the same run, c=1/8/32 | " + " | ".join(ratios) + " |")
    return "\n".join(rows)


def plot(report: dict, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (latency, memory) = plt.subplots(1, 2, figsize=(11, 4.2))
    for kind, style in (("flat", "o-"), ("hnsw", "s-")):
        rows = [(int(size), entry[kind]) for size, entry in report["sizes"].items() if kind in entry]
        sizes = [size for size, _ in rows]
        latency.plot(sizes, [e["search"]["all"]["p99_ms"] for _, e in rows], style, label=f"{kind}: all languages")
        latency.plot(
            sizes, [e["search"]["one_language"]["p99_ms"] for _, e in rows], style, alpha=0.5, label=f"{kind}: one"
        )
        memory.plot(sizes, [e["memory"]["bytes_per_passage"] for _, e in rows], style, label=kind)
        if kind == "hnsw":
            for ef in ("128", "256"):
                swept = [(size, e["ef_sweep"][ef]["all"]["p99_ms"]) for size, e in rows if ef in e.get("ef_sweep", {})]
                if swept:
                    latency.plot(*zip(*swept, strict=True), "x", label=f"hnsw, efSearch {ef}: all languages")
    for axis in (latency, memory):
        axis.set_xscale("log")
        axis.set_xlabel("passages")
        axis.grid(alpha=0.3)
        axis.legend()
    latency.set_yscale("log")
    latency.set_ylabel("index search p99, one thread (ms)")
    memory.set_ylabel("resident memory per passage (bytes)")
    memory.axhline(1024, color="grey", linestyle=":", linewidth=1)
    fig.suptitle("Embedded store: cost against corpus size (vectors from the real embedding distribution)")
    fig.tight_layout()
    fig.savefig(out, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--seconds", type=float, default=10.0, help="time cap of each service load level")
    parser.add_argument("--service-flat-up-to", type=int, default=100_000, help="larger flat indexes: no service run")
    parser.add_argument("--milvus", action="store_true", help="the same corpora in Milvus Lite (IVF_FLAT) too")
    parser.add_argument("--kinds", nargs="+", default=["flat", "hnsw"], choices=["flat", "hnsw"])
    parser.add_argument(
        "--update", action="store_true", help="keep the sizes and kinds of the last report that are not measured now"
    )
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="ann-scale-"))
    demo = SearchIndex.load(DEMO)
    questions = distinct_queries()
    queries = OnnxEncoder(MODEL, runtime="cpu").encode(questions[:QUERIES], "query")
    report: dict = {"machine": "2-core CPU (shared)", "queries": QUERIES, "one_language": ONE_LANGUAGE, "sizes": {}}
    if args.update and (OUT / "ann-scale.json").is_file():
        report = json.loads((OUT / "ann-scale.json").read_text())
    demo_copy = folder / "demo"  # the service's write load goes to a private copy, never to the demo index
    demo.save(demo_copy)
    demo_service = through_the_service({"SEARCH_INDEX_DIR": str(demo_copy)}, questions[:4000], args.seconds)
    report["demo_service"] = demo_service
    try:
        for size in args.sizes:
            documents, vectors = mixed_corpus(demo, size)
            fresh = mixed_corpus(demo, 40_000, seed=1)[1]  # what the write test adds: more of the same distribution
            entry: dict = report["sizes"].get(str(size), {}) if args.update else {}
            entry["demo_service"] = demo_service  # the service ratio is taken within one run
            report["sizes"][str(size)] = entry
            truth: dict = {}
            for kind in args.kinds:
                index_dir = folder / f"{kind}-{size}"
                figures = saved_index(demo, documents, vectors, kind, index_dir)
                if kind == args.kinds[0] and args.milvus:  # before the service's write load adds to it
                    shutil.copytree(index_dir.resolve(), folder / f"pristine-{size}")
                index = SearchIndex.load(index_dir)
                index.tuning = GraphTuning()
                truth = truth or exact_top10(index, queries)
                figures["search"] = latency_and_recall(index, queries, truth)
                if kind == "hnsw":  # recall against cost: the chosen efSearch and larger ones
                    figures["ef_sweep"] = {}
                    for ef in (128, 256):
                        index.tuning = GraphTuning(ef_search=ef)
                        figures["ef_sweep"][ef] = latency_and_recall(index, queries, truth)
                del index
                memory = served_memory(index_dir)
                memory["bytes_per_passage"] = round(memory["rss_mib"] * 2**20 / size)
                figures["memory"] = memory
                figures["writes"] = writes(index_dir, fresh)
                if kind == "hnsw" or size <= args.service_flat_up_to:
                    env = {"SEARCH_INDEX_DIR": str(index_dir), "SEARCH_LOG_LEVEL": "warning"}
                    figures["service"] = through_the_service(env, questions[:4000], args.seconds)
                entry[kind] = figures
                print(f"{size} {kind}: {json.dumps(figures)}", flush=True)
                (OUT / "ann-scale.json").write_text(json.dumps(report, indent=1) + "\n")
            if args.milvus:
                pristine = folder / f"pristine-{size}"
                entry["milvus"] = milvus_figures(pristine, queries, truth, questions, folder, args.seconds)
                print(f"{size} milvus: {json.dumps(entry['milvus'])}", flush=True)
            for old in [*folder.glob(f"*-{size}*"), *folder.glob(f".*-{size}.*")]:
                shutil.rmtree(old, ignore_errors=True)
            del documents, vectors
            (OUT / "ann-scale.json").write_text(json.dumps(report, indent=1) + "\n")
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    plot(report, OUT / "ann-scale.png")
    print(markdown(report))
    print(f"wrote {OUT / 'ann-scale.json'} and {OUT / 'ann-scale.png'}")


if __name__ == "__main__":
    main()
