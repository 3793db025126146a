"""The shape of an error answer, in one place: ``{"detail": ...}`` everywhere, OpenAI's ``{"error": {...}}`` on the
``/v1`` routes, so that OpenAI clients (the official SDK, LangChain) show our message instead of a bare status."""

from __future__ import annotations

from typing import Any

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
