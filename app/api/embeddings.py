"""POST /v1/embeddings and /v1/models: OpenAI-compatible, so RAG tools can use the served model directly. What is
OpenAI's (model ids, input types, its clients' habits) is decided here; the engine only embeds texts."""

from __future__ import annotations

import base64
from concurrent.futures import Future
from datetime import datetime

from fastapi import APIRouter, Depends, HTTPException, Request

from app.api.deps import get_engine, get_settings, require_read_key, wait_for
from app.batcher import Encoded
from app.encoder import TextKind
from app.engine import SearchEngine, check_count
from app.errors import InvalidRequest, documented
from app.schemas import Embedding, EmbeddingsRequest, EmbeddingsResponse, ModelCard, ModelList, Usage
from app.settings import Settings

router = APIRouter(tags=["embeddings"], dependencies=[Depends(require_read_key)])


PASSAGE_SUFFIX = ":passage"  # the model id that embeds with the passage prefix


def model_ids(engine: SearchEngine) -> dict[str, TextKind]:
    """The ids the served model answers to, with the prefix each applies: '<name>' embeds queries and
    '<name>:passage' passages, so a client that cannot send input_type (LangChain) can embed documents."""
    name = engine.model_name
    return {name: "query", name + PASSAGE_SUFFIX: "passage"}


def _model_cards(request: Request) -> dict[str, ModelCard]:
    """The served model's cards by id (one status read per request, not one per card)."""
    engine = get_engine(request)
    created = engine.status().model_created_at
    timestamp = int(datetime.fromisoformat(created).timestamp()) if created else 0
    return {model_id: ModelCard(id=model_id, created=timestamp) for model_id in model_ids(engine)}


def embed_inputs(engine: SearchEngine, settings: Settings, body: EmbeddingsRequest) -> Future:
    """Every check of an OpenAI-style request, then the future of ``Encoded``."""
    texts = [body.input] if isinstance(body.input, str) else body.input
    if not texts:
        raise InvalidRequest("input must be a text or a non-empty list of texts")
    if not all(isinstance(text, str) for text in texts):
        raise InvalidRequest(
            "token arrays are not supported: they are ids of OpenAI's tokenizer, not of this model's; send the "
            "texts (LangChain's OpenAIEmbeddings: check_embedding_ctx_length=False)"
        )
    check_count(texts, settings.max_batch_queries, "inputs")
    kinds = model_ids(engine)
    if body.model not in kinds:
        raise InvalidRequest(f"model {body.model!r} is not served here; this server serves {sorted(kinds)}")
    kind = kinds[body.model]
    input_type = body.input_type if "input_type" in body.model_fields_set else None
    if input_type is not None and input_type != kind and body.model != engine.model_name:
        raise InvalidRequest(f"model {body.model!r} embeds passages; input_type {input_type!r} contradicts it")
    if body.dimensions is not None and body.dimensions != engine.embedding_dim:
        raise InvalidRequest(f"dimensions must be {engine.embedding_dim} (this model does not shorten embeddings)")
    return engine.embed(texts, input_type or kind, body.truncate)


@router.get(
    "/v1/models",
    response_model=ModelList,
    summary="OpenAI-compatible: the served model ids",
    responses=documented(401, 403, 503, openai=True),
)
def list_models(request: Request) -> ModelList:
    return ModelList(data=list(_model_cards(request).values()))


@router.get(
    "/v1/models/{model_id}",
    response_model=ModelCard,
    summary="OpenAI-compatible: one served model id",
    responses=documented(401, 403, 404, 422, 503, openai=True),
)
def retrieve_model(model_id: str, request: Request) -> ModelCard:
    cards = _model_cards(request)
    if model_id not in cards:
        raise HTTPException(status_code=404, detail=f"model {model_id!r} is not served here")
    return cards[model_id]


@router.post(
    "/v1/embeddings",
    response_model=EmbeddingsResponse,
    summary="OpenAI-compatible embeddings",
    responses=documented(401, 403, 413, 422, 503, 504, openai=True, body=True),
)
async def embeddings(body: EmbeddingsRequest, request: Request) -> EmbeddingsResponse:
    engine, settings = get_engine(request), get_settings(request)
    encoded: Encoded = await wait_for(embed_inputs(engine, settings, body), settings)
    data = [
        Embedding(
            index=i,
            embedding=base64.b64encode(vector.astype("<f4").tobytes()).decode("ascii")
            if body.encoding_format == "base64"
            else vector.tolist(),
        )
        for i, vector in enumerate(encoded.embeddings)
    ]
    tokens = sum(encoded.token_counts)
    return EmbeddingsResponse(
        data=data, model=engine.model_name, usage=Usage(prompt_tokens=tokens, total_tokens=tokens)
    )
