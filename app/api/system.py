"""Liveness, readiness and Prometheus metrics."""

from __future__ import annotations

from dataclasses import asdict

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
    status = get_engine(request).status()
    if not status.ready:
        response.status_code = 503
    return Readiness(**{key: value for key, value in asdict(status).items() if key in Readiness.model_fields})


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
    metrics.refresh(get_engine(request).status())
    return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)
