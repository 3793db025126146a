"""Liveness, readiness and Prometheus metrics."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from app.api.deps import get_engine
from app.errors import documented
from app.schemas import Health, Readiness

router = APIRouter(tags=["system"])


@router.get("/health", response_model=Health, summary="liveness: the process answers", responses=documented())
def health() -> Health:
    return Health(status="ok")


@router.get(
    "/ready",
    response_model=Readiness,
    summary="readiness: model and index loaded (503 until then)",
    responses={
        **documented(),
        503: {"description": "still loading, or loading failed (see error)", "model": Readiness},
    },
)
def ready(request: Request, response: Response) -> Readiness:
    engine = get_engine(request)
    if not engine.ready or engine.encoder is None or engine.collection is None:
        response.status_code = 503
        return Readiness(ready=False, error=engine.error)
    return Readiness(
        ready=True,
        model=engine.encoder.manifest.name,
        variant=engine.encoder.variant,
        providers=engine.encoder.providers,
        index_size=engine.collection.size,
        languages=engine.collection.languages,
        group_fields=engine.collection.group_fields,
        writable=engine.collection.writable,
        snapshot_error=engine.collection.snapshot_error,
        recovered_from=engine.collection.recovered_from,
    )


@router.get(
    "/metrics",
    summary="Prometheus metrics",
    response_class=Response,
    responses={
        **documented(),
        200: {"description": "Prometheus text format", "content": {"text/plain": {"schema": {"type": "string"}}}},
    },
)
def metrics(request: Request) -> Response:
    metrics = request.app.state.metrics
    metrics.refresh(get_engine(request))
    return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)
