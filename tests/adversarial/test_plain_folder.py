"""A plain-folder index. Before: a plain-folder copy of an index was accepted as writable; from the
SEARCH_SNAPSHOT_EVERY-th write on, every write answered 500 and left a full orphan copy. Now it serves searches and
refuses writes with 409 and the reason, before any write is accepted."""

from __future__ import annotations

import shutil
from pathlib import Path

import httpx
import pytest

from tests.conftest import running_server

pytestmark = pytest.mark.e2e


def test_a_plain_folder_index_refuses_writes(tiny_model: Path, tiny_index: Path, tmp_path: Path) -> None:
    plain = tmp_path / "plain"
    shutil.copytree(tiny_index.resolve(), plain)  # `cp -a` of the version folder instead of the link
    env = {"SEARCH_MODEL_DIR": str(tiny_model), "SEARCH_INDEX_DIR": str(plain), "SEARCH_WRITE_API_KEYS": "k"}
    with running_server(env) as base:
        assert httpx.get(f"{base}/ready").json()["writable"] is False
        document = {"id": "new", "text": "Ein Absatz", "lang": "de"}
        answer = httpx.post(f"{base}/documents", json={"documents": [document]}, headers={"Authorization": "Bearer k"})
        assert answer.status_code == 409 and "plain folder" in answer.json()["detail"]
        assert httpx.post(f"{base}/search", json={"query": "Warschau", "top_k": 2}).status_code == 200
    assert sorted(p.name for p in tmp_path.iterdir()) == ["plain"]  # no orphan copies beside it
