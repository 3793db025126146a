"""A real uvicorn process on the tiny model: ranking, error answers, readiness, metrics; the search tests run on
both stores (the FAISS index, and a copy of it in Milvus Lite)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest

from app.encoder import OnnxEncoder
from app.ingest.sources import read_corpus
from tests.conftest import ROOT, running_server, store_env

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def server(store: str, tiny_model: Path, tiny_index: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    env = {
        "SEARCH_MODEL_DIR": str(tiny_model),
        **store_env(store, tiny_index, tmp_path_factory.mktemp("api")),
        "SEARCH_MAX_QUERY_CHARS": "300",
        "SEARCH_MAX_QUERY_TOKENS": "40",
        "SEARCH_MAX_TOP_K": "50",
    }
    with running_server(env) as base:
        yield base


def test_health_and_ready(server: str) -> None:
    assert httpx.get(f"{server}/health").json() == {"status": "ok"}
    ready = httpx.get(f"{server}/ready").json()
    assert ready["ready"] is True and ready["model"] == "tiny-bert" and ready["index_size"] == 220
    assert ready["providers"][-1] == "CPUExecutionProvider" and len(ready["languages"]) == 11
    assert ready["group_fields"] == ["group", "title"]


def test_search_returns_the_exact_ranking(server: str, tiny_model: Path, tiny_corpus: Path) -> None:
    """What comes over HTTP is the brute-force cosine ranking of the same encoder, best first."""
    documents = list(read_corpus(tiny_corpus))
    query = "the Denver Broncos won Super Bowl 50"
    encoder = OnnxEncoder(tiny_model, runtime="cpu")
    scores = encoder.encode([d.text for d in documents], "passage") @ encoder.encode([query], "query")[0]
    expected = [documents[i].id for i in np.argsort(-scores)[:7]]

    answer = httpx.post(f"{server}/search", json={"query": query, "top_k": 7})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    results = body["results"]
    assert [r["id"] for r in results] == expected
    assert [r["rank"] for r in results] == list(range(1, 8))
    np.testing.assert_allclose([r["score"] for r in results], np.sort(scores)[::-1][:7], atol=1e-5)
    assert set(results[0]) >= {"id", "text", "lang", "score", "rank", "metadata"}
    assert body["model"] == "tiny-bert" and body["took_ms"] > 0


def test_language_filter(server: str) -> None:
    body = httpx.post(f"{server}/search", json={"query": "Super Bowl", "top_k": 12, "languages": ["es", "th"]}).json()
    assert {r["lang"] for r in body["results"]} <= {"es", "th"} and len(body["results"]) == 12


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ({"query": ""}, "query must not be empty or whitespace"),
        ({"query": "  \n\t "}, "query must not be empty or whitespace"),
        ({"query": "x" * 301}, "301 characters long; the limit is 300"),
        ({"query": "word " * 50}, r"tokens long .* the limit is 40"),
        ({"query": "ok", "top_k": 0}, "top_k must be between 1 and 50, got 0"),
        ({"query": "ok", "top_k": 51}, "top_k must be between 1 and 50, got 51"),
        ({"query": "ok", "top_k": "5"}, "top_k: Input should be a valid integer"),
        ({"query": 5}, "query: Input should be a valid string"),
        ({"query": "ok", "languages": "en"}, "languages: Input should be a valid list"),
        ({"query": "ok", "languages": []}, "languages: List should have at least 1 item"),
        ({"query": "ok", "languages": ["en", "fr"]}, r"unknown language\(s\) \['fr'\]"),  # a tag, not indexed
        ({"query": "ok", "languages": ["en", "xx"]}, r"languages.1: .*'xx' is not the tag of a known language"),
        ({"query": "ok", "limit": 3}, "limit: Extra inputs are not permitted"),
        ({}, "query: Field required"),
        ({"query": "ok", "filters": {"group": ["a"]}}, "filters.group"),
        ({"query": "ok", "languages": ["EN!"]}, "languages.0: .*'EN!' is not a language tag"),
    ],
)
def test_bad_input_gets_a_clear_4xx(server: str, payload: dict, message: str) -> None:
    answer = httpx.post(f"{server}/search", json=payload)
    assert answer.status_code == 422, answer.text
    assert re.search(message, answer.json()["detail"]), answer.json()


def test_malformed_json_and_wrong_method(server: str) -> None:
    answer = httpx.post(f"{server}/search", content=b"{not json", headers={"content-type": "application/json"})
    assert answer.status_code == 422 and "JSON" in answer.json()["detail"]
    assert (
        httpx.post(f"{server}/search", content=b"\xff\xfe", headers={"content-type": "application/json"}).status_code
        == 400
    )
    assert httpx.get(f"{server}/search").status_code == 405


@pytest.mark.parametrize(
    ("raw", "status", "message"),
    [
        (b'{"query": "caf\xe9"}', 400, "not valid UTF-8: byte 14 is 0xe9"),  # Latin-1 bytes, not UTF-8
        (b'{"query": "half a pair \\ud800"}', 422, "unpaired UTF-16 surrogate"),
        (b'{"query": "ok", "top_k": 1e400}', 422, "top_k"),
        (b"[1, 2]", 422, "Input should be a valid dictionary"),
    ],
)
def test_undecodable_bodies_are_refused(server: str, raw: bytes, status: int, message: str) -> None:
    answer = httpx.post(f"{server}/search", content=raw, headers={"content-type": "application/json"})
    assert answer.status_code == status, answer.text
    assert message in answer.json()["detail"]


def test_oversized_bodies_get_413_declared_or_streamed(tiny_model: Path, tiny_index: Path) -> None:
    env = {"SEARCH_MODEL_DIR": str(tiny_model), "SEARCH_INDEX_DIR": str(tiny_index), "SEARCH_MAX_BODY_BYTES": "2048"}
    with running_server(env) as base:
        big = {"query": "x " * 1500}
        declared = httpx.post(f"{base}/search", json=big)
        assert declared.status_code == 413 and "2048-byte limit" in declared.json()["detail"]

        def chunks() -> Iterator[bytes]:  # no Content-Length: the limit must hold while streaming
            yield b'{"query": "'
            for _ in range(100):
                yield b"y" * 100
            yield b'"}'

        streamed = httpx.post(f"{base}/search", content=chunks(), headers={"content-type": "application/json"})
        assert streamed.status_code == 413
        assert httpx.post(f"{base}/search", json={"query": "small"}).status_code == 200


def test_request_timeout_gives_504(tiny_model: Path, tiny_index: Path) -> None:
    # The batcher waits 3 s for companions before each model call, so a 0.5 s timeout always expires first
    # (a tiny timeout alone raced the tiny model, which can answer within one event-loop turn).
    env = {
        "SEARCH_MODEL_DIR": str(tiny_model),
        "SEARCH_INDEX_DIR": str(tiny_index),
        "SEARCH_REQUEST_TIMEOUT_S": "0.5",
        "SEARCH_BATCH_WAIT_MS": "3000",
    }
    with running_server(env) as base:
        answer = httpx.post(f"{base}/search", json={"query": "anything"}, timeout=10)
        assert answer.status_code == 504 and "0.5 s request timeout" in answer.json()["detail"]


def test_over_long_query_is_truncated_only_when_asked(server: str) -> None:
    query = "word " * 50
    assert httpx.post(f"{server}/search", json={"query": query}).status_code == 422
    answer = httpx.post(f"{server}/search", json={"query": query, "truncate": True})
    assert answer.status_code == 200 and len(answer.json()["results"]) == 10


def test_batch_search_matches_single_searches(server: str) -> None:
    queries = ["Super Bowl 50", "Warschau", "北京"]
    batch = httpx.post(f"{server}/search/batch", json={"queries": queries, "top_k": 5})
    assert batch.status_code == 200, batch.text
    for query, entry in zip(queries, batch.json()["results"], strict=True):
        single = httpx.post(f"{server}/search", json={"query": query, "top_k": 5}).json()["results"]
        assert entry["query"] == query
        assert [r["id"] for r in entry["results"]] == [r["id"] for r in single]
        # dynamic int8 scales activations per call, so batch companions move scores slightly (docs/PERFORMANCE.md)
        assert np.allclose([r["score"] for r in entry["results"]], [r["score"] for r in single], atol=1e-3)


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ({"queries": []}, "queries: List should have at least 1 item"),
        ({"queries": ["ok"] * 65}, "65 queries in one call; the limit is 64"),
        ({"queries": ["ok", " "]}, "query 1 is empty or whitespace"),
        ({"queries": "ok"}, "queries: Input should be a valid list"),
    ],
)
def test_batch_search_bad_input(server: str, payload: dict, message: str) -> None:
    answer = httpx.post(f"{server}/search/batch", json=payload)
    assert answer.status_code == 422 and message in answer.json()["detail"], answer.text


def test_metadata_filters_are_exact(server: str, tiny_corpus: Path) -> None:
    group = next(read_corpus(tiny_corpus)).metadata["group"]
    body = {"query": "Super Bowl", "top_k": 50, "filters": {"group": group}}
    results = httpx.post(f"{server}/search", json=body).json()["results"]
    expected = {d.id for d in read_corpus(tiny_corpus) if d.metadata.get("group") == group}
    assert {r["id"] for r in results} == expected
    both = httpx.post(f"{server}/search", json={**body, "languages": ["de"]}).json()["results"]
    assert [r["lang"] for r in both] == ["de"]
    none = httpx.post(f"{server}/search", json={**body, "filters": {"group": "no-such-group"}}).json()
    assert none["results"] == []


def test_metrics_count_requests_and_index_size(server: str) -> None:
    httpx.post(f"{server}/search", json={"query": "metrics probe"})
    httpx.post(f"{server}/search", json={"query": ""})
    text = httpx.get(f"{server}/metrics").text
    assert re.search(r'search_http_requests_total\{method="POST",route="/search",status="200"\} [1-9]', text)
    assert re.search(r'search_http_requests_total\{method="POST",route="/search",status="422"\} [1-9]', text)
    assert re.search(r'search_http_request_duration_seconds_bucket\{le="0.1",method="POST",route="/search"\}', text)
    assert "search_index_documents 220.0" in text and "search_ready 1.0" in text


def test_unloadable_index_reports_not_ready(tiny_model: Path, tiny_index: Path, tmp_path: Path) -> None:
    broken = tmp_path / "broken"
    shutil.copytree(tiny_index.resolve(), broken)
    (broken / "index.faiss").write_bytes(b"not a faiss index")
    env = {"SEARCH_MODEL_DIR": str(tiny_model), "SEARCH_INDEX_DIR": str(broken)}
    with running_server(env, wait_ready=False) as base:
        deadline_answers = [httpx.get(f"{base}/ready") for _ in range(3)]
        assert all(a.status_code == 503 for a in deadline_answers)
        assert deadline_answers[-1].json()["ready"] is False
        search = httpx.post(f"{base}/search", json={"query": "anything"})
        assert search.status_code == 503 and search.headers["retry-after"] == "5"
        assert httpx.get(f"{base}/health").status_code == 200


def serve_expecting_failure(model_dir: Path, index_dir: Path) -> subprocess.CompletedProcess:
    """`app.cli serve` must stop at start-up (non-zero exit) rather than serve."""
    result = subprocess.run(
        [sys.executable, "-m", "app.cli", "serve"],
        cwd=ROOT,
        env={"SEARCH_MODEL_DIR": str(model_dir), "SEARCH_INDEX_DIR": str(index_dir), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0, result.stdout
    return result


def test_index_from_another_model_is_refused(tiny_index: Path, tmp_path: Path) -> None:
    """Start-up fails, naming both models, when the index was encoded by a different model."""
    fake_model = tmp_path / "model"
    fake_model.mkdir()
    (fake_model / "manifest.json").write_text(
        '{"name": "someone-else", "source": "x", "fingerprint": "0000", "embedding_dim": 32, "max_length": 64}'
    )
    result = serve_expecting_failure(fake_model, tiny_index)
    assert "was built by model 'tiny-bert'" in result.stderr and "'someone-else'" in result.stderr


def test_missing_model_dir_is_named_at_startup(tiny_index: Path, tmp_path: Path) -> None:
    missing = tmp_path / "no-such-model"
    result = serve_expecting_failure(missing, tiny_index)
    assert f"model folder {missing} does not exist" in result.stderr


def test_grouped_search_collapses_translations(server: str, tiny_model: Path, tiny_corpus: Path) -> None:
    """top_k counts groups; each group is its best member plus the members found; the groups are the exact
    top 3 by best-member score (brute force over the same encoder)."""
    documents = list(read_corpus(tiny_corpus))
    query = "the Denver Broncos won Super Bowl 50"
    encoder = OnnxEncoder(tiny_model, runtime="cpu")
    scores = encoder.encode([d.text for d in documents], "passage") @ encoder.encode([query], "query")[0]
    expected_groups: list[str] = []
    for i in np.argsort(-scores):
        if documents[i].metadata["group"] not in expected_groups:
            expected_groups.append(documents[i].metadata["group"])

    body = httpx.post(f"{server}/search", json={"query": query, "top_k": 3, "group_by": "group", "group_size": 2})
    assert body.status_code == 200, body.text
    body = body.json()
    assert body["group_by"] == "group" and [r["group"] for r in body["results"]] == expected_groups[:3]
    for rank, result in enumerate(body["results"], start=1):
        assert result["rank"] == rank and result["metadata"]["group"] == result["group"]
        assert len(result["members"]) == min(2, result["members_found"]) and result["members"][0]["id"] == result["id"]
        member_scores = [m["score"] for m in result["members"]]
        assert member_scores == sorted(member_scores, reverse=True) and member_scores[0] == result["score"]
        assert all(m["id"].startswith(f"xquad-{result['group']}-") for m in result["members"])
    flat = httpx.post(f"{server}/search", json={"query": query, "top_k": 3}).json()
    assert "members" not in flat["results"][0] and flat["group_by"] is None

    # the same query twice is encoded once, alone: int8 activations are scaled per batch (shared/MEASURED.md)
    batch = httpx.post(f"{server}/search/batch", json={"queries": [query, query], "group_by": "group"}).json()
    for answer in batch["results"]:
        assert [r["group"] for r in answer["results"]] == expected_groups[:10]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"group_by": "nope"}, "no document has a metadata field 'nope'"),
        ({"group_by": "group", "group_size": 0}, "group_size: Input should be greater than or equal to 1"),
        ({"group_by": "group", "group_size": 101}, "group_size: Input should be less than or equal to 100"),
        ({"group_by": ""}, "group_by: String should have at least 1 character"),
        ({"group_by": 3}, "group_by: Input should be a valid string"),
    ],
)
def test_bad_grouping_gets_a_clear_422(server: str, options: dict, message: str) -> None:
    answer = httpx.post(f"{server}/search", json={"query": "Normandie", **options})
    assert answer.status_code == 422 and message in answer.json()["detail"], answer.text


def test_the_search_page_is_served_at_the_root(server: str) -> None:
    page = httpx.get(f"{server}/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert '<input id="q"' in page.text and 'fetch("search"' in page.text  # the page talks to this API
    assert "http://" not in page.text and "https://" not in page.text  # no CDN: it works offline
    assert "/" not in httpx.get(f"{server}/openapi.json").json()["paths"]  # a page, not an API operation
