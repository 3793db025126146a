"""POST /v1/embeddings speaks OpenAI's format and returns the model's own vectors."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest

from app.encoder import OnnxEncoder
from tests.conftest import running_server

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def server(tiny_model: Path, tiny_index: Path) -> Iterator[str]:
    env = {"SEARCH_MODEL_DIR": str(tiny_model), "SEARCH_INDEX_DIR": str(tiny_index), "SEARCH_INT8": "false"}
    with running_server(env) as base:
        yield base


def test_openai_shape_and_vectors(server: str, tiny_model: Path) -> None:
    texts = ["Super Bowl 50", "北京是中国的首都", "Warschau"]
    answer = httpx.post(f"{server}/v1/embeddings", json={"input": texts, "model": "tiny-bert"})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["object"] == "list" and body["model"] == "tiny-bert"
    assert [d["index"] for d in body["data"]] == [0, 1, 2] and {d["object"] for d in body["data"]} == {"embedding"}
    encoder = OnnxEncoder(tiny_model, "fp32", runtime="cpu")
    expected = encoder.encode(texts, "query")
    assert np.allclose([d["embedding"] for d in body["data"]], expected, atol=1e-5)
    tokens = sum(encoder.token_lengths(texts, "query"))
    assert body["usage"] == {"prompt_tokens": tokens, "total_tokens": tokens}


def test_single_string_and_base64(server: str) -> None:
    floats = httpx.post(f"{server}/v1/embeddings", json={"input": "hello", "model": "tiny-bert"}).json()
    packed = httpx.post(
        f"{server}/v1/embeddings", json={"input": "hello", "model": "tiny-bert", "encoding_format": "base64"}
    ).json()
    decoded = np.frombuffer(base64.b64decode(packed["data"][0]["embedding"]), dtype="<f4")
    assert np.array_equal(decoded, np.array(floats["data"][0]["embedding"], dtype=np.float32))


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (
            {"input": "x", "model": "text-embedding-3-small"},
            "is not served here; this server serves ['tiny-bert', 'tiny-bert:passage']",
        ),
        ({"input": [], "model": "tiny-bert"}, "non-empty list"),
        ({"input": [[1, 2, 3]], "model": "tiny-bert"}, "token arrays are not supported"),
        ({"input": [1, 2, 3], "model": "tiny-bert"}, "token arrays are not supported"),
        ({"input": "x", "model": "tiny-bert:passage", "input_type": "query"}, "contradicts it"),
        ({"input": ["ok", ""], "model": "tiny-bert"}, "query 1 is empty or whitespace"),
        ({"input": ["ok"] * 65, "model": "tiny-bert"}, "65 inputs in one call; the limit is 64"),
        ({"input": "ok", "model": "tiny-bert", "dimensions": 8}, "dimensions must be 32"),
        ({"input": "ok", "model": "tiny-bert", "encoding_format": "int8"}, "encoding_format"),
        ({"input": "ok"}, "model: Field required"),
    ],
)
def test_bad_embedding_requests(server: str, payload: dict, message: str) -> None:
    answer = httpx.post(f"{server}/v1/embeddings", json=payload)
    assert answer.status_code == 422, answer.text
    error = answer.json()["error"]  # OpenAI's error shape on the /v1 routes
    assert message in error["message"] and error["type"] == "invalid_request_error"


def test_models_are_listed_with_a_passage_alias(server: str, tiny_model: Path) -> None:
    listed = httpx.get(f"{server}/v1/models").json()
    assert listed["object"] == "list" and [m["id"] for m in listed["data"]] == ["tiny-bert", "tiny-bert:passage"]
    assert httpx.get(f"{server}/v1/models/tiny-bert:passage").json()["object"] == "model"
    missing = httpx.get(f"{server}/v1/models/gpt-4")
    assert missing.status_code == 404 and "not served here" in missing.json()["error"]["message"]
    texts = ["Warschau ist die Hauptstadt Polens.", "北京是中国的首都"]
    alias = httpx.post(f"{server}/v1/embeddings", json={"input": texts, "model": "tiny-bert:passage"}).json()
    expected = OnnxEncoder(tiny_model, "fp32", runtime="cpu").encode(texts, "passage")
    assert np.allclose([d["embedding"] for d in alias["data"]], expected, atol=1e-5)
    assert alias["model"] == "tiny-bert"


def test_the_official_openai_client_and_langchain(server: str, tiny_model: Path) -> None:
    """The clients people point at an embeddings service, unmodified, against the real server."""
    import openai
    from langchain_openai import OpenAIEmbeddings

    encoder = OnnxEncoder(tiny_model, "fp32", runtime="cpu")
    client = openai.OpenAI(base_url=f"{server}/v1", api_key="unused")
    assert [m.id for m in client.models.list()] == ["tiny-bert", "tiny-bert:passage"]
    answer = client.embeddings.create(model="tiny-bert", input=["Warschau"])
    assert np.allclose(answer.data[0].embedding, encoder.encode(["Warschau"], "query")[0], atol=1e-5)
    with pytest.raises(openai.UnprocessableEntityError, match="is not served here"):
        client.embeddings.create(model="text-embedding-3-small", input="x")  # our message, not only "422"
    # LangChain: the passage alias for documents, the plain id for queries; no tiktoken (offline, other ids)
    documents = OpenAIEmbeddings(
        model="tiny-bert:passage", base_url=f"{server}/v1", api_key="unused", check_embedding_ctx_length=False
    )
    queries = OpenAIEmbeddings(
        model="tiny-bert", base_url=f"{server}/v1", api_key="unused", check_embedding_ctx_length=False
    )
    texts = ["Ein Absatz über Warschau.", "Un párrafo sobre Varsovia."]
    assert np.allclose(documents.embed_documents(texts), encoder.encode(texts, "passage"), atol=1e-5)
    assert np.allclose(queries.embed_query("Warschau"), encoder.encode(["Warschau"], "query")[0], atol=1e-5)
