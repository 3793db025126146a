"""Poison metadata. Before: a document whose metadata nests 256 levels was accepted, then every response carrying it
answered 500, also after a restart. Now it is refused at the door, and NaN/Infinity too."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from app.corpus import MAX_METADATA_DEPTH
from tests.app.test_limits import nested
from tests.conftest import running_server, writable_server_env

pytestmark = pytest.mark.e2e
WRITE = {"Authorization": "Bearer write-key", "Content-Type": "application/json"}


@pytest.fixture(scope="module")
def server(tiny_model: Path, tiny_index: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    folder = tmp_path_factory.mktemp("poison")
    env = writable_server_env(tiny_model, tiny_index, folder, SEARCH_WRITE_API_KEYS="write-key")
    with running_server(env) as base:
        yield base


def upsert(server: str, metadata: dict | str, doc_id: str = "poison") -> httpx.Response:
    """``metadata`` as an object, or as raw JSON text (NaN literals, which a strict encoder would not write)."""
    raw = metadata if isinstance(metadata, str) else json.dumps(metadata)
    body = f'{{"documents": [{{"id": "{doc_id}", "text": "Ein Absatz", "lang": "de", "metadata": {raw}}}]}}'
    return httpx.post(f"{server}/documents", content=body, headers=WRITE)


def test_deep_metadata_is_refused_with_the_reason(server: str) -> None:
    answer = upsert(server, nested(256))  # 607 bytes as in the report: under the byte limit
    assert answer.status_code == 422, answer.text
    assert f"more than {MAX_METADATA_DEPTH} levels" in answer.json()["detail"]
    assert httpx.get(f"{server}/documents/poison").status_code == 404


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity"])
def test_nan_and_infinity_are_refused(server: str, literal: str) -> None:
    answer = upsert(server, f'{{"score": {literal}}}', "not-a-number")
    assert answer.status_code == 422, answer.text
    assert "JSON has no NaN or Infinity" in answer.json()["detail"]


def test_the_deepest_accepted_metadata_is_served_back_everywhere(server: str) -> None:
    deepest = nested(MAX_METADATA_DEPTH)
    assert upsert(server, deepest, "deep").status_code == 200
    assert httpx.get(f"{server}/documents/deep").json()["metadata"] == deepest
    search = {"query": "Ein Absatz", "top_k": 3, "filters": {}}
    assert httpx.post(f"{server}/search", json=search).status_code == 200
    found = httpx.post(f"{server}/search/batch", json={"queries": ["Ein Absatz"] * 2, "top_k": 50}).json()
    assert any(hit["id"] == "deep" and hit["metadata"] == deepest for hit in found["results"][0]["results"])
