"""POST /v1/embeddings: OpenAI-compatible, so RAG tools can use the served model directly."""

from __future__ import annotations

import base64
from datetime import datetime

from fastapi import APIRouter, Depends, HTTPException, Request

from app.api.deps import get_engine, get_settings, require_read_key, wait_for
from app.batcher import Encoded
from app.errors import InvalidRequest, documented
from app.schemas import Embedding, EmbeddingsRequest, EmbeddingsResponse, ModelCard, ModelList, Usage

router = APIRouter(tags=["embeddings"], dependencies=[Depends(require_read_key)])
PASSAGE_SUFFIX = ":passage"


def model_ids(served: str) -> dict[str, str]:
    """The ids under which the served model is listed, by the prefix they apply: '<name>' embeds queries and
    '<name>:passage' passages, so a client that cannot send input_type (LangChain) can still embed documents."""
    return {"query": served, "passage": served + PASSAGE_SUFFIX}


def _model_card(model_id: str, request: Request) -> ModelCard:
    created = get_engine(request).status().model_created_at
    return ModelCard(id=model_id, created=int(datetime.fromisoformat(created).timestamp()) if created else 0)


@router.get(
    "/v1/models",
    response_model=ModelList,
    summary="OpenAI-compatible: the served model ids",
    responses=documented(401, 403, 503, openai=True),
)
def list_models(request: Request) -> ModelList:
    served = get_engine(request).model_name
    return ModelList(data=[_model_card(model_id, request) for model_id in model_ids(served).values()])


@router.get(
    "/v1/models/{model_id}",
    response_model=ModelCard,
    summary="OpenAI-compatible: one served model id",
    responses=documented(401, 403, 404, 422, 503, openai=True),
)
def retrieve_model(model_id: str, request: Request) -> ModelCard:
    served = get_engine(request).model_name
    if model_id not in model_ids(served).values():
        raise HTTPException(status_code=404, detail=f"model {model_id!r} is not served here")
    return _model_card(model_id, request)


@router.post(
    "/v1/embeddings",
    response_model=EmbeddingsResponse,
    summary="OpenAI-compatible embeddings",
    responses=documented(401, 403, 413, 422, 503, 504, openai=True, body=True),
)
async def embeddings(body: EmbeddingsRequest, request: Request) -> EmbeddingsResponse:
    engine, settings = get_engine(request), get_settings(request)
    texts = [body.input] if isinstance(body.input, str) else body.input
    if not texts:
        raise InvalidRequest("input must be a text or a non-empty list of texts")
    if not all(isinstance(text, str) for text in texts):
        raise InvalidRequest(
            "token arrays are not supported: they are ids of OpenAI's tokenizer, not of this model's; send the "
            "texts (LangChain's OpenAIEmbeddings: check_embedding_ctx_length=False)"
        )
    if len(texts) > settings.max_batch_queries:
        raise InvalidRequest(f"{len(texts)} inputs in one call; the limit is {settings.max_batch_queries}")
    served = engine.model_name
    kinds = {model_id: kind for kind, model_id in model_ids(served).items()}
    if body.model not in kinds:
        raise InvalidRequest(f"model {body.model!r} is not served here; this server serves {sorted(kinds)}")
    kind = kinds[body.model]
    if "input_type" in body.model_fields_set and body.input_type != kind and body.model != served:
        raise InvalidRequest(f"model {body.model!r} embeds passages; input_type {body.input_type!r} contradicts it")
    if "input_type" in body.model_fields_set:
        kind = body.input_type
    if body.dimensions is not None and body.dimensions != engine.embedding_dim:
        raise InvalidRequest(f"dimensions must be {engine.embedding_dim} (this model does not shorten embeddings)")
    encoded: Encoded = await wait_for(engine.embed(texts, kind, body.truncate), settings)  # type: ignore[arg-type]
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
    return EmbeddingsResponse(data=data, model=served, usage=Usage(prompt_tokens=tokens, total_tokens=tokens))
