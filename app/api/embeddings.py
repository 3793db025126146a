"""POST /v1/embeddings: OpenAI-compatible, so RAG tools can use the served model directly."""

from __future__ import annotations

import base64

from fastapi import APIRouter, Depends, Request

from app.api.deps import get_engine, get_settings, require_read_key, wait_for
from app.api.search import ERRORS
from app.batcher import Encoded
from app.engine import InvalidQuery
from app.schemas import Embedding, EmbeddingsRequest, EmbeddingsResponse, Usage

router = APIRouter(tags=["embeddings"], dependencies=[Depends(require_read_key)])


@router.post(
    "/v1/embeddings", response_model=EmbeddingsResponse, summary="OpenAI-compatible embeddings", responses=ERRORS
)
async def embeddings(body: EmbeddingsRequest, request: Request) -> EmbeddingsResponse:
    engine, settings = get_engine(request), get_settings(request)
    texts = [body.input] if isinstance(body.input, str) else body.input
    if not texts:
        raise InvalidQuery("input must be a text or a non-empty list of texts")
    if len(texts) > settings.max_batch_queries:
        raise InvalidQuery(f"{len(texts)} inputs in one call; the limit is {settings.max_batch_queries}")
    encoder = engine.require_encoder()
    served = encoder.manifest.name
    if body.model != served:
        raise InvalidQuery(f"model {body.model!r} is not served here; this server serves {served!r}")
    if body.dimensions is not None and body.dimensions != encoder.dim:
        raise InvalidQuery(f"dimensions must be {encoder.dim} (this model does not shorten embeddings)")
    encoded: Encoded = await wait_for(engine.embed(texts, body.input_type, body.truncate), settings)
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
