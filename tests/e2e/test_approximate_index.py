"""The service over an approximate index, over real HTTP: writes and deletes reach the graph, and ``exact``
gives the flat index's ranking."""

from __future__ import annotations

from pathlib import Path

import httpx
import numpy as np
import pytest

from app.encoder import OnnxEncoder
from app.stores.embedded.index import SearchIndex
from tests.conftest import running_server

pytestmark = pytest.mark.e2e


def test_the_service_searches_through_the_graph_and_exactly_on_request(
    tiny_model: Path, tiny_index: Path, tmp_path: Path
) -> None:
    """Over real HTTP: an approximate index takes writes and deletes, and ``exact`` gives the flat index's ranking."""
    index = SearchIndex.load(tiny_index)
    index.manifest = index.manifest.model_copy(update={"index_type": "hnsw"})
    index.build_graph()
    index.save(tmp_path / "graph")
    env = {
        "SEARCH_MODEL_DIR": str(tiny_model),
        "SEARCH_INDEX_DIR": str(tmp_path / "graph"),
        "SEARCH_GRAPH_EXACT_BELOW": "0",
        "SEARCH_WRITE_API_KEYS": "k",
        "SEARCH_INT8": "false",  # the variant the ranking below is computed with
    }
    key = {"Authorization": "Bearer k"}
    with running_server(env) as base, httpx.Client(base_url=base) as client:
        query = {"query": "Wer hat den Super Bowl 50 gewonnen?", "top_k": 10}
        exact = client.post("/search", json={**query, "exact": True}).json()["results"]
        flat = SearchIndex.load(tiny_index)
        assert [r["id"] for r in exact] == [
            h.document.id for h in flat.search(encoded_query(tiny_model, query["query"]), 10)[0]
        ]
        written = {"id": "new", "text": "Super Bowl 50 was won by the Denver Broncos.", "lang": "en"}
        assert client.post("/documents", json={"documents": [written]}, headers=key).status_code == 200
        found = client.post("/search", json={**query, "query": written["text"]}).json()["results"]
        assert found[0]["id"] == "new"
        assert client.delete("/documents/new", headers=key).status_code == 200
        found = client.post("/search", json={**query, "query": written["text"]}).json()["results"]
        assert "new" not in {r["id"] for r in found}


def encoded_query(model: Path, text: str) -> np.ndarray:
    return OnnxEncoder(model, "fp32", runtime="cpu").encode([text], "query")
