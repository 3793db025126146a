"""Limits on what clients send: request body checks as plain ASGI middleware, and the metadata a document may carry.

Size: a declared ``Content-Length`` over the limit is refused at once (413); a chunked body is counted as it
arrives and refused as soon as it passes the limit, so no request can make the server buffer more than the limit.
Encoding: a JSON body that is not UTF-8 gets a 400 naming the first bad byte (the framework's own answer would only
say that the body could not be parsed).
"""

from __future__ import annotations

import json
import math

from starlette.types import ASGIApp, Message, Receive, Scope, Send


class RequestBodyChecks:
    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_bytes):
            await self._refuse(send, declared.decode("latin-1"))
            return
        chunks: list[bytes] = []
        total = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            total += len(chunk)
            if total > self.max_bytes:
                await self._refuse(send, f"more than {total}")
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        content_type = dict(scope["headers"]).get(b"content-type", b"")
        if body and b"json" in content_type:
            try:
                body.decode("utf-8")
            except UnicodeDecodeError as exc:
                detail = f"request body is not valid UTF-8: byte {exc.start} is {body[exc.start]:#04x} ({exc.reason})"
                await self._answer(send, 400, detail)
                return
        delivered = False

        async def replay() -> Message:
            nonlocal delivered
            if not delivered:
                delivered = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def _refuse(self, send: Send, size: str) -> None:
        detail = f"request body of {size} bytes is over the {self.max_bytes}-byte limit (SEARCH_MAX_BODY_BYTES)"
        await self._answer(send, 413, detail)

    @staticmethod
    async def _answer(send: Send, status: int, detail: str) -> None:
        payload = json.dumps({"detail": detail}).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": payload})


# Deeper metadata is refused at the door: pydantic's serialiser stops at 255 nested levels, so a document stored
# deeper would make every response that carries it fail. Nobody filters or groups on anything nested anyway.
MAX_METADATA_DEPTH = 32


def metadata_problem(metadata: object, max_depth: int = MAX_METADATA_DEPTH) -> str | None:
    """Why ``metadata`` cannot be stored and served back as JSON (too deep, NaN or Infinity), or None."""
    pending: list[tuple[object, int, str]] = [(metadata, 1, "metadata")]
    while pending:
        value, depth, where = pending.pop()
        if isinstance(value, float) and not math.isfinite(value):
            return f"{where} is {value}; JSON has no NaN or Infinity"
        if isinstance(value, dict | list):
            if depth > max_depth:
                shown = where if len(where) <= 80 else where[:80] + "…"
                return f"metadata nests more than {max_depth} levels of objects and arrays (at {shown})"
            items = value.items() if isinstance(value, dict) else enumerate(value)
            pending += [(item, depth + 1, f"{where}[{key!r}]") for key, item in items]
    return None
