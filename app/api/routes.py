"""HTTP routes: thin translations between JSON and the engine."""

from __future__ import annotations

import time

from fastapi import APIRouter, HTTPException, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from app.engine import InvalidQuery, NotReady, SearchEngine
from app.metrics import Metrics
from app.schemas import Health, Readiness, SearchRequest, SearchResponse, SearchResult

router = APIRouter()


def _engine(request: Request) -> SearchEngine:
    return request.app.state.engine


@router.get("/health", response_model=Health, summary="liveness: the process answers")
def health() -> Health:
    return Health(status="ok")


@router.get("/ready", response_model=Readiness, summary="readiness: model and index loaded (503 until then)")
def ready(request: Request, response: Response) -> Readiness:
    engine = _engine(request)
    if not engine.ready or engine.encoder is None or engine.index is None:
        response.status_code = 503
        return Readiness(ready=False, error=engine.error)
    return Readiness(
        ready=True,
        model=engine.encoder.manifest.name,
        variant=engine.encoder.variant,
        providers=engine.encoder.providers,
        index_size=engine.index.size,
        languages=engine.index.languages,
    )


@router.get("/metrics", summary="Prometheus metrics", response_class=Response)
def metrics(request: Request) -> Response:
    registry = request.app.state.metrics.registry
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)


@router.post(
    "/search",
    response_model=SearchResponse,
    summary="best passages for a query, in any language",
    responses={422: {"description": "invalid request"}, 503: {"description": "not ready"}},
)
def search(body: SearchRequest, request: Request) -> SearchResponse:
    engine = _engine(request)
    metrics: Metrics = request.app.state.metrics
    started = time.perf_counter()
    try:
        outcome = engine.search(body.query, body.top_k, body.languages)
    except InvalidQuery as exc:
        raise HTTPException(status_code=422, detail=str(exc)) from exc
    except NotReady as exc:
        raise HTTPException(status_code=503, detail=str(exc), headers={"Retry-After": "5"}) from exc
    metrics.encode_latency.observe(outcome.encode_seconds)
    assert engine.encoder is not None
    return SearchResponse(
        results=[
            SearchResult(
                id=hit.document.id,
                text=hit.document.text,
                lang=hit.document.lang,
                score=round(hit.score, 6),
                rank=rank,
                metadata=hit.document.metadata,
            )
            for rank, hit in enumerate(outcome.hits, start=1)
        ],
        query=body.query,
        top_k=body.top_k,
        languages=body.languages,
        model=engine.encoder.manifest.name,
        took_ms=round((time.perf_counter() - started) * 1000, 2),
    )
