"""The engine's start-up settings and its status (what /ready and /metrics read)."""

from __future__ import annotations

from pathlib import Path

import faiss

from app.engine import SearchEngine
from app.settings import Settings


def test_load_sets_faiss_threads_and_reports_its_status(tiny_model: Path, tiny_index: Path) -> None:
    before = faiss.omp_get_max_threads()
    engine = SearchEngine(Settings(model_dir=tiny_model, index_dir=tiny_index, faiss_threads=1, runtime="cpu"))
    assert engine.status().ready is False
    try:
        engine.load()
        assert faiss.omp_get_max_threads() == 1
        status = engine.status()
        assert status.ready and status.model == engine.model_name == "tiny-bert"
        assert status.index_size == 220 and status.writable and status.queue_depth == 0
    finally:
        engine.close()
        faiss.omp_set_num_threads(before)
