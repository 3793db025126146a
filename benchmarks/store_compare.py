"""The two stores side by side, in one run on this machine: the embedded FAISS collection and Milvus (Lite 2.5,
Milvus's C++ core in a child process; a server or cluster adds a network hop).

1. In-process: one search (top 10; all languages, and one language) and writes (batches of 8 precomputed vectors,
   durable when they return) against each store, on the demo corpus (2,640 real passages) and on 100,000 synthetic
   ones (random unit vectors, 11 languages).
2. Through the service: `/search` QPS and p50/p99 at concurrency 1, 8 and 32 (every query new, so the encoder
   works for each), for each store and corpus; and `POST /documents` throughput (8 documents per request).
3. Milvus choices: ``lang`` as a plain field, with an INVERTED index, or as the partition key (one-language search
   latency on the 100k collection); IVF_FLAT's recall@10 against exact search on the demo corpus (HNSW needs a
   Milvus server; Milvus Lite builds FLAT, IVF_FLAT and AUTOINDEX only).

    python -m benchmarks.store_compare            # ~10 min
Writes docs/results/store-compare.json and prints markdown tables.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

from app.corpus import Document
from app.encoder import OnnxEncoder
from app.manifest import IndexManifest
from app.stores.base import Store
from app.stores.embedded.collection import Collection
from app.stores.embedded.index import SearchIndex
from app.stores.milvus import CollectionIdentity, MilvusStore
from benchmarks.loadgen import run_load
from benchmarks.serve_load import distinct_queries
from tests.conftest import copy_into_milvus, running_server

ROOT = Path(__file__).resolve().parents[1]


MODEL = ROOT / "models" / "multilingual-e5-small-hybrid"
DEMO = ROOT / "indexes" / "demo"
LANGS = ["ar", "de", "el", "en", "es", "hi", "ru", "th", "tr", "vi", "zh"]


def synthetic_index(demo: SearchIndex, size: int, out: Path) -> Path:
    """``size`` random unit vectors in 11 languages, with the demo index's manifest (same model)."""
    import faiss

    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((size, demo.dim), dtype=np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    flat = faiss.IndexFlatIP(demo.dim)
    flat.add(vectors)
    documents = [
        Document(f"synthetic-{i}", f"synthetic passage {i}", LANGS[i % 11], {"group": f"g{i // 11}"})
        for i in range(size)
    ]
    SearchIndex(flat, documents, demo.manifest).save(out)
    return out


def percentiles(samples: list[float]) -> dict:
    ms = np.array(samples) * 1000
    return {"p50_ms": round(float(np.percentile(ms, 50)), 3), "p99_ms": round(float(np.percentile(ms, 99)), 3)}


def in_process(store: Store, queries: np.ndarray, lang: str) -> dict:
    """One-query search latency (all languages / one), and durable write throughput (batches of 8)."""
    figures = {}
    for name, languages in (("search_all", None), ("search_one_language", [lang])):
        store.search(queries[:1], 10, languages)  # warm
        samples = []
        for row in range(len(queries)):
            started = time.perf_counter()
            store.search(queries[row : row + 1], 10, languages)
            samples.append(time.perf_counter() - started)
        figures[name] = percentiles(samples)
    written, started = 0, time.perf_counter()
    while time.perf_counter() - started < 10:
        batch = [
            Document(f"bench-write-{written + k}", "a benchmark write", lang, {"k": written + k}) for k in range(8)
        ]
        store.upsert(batch, queries[np.arange(written, written + 8) % len(queries)])
        written += 8
    figures["write_documents_per_s"] = round(written / (time.perf_counter() - started), 1)
    store.delete([f"bench-write-{i}" for i in range(written)])
    return figures


def through_the_service(env: dict, queries: list[str], seconds: float) -> dict:
    """Load on a real server; its query cache is off, so every query is encoded."""
    figures: dict = {"search": []}
    settings = {"SEARCH_MODEL_DIR": str(MODEL), "SEARCH_WRITE_API_KEYS": "k", "SEARCH_QUERY_CACHE_SIZE": "0", **env}
    with running_server(settings, timeout=300) as base:
        for concurrency in (1, 8, 32):
            payloads = [{"query": query, "top_k": 10} for query in queries]
            result = run_load(f"{base}/search", payloads, concurrency, 10**6, seconds)
            figures["search"].append(result.row())
            print(f"    /search c={concurrency}: {result.row()}", flush=True)
        writes = [
            {"documents": [{"id": f"api-{n}-{k}", "text": queries[8 * n + k], "lang": "en"} for k in range(8)]}
            for n in range(len(queries) // 8)
        ]
        result = run_load(f"{base}/documents", writes, 4, len(writes), seconds, headers={"Authorization": "Bearer k"})
        figures["writes"] = {**result.row(), "documents_per_s": round(8 * result.qps, 1)}
        print(f"    POST /documents c=4: {figures['writes']}", flush=True)
    return figures


def lang_field_choice(index: SearchIndex, queries: np.ndarray, folder: Path) -> dict:
    """One-language search latency on Milvus Lite for the three ways to hold ``lang``."""
    from pymilvus import DataType, MilvusClient

    snapshot = index.snapshot_copy()
    vectors, documents = snapshot.vectors, snapshot.documents
    client = MilvusClient(str(folder / "choice.db"))
    figures = {}
    for variant in ("plain", "inverted", "partition_key"):
        schema = MilvusClient.create_schema(auto_id=False)
        schema.add_field("id", DataType.VARCHAR, is_primary=True, max_length=64)
        schema.add_field("vector", DataType.FLOAT_VECTOR, dim=index.dim)
        schema.add_field("lang", DataType.VARCHAR, max_length=16, is_partition_key=variant == "partition_key")
        params = client.prepare_index_params()
        params.add_index("vector", index_type="FLAT", metric_type="IP")
        if variant == "inverted":
            params.add_index("lang", index_type="INVERTED")
        try:
            client.create_collection(variant, schema=schema, index_params=params, consistency_level="Strong")
            for start in range(0, len(documents), 2000):
                rows = range(start, min(start + 2000, len(documents)))
                matrix = vectors.reconstruct_batch(list(rows)).tolist()
                client.insert(
                    variant,
                    [
                        {"id": documents[i].id, "vector": v, "lang": documents[i].lang}
                        for i, v in zip(rows, matrix, strict=True)
                    ],
                )
            samples = []
            for row in queries.tolist():
                started = time.perf_counter()
                client.search(variant, [row], limit=10, filter='lang in ["de"]', search_params={"metric_type": "IP"})
                samples.append(time.perf_counter() - started)
            figures[variant] = percentiles(samples)
        except Exception as exc:  # e.g. a variant Milvus Lite does not build
            figures[variant] = {"error": f"{type(exc).__name__}: {str(exc)[:200]}"}
        print(f"  lang {variant}: {figures[variant]}", flush=True)
    client.close()
    return figures


def ivf_store(uri: Path, collection: str, manifest: IndexManifest, nlist: int) -> MilvusStore:
    """A Milvus Lite collection (filled by ``copy_into_milvus``) re-indexed as IVF_FLAT with ``nlist`` lists."""
    store = MilvusStore(str(uri), collection)
    identity = CollectionIdentity.of_index(manifest)
    store.open(identity)
    store.client.release_collection(collection)
    store.client.drop_index(collection, "vector")
    params = store.client.prepare_index_params()
    params.add_index("vector", index_type="IVF_FLAT", metric_type="IP", params={"nlist": nlist})
    store.client.create_index(collection, params)
    store.open(identity)  # reloads, and reads the index type back
    return store


def ivf_recall(index_dir: Path, queries: np.ndarray, folder: Path) -> dict:
    """recall@10 of IVF_FLAT (nlist 128, nprobe 32) against exact search, on the demo corpus in Milvus Lite."""
    exact = SearchIndex.load(index_dir)
    copy_into_milvus(index_dir, folder / "ivf.db", "ivf")
    store = ivf_store(folder / "ivf.db", "ivf", exact.manifest, nlist=128)
    found = store.search(queries, 10)
    truth = exact.search(queries, 10)
    recall = np.mean(
        [len({h.document.id for h in a} & {h.document.id for h in b}) / 10 for a, b in zip(found, truth, strict=True)]
    )
    store.close()
    return {"index_type": store.index_type, "nlist": 128, "nprobe": 32, "recall_at_10": round(float(recall), 4)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--synthetic", type=int, default=100_000)
    parser.add_argument("--seconds", type=float, default=10.0, help="time cap of each load level")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="store-compare-"))
    demo = SearchIndex.load(DEMO)
    corpora = {"demo": DEMO, "synthetic": synthetic_index(demo, args.synthetic, folder / "indexes" / "synthetic")}
    questions = distinct_queries()
    encoder = OnnxEncoder(MODEL, runtime="cpu")
    query_vectors = encoder.encode(questions[:300], "query")
    report: dict = {"machine": "2-core CPU (shared)", "milvus": "milvus-lite 2.5.1 (pymilvus 2.5.18)", "corpora": {}}
    for name, index_dir in corpora.items():
        size = SearchIndex.load(index_dir).size
        print(f"{name}: {size} passages", flush=True)
        started = time.perf_counter()
        copy_into_milvus(index_dir, folder / f"{name}.db")
        bulk = size / (time.perf_counter() - started)
        entry: dict = {"size": size, "milvus_bulk_copy_docs_per_s": round(bulk, 1)}
        for store_name in ("faiss", "milvus"):
            store: Store
            if store_name == "faiss":
                writable = folder / "writable" / name
                SearchIndex.load(index_dir).save(writable)
                store = Collection(writable, snapshot_every=10**9)
                env = {"SEARCH_STORE": "faiss", "SEARCH_INDEX_DIR": str(writable)}
            else:
                store = MilvusStore(str(folder / f"{name}.db"))
                store.open(CollectionIdentity.of_model(encoder.manifest, demo.manifest.model_variant))
                env = {"SEARCH_STORE": "milvus", "SEARCH_MILVUS_URI": str(folder / f"{name}.db")}
            figures = {"in_process": in_process(store, query_vectors, "de")}
            store.close()
            print(f"  {store_name} in-process: {figures['in_process']}", flush=True)
            figures["service"] = through_the_service(env, questions[:4000], args.seconds)
            entry[store_name] = figures
        report["corpora"][name] = entry
    report["lang_field"] = lang_field_choice(SearchIndex.load(corpora["synthetic"]), query_vectors[:100], folder)
    report["ivf_flat_recall_demo"] = ivf_recall(DEMO, query_vectors, folder)
    print(json.dumps(report["ivf_flat_recall_demo"]))
    out = ROOT / "docs" / "results" / "store-compare.json"
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
