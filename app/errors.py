"""Errors in one place: the service's error types, each with its HTTP status, and the shape of an error answer:
``{"detail": ...}`` everywhere, OpenAI's ``{"error": {...}}`` on the ``/v1`` routes, so that OpenAI clients (the
official SDK, LangChain) show our message instead of a bare status."""

from __future__ import annotations

from typing import Any


class ServiceError(Exception):
    """A request that cannot be served as asked; ``status`` is its HTTP status, the message says why."""

    status = 500


class InvalidRequest(ServiceError, ValueError):
    """Well-formed JSON that cannot be served as asked (a limit, an unknown language or model, ...)."""

    status = 422


class TooLong(InvalidRequest):
    """A text has more tokens than allowed and the request did not ask for truncation."""


class GroupingError(InvalidRequest):
    """``group_by`` names a field that cannot group (unknown, or not a scalar)."""


class RequestTooLarge(ServiceError, ValueError):
    """One request would encode more tokens than a request may (split it)."""

    status = 413


class UnsupportedMediaType(ServiceError, ValueError):
    """A file of a type this service does not read."""

    status = 415


class ReadOnlyIndex(ServiceError, RuntimeError):
    """The index cannot take writes (read-only volume, plain folder; the message says why and what to do)."""

    status = 409


class NotOnThisStore(ServiceError, RuntimeError):
    """The configured store does not do this (e.g. a backup of Milvus, which has its own tools)."""

    status = 409


class NotReady(ServiceError, RuntimeError):
    """Model or index still loading (or failed to load)."""

    status = 503


class Overloaded(ServiceError, RuntimeError):
    """The encode queue is full; the client should retry shortly."""

    status = 503


class WalBroken(ServiceError, OSError):
    """A failed append could not be undone: the log takes no more writes until the server restarts."""

    status = 503


class StoreUnavailable(ServiceError, RuntimeError):
    """The search store (a Milvus server) did not answer or refused the call; retry, or see its logs."""

    status = 503


class StorageFull(ServiceError, RuntimeError):
    """The disk under the log is full: the write was not made (nothing of it is logged or applied)."""

    status = 507


OPENAI_PREFIX = "/v1/"
OPENAI_ERROR_TYPES = {401: "authentication_error", 403: "permission_error", 429: "rate_limit_error"}


def openai_error_type(status: int) -> str:
    if status in OPENAI_ERROR_TYPES:
        return OPENAI_ERROR_TYPES[status]
    return "server_error" if status >= 500 else "invalid_request_error"


def error_content(path: str, status: int, message: str, param: str | None = None, code: str | None = None) -> dict:
    """The JSON body of an error answer for a request to ``path``."""
    if not path.startswith(OPENAI_PREFIX):
        return {"detail": message}
    error: dict[str, Any] = {"message": message, "type": openai_error_type(status), "param": param, "code": code}
    return {"error": error}


# What each status means, for the OpenAPI document (the same words on every route that can answer it).
STATUS_MEANING = {
    400: "the body is not UTF-8 (the first bad byte is named)",
    401: "an API key is required but missing",
    403: "the API key is wrong, or may not do this",
    404: "no such item",
    408: "the request head or body did not arrive in time",
    409: "this index takes no writes (read-only volume or a plain folder), or its store does not do this, "
    "with the reason",
    413: "the body is over SEARCH_MAX_BODY_BYTES, or the request would encode more than SEARCH_MAX_REQUEST_TOKENS",
    415: "the Content-Type is not a file type this service reads",
    422: "the request is invalid (the message says why)",
    431: "the request line and headers are over SEARCH_MAX_HEADER_BYTES or SEARCH_MAX_HEADERS",
    503: "not ready, overloaded (retry after Retry-After), the log refuses writes until a restart, or the Milvus "
    "store did not answer",
    504: "not answered within SEARCH_REQUEST_TIMEOUT_S",
    507: "the index's disk is full: the write was not made",
}
ANY_REQUEST = (408, 431)  # refused before routing: any route can answer them
WITH_BODY = (400, 413)  # the body checks


def documented(*statuses: int, openai: bool = False, body: bool = False) -> dict[int | str, dict[str, Any]]:
    """``responses=`` for a route: each status with its meaning and its error schema."""
    from app.schemas import ErrorBody, OpenAIErrorBody, ValidationErrorBody

    every = sorted({*statuses, *ANY_REQUEST, *(WITH_BODY if body else ())})
    schema_of = {422: ValidationErrorBody} if not openai else {}
    return {
        status: {
            "description": STATUS_MEANING[status],
            "model": schema_of.get(status, OpenAIErrorBody if openai else ErrorBody),
        }
        for status in every
    }
