"""The FastAPI app factory: ``create_app(settings)``; ``app.cli serve`` runs it under uvicorn."""

from __future__ import annotations

import logging
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from app.api import router
from app.engine import SearchEngine
from app.errors import OPENAI_PREFIX, ServiceError, error_content
from app.limits import RequestBodyChecks
from app.logs import RequestIds
from app.metrics import Metrics, RecordMetrics
from app.settings import Settings

log = logging.getLogger(__name__)


def _validation_message(request: Request, exc: RequestValidationError) -> JSONResponse:
    errors = [
        {"loc": [str(p) for p in e.get("loc", ())], "msg": e.get("msg", ""), "type": e.get("type", "")}
        for e in exc.errors()
    ]
    message = "; ".join(f"{'.'.join(e['loc'][1:]) or 'body'}: {e['msg']}" for e in errors) or "invalid request"
    if request.url.path.startswith(OPENAI_PREFIX):
        param = ".".join(errors[0]["loc"][1:]) if errors else None
        return JSONResponse(status_code=422, content=error_content(request.url.path, 422, message, param))
    return JSONResponse(status_code=422, content={"detail": message, "errors": errors})


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    metrics = Metrics()
    engine = SearchEngine(settings, metrics)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine.check()  # a wrong path or a model/index mismatch stops start-up with a clear message
        loader = threading.Thread(target=engine.load, name="load-model-and-index", daemon=True)
        loader.start()
        yield
        await run_in_threadpool(loader.join)
        await run_in_threadpool(engine.close)  # snapshot, so the next start replays nothing

    app = FastAPI(
        title="Multilingual passage search",
        summary="Query in any language, get the best passages from a multilingual corpus.",
        lifespan=lifespan,
        generate_unique_id_function=lambda route: route.name,  # stable operation ids: the route functions' names
    )
    app.state.settings = settings
    app.state.engine = engine
    app.state.metrics = metrics
    app.include_router(router)
    app.add_middleware(
        RequestBodyChecks,
        max_bytes=settings.max_body_bytes,
        read_timeout_s=settings.body_timeout_s,
        deadline_s=settings.body_deadline_s,
    )
    app.add_middleware(RecordMetrics, metrics=metrics)
    if settings.cors_origins:  # off by default: only origins the operator names may call from a browser
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST", "DELETE"],
            allow_headers=["Authorization", "Content-Type", "X-Request-ID"],
            expose_headers=["X-Request-ID"],
        )
    app.add_middleware(RequestIds)  # outermost: every answer, errors of the other middleware included, has an id

    @app.exception_handler(RequestValidationError)
    async def on_validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        return _validation_message(request, exc)

    @app.exception_handler(StarletteHTTPException)
    async def on_http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        content = error_content(request.url.path, exc.status_code, str(exc.detail))
        return JSONResponse(status_code=exc.status_code, content=content, headers=exc.headers)

    @app.exception_handler(ServiceError)
    async def on_service_error(request: Request, exc: ServiceError) -> JSONResponse:
        headers = {"Retry-After": "5"} if exc.status == 503 else None
        content = error_content(request.url.path, exc.status, str(exc))
        return JSONResponse(status_code=exc.status, content=content, headers=headers)

    return app
