"""What verifying a snapshot costs at start-up: loading a version folder with and without its checksums checked.

Vectors are random unit vectors (what they hold does not matter to hashing or loading); the documents are real demo
paragraphs, so ``docs.jsonl`` has a realistic size. Each size is written once, then loaded alternately unverified
(its SHA256SUMS hidden and the manifest marked as written before checksums) and verified, ``--repeats`` times each,
warm page cache both ways. Figures go to docs/results/snapshot-verify.json.

    python -m benchmarks.snapshot_verify --sizes 100000 1000000
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import faiss
import numpy as np

from app.corpus import Document
from app.ingest.sources import read_corpus
from app.manifest import IndexManifest
from app.stores.embedded.index import (
    DOCS_FILE,
    MANIFEST_FILE,
    VECTORS_FILE,
    SearchIndex,
    Snapshot,
    stored_vectors,
    write_snapshot_files,
)
from app.stores.embedded.integrity import CHECKSUMS_FILE, check_consistency, file_sha256

ROOT = Path(__file__).resolve().parent.parent
DIM = 384


def write_folder(folder: Path, size: int, texts: list[Document]) -> float:
    rng = np.random.default_rng(0)
    index = faiss.IndexFlatIP(DIM)
    for start in range(0, size, 100_000):
        block = rng.standard_normal((min(100_000, size - start), DIM), dtype=np.float32)
        block /= np.linalg.norm(block, axis=1, keepdims=True)
        index.add(block)
    documents = [
        Document(f"p{i}", texts[i % len(texts)].text, texts[i % len(texts)].lang, {"group": f"g{i // 11}"})
        for i in range(size)
    ]
    manifest = IndexManifest(
        model_name="random", model_fingerprint="0" * 64, model_variant="fp32", embedding_dim=DIM, size=size
    )
    started = time.perf_counter()
    write_snapshot_files(folder, Snapshot(index, documents, manifest))
    return time.perf_counter() - started


def load_seconds(folder: Path, verified: bool) -> float:
    manifest_path, sums, hidden = folder / MANIFEST_FILE, folder / CHECKSUMS_FILE, folder / "sums.hidden"
    original = manifest_path.read_text()
    if not verified:
        sums.rename(hidden)
        manifest_path.write_text(json.dumps({**json.loads(original), "format_version": 1}))
    try:
        started = time.perf_counter()
        SearchIndex.load(folder)
        return time.perf_counter() - started
    finally:
        if not verified:
            hidden.rename(sums)
            manifest_path.write_text(original)


def measure(size: int, repeats: int, texts: list[Document], scratch: Path) -> dict:
    folder = scratch / f"v{size}"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    write_s = write_folder(folder, size, texts)
    hash_s = {}
    for name in (VECTORS_FILE, DOCS_FILE):
        started = time.perf_counter()
        file_sha256(folder / name)
        hash_s[name] = time.perf_counter() - started
    vectors = faiss.read_index(str(folder / VECTORS_FILE))
    started = time.perf_counter()
    check_consistency(
        folder, stored_vectors(vectors), size, IndexManifest.model_validate_json((folder / MANIFEST_FILE).read_text())
    )
    consistency_s = time.perf_counter() - started
    del vectors
    plain, verified = [], []
    for _ in range(repeats):
        plain.append(load_seconds(folder, verified=False))
        verified.append(load_seconds(folder, verified=True))
    files = {name: (folder / name).stat().st_size for name in (VECTORS_FILE, DOCS_FILE)}
    shutil.rmtree(folder)
    result = {
        "passages": size,
        "bytes": files,
        "snapshot_write_s_with_checksums": round(write_s, 2),
        "sha256_s": {k: round(v, 2) for k, v in hash_s.items()},
        "consistency_check_s": round(consistency_s, 3),
        "load_s_unverified": [round(s, 2) for s in plain],
        "load_s_verified": [round(s, 2) for s in verified],
        "verified_over_unverified": round(statistics.median(verified) / statistics.median(plain), 3),
    }
    print(
        f"{size:>9,} passages ({sum(files.values()) / 2**20:,.0f} MiB): load {statistics.median(plain):.2f} s "
        f"unverified, {statistics.median(verified):.2f} s verified (x{result['verified_over_unverified']}); "
        f"sha256 alone {sum(hash_s.values()):.2f} s, unit-length check {consistency_s:.3f} s"
    )
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--scratch", type=Path, default=None, help="folder for the test snapshots (default: a temp)")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "results" / "snapshot-verify.json")
    args = parser.parse_args()
    texts = list(read_corpus(ROOT / "data" / "demo" / "corpus.jsonl"))
    with tempfile.TemporaryDirectory(dir=args.scratch) as scratch:
        results = [measure(size, args.repeats, texts, Path(scratch)) for size in args.sizes]
    args.out.write_text(json.dumps({"machine": "2 cores, page cache warm", "results": results}, indent=2) + "\n")
    print(f"-> {args.out}")


if __name__ == "__main__":
    main()
