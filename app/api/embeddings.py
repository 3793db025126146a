"""POST /v1/embeddings: OpenAI-compatible, so RAG tools can use the served model directly."""

from __future__ import annotations

import base64
from datetime import datetime

from fastapi import APIRouter, Depends, HTTPException, Request

from app.api.deps import get_engine, get_settings, require_read_key, wait_for
from app.batcher import Encoded
from app.errors import documented
from app.schemas import Embedding, EmbeddingsRequest, EmbeddingsResponse, ModelCard, ModelList, Usage

router = APIRouter(tags=["embeddings"], dependencies=[Depends(require_read_key)])


def _model_cards(request: Request) -> dict[str, ModelCard]:
    """The served model's cards by id (one status read per request, not one per card)."""
    engine = get_engine(request)
    created = engine.status().model_created_at
    timestamp = int(datetime.fromisoformat(created).timestamp()) if created else 0
    return {model_id: ModelCard(id=model_id, created=timestamp) for model_id in engine.model_ids()}


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
    engine = get_engine(request)
    input_type = body.input_type if "input_type" in body.model_fields_set else None
    future = engine.embed_inputs(body.input, body.model, input_type, body.dimensions, body.truncate)
    encoded: Encoded = await wait_for(future, get_settings(request))
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
