"""The FastAPI app factory: ``create_app(settings)``; ``app.cli serve`` runs it under uvicorn."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from app.api.routes import router
from app.engine import SearchEngine
from app.metrics import Metrics
from app.settings import Settings

log = logging.getLogger(__name__)


def _validation_message(exc: RequestValidationError) -> JSONResponse:
    errors = [
        {"loc": [str(p) for p in e.get("loc", ())], "msg": e.get("msg", ""), "type": e.get("type", "")}
        for e in exc.errors()
    ]
    message = "; ".join(f"{'.'.join(e['loc'][1:]) or 'body'}: {e['msg']}" for e in errors)
    return JSONResponse(status_code=422, content={"detail": message or "invalid request", "errors": errors})


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    engine = SearchEngine(settings)
    metrics = Metrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine.check()  # a wrong path or a model/index mismatch stops start-up with a clear message
        loader = threading.Thread(target=engine.load, name="load-model-and-index", daemon=True)
        loader.start()
        yield

    app = FastAPI(
        title="Multilingual passage search",
        summary="Query in any language, get the best passages from a multilingual corpus.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.engine = engine
    app.state.metrics = metrics
    app.include_router(router)

    @app.exception_handler(RequestValidationError)
    async def on_validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        return _validation_message(exc)

    @app.middleware("http")
    async def record_metrics(request: Request, call_next) -> Response:  # type: ignore[no-untyped-def]
        started = time.perf_counter()
        response = await call_next(request)
        route = request.scope.get("route")
        label = getattr(route, "path", "unmatched")
        metrics.requests.labels(request.method, label, str(response.status_code)).inc()
        metrics.latency.labels(request.method, label).observe(time.perf_counter() - started)
        if engine.ready and engine.index is not None:
            metrics.ready.set(1)
            metrics.index_documents.set(engine.index.size)
        return response

    return app
