"""Limits on what clients send over HTTP: the request head (bytes, fields, time) and the body.

Head: ``bounded_http_protocol`` (431 over the size or field-count limit, 408 when it does not arrive in time).
Body size: a declared ``Content-Length`` over the limit is refused at once (413); a chunked body is counted as it
arrives and refused as soon as it passes the limit, so no request can make the server buffer more than the limit.
Body time: 408 when the body stalls between reads, or is not complete by a deadline (a slow drip).
Encoding: a JSON body that is not UTF-8 gets a 400 naming the first bad byte (the framework's own answer would only
say that the body could not be parsed).
"""

from __future__ import annotations

import asyncio
import json
from typing import TYPE_CHECKING

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.errors import error_content

if TYPE_CHECKING:
    from app.settings import Settings


class RequestBodyChecks:
    def __init__(self, app: ASGIApp, max_bytes: int, read_timeout_s: float = 30.0, deadline_s: float = 60.0) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.read_timeout_s = read_timeout_s  # between two reads
        self.deadline_s = deadline_s  # for the whole body: a client that drips a byte a second does not stall

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope["path"]  # (one middleware object serves every request: nothing per request on self)
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_bytes):
            await self._refuse(send, declared.decode("latin-1"), path)
            return
        chunks: list[bytes] = []
        total = 0
        deadline = asyncio.get_running_loop().time() + self.deadline_s
        while True:
            left = deadline - asyncio.get_running_loop().time()
            try:  # a client that stops sending, or sends slowly, holds a connection and a buffer: not for ever
                async with asyncio.timeout(min(self.read_timeout_s, left)):
                    message = await receive()
            except TimeoutError:
                if left <= self.read_timeout_s:
                    detail = (
                        f"request body not complete {self.deadline_s:g} s after the request began "
                        f"({total} bytes received; SEARCH_BODY_DEADLINE_S)"
                    )
                else:
                    detail = f"request body stalled for {self.read_timeout_s:g} s after {total} bytes"
                await self._answer(send, 408, detail, path)
                return
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            total += len(chunk)
            if total > self.max_bytes:
                await self._refuse(send, f"more than {total}", path)
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
                await self._answer(send, 400, detail, path)
                return
        delivered = False

        async def replay() -> Message:
            nonlocal delivered
            if not delivered:
                delivered = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def _refuse(self, send: Send, size: str, path: str) -> None:
        detail = f"request body of {size} bytes is over the {self.max_bytes}-byte limit (SEARCH_MAX_BODY_BYTES)"
        await self._answer(send, 413, detail, path)

    @staticmethod
    async def _answer(send: Send, status: int, detail: str, path: str) -> None:
        payload = json.dumps(error_content(path, status, detail)).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": payload})


class HeadTooLarge(Exception):
    """The request line and headers pass a limit (raised inside the HTTP parser to stop it)."""


def bounded_http_protocol(settings: Settings) -> type[asyncio.Protocol]:
    """uvicorn's httptools protocol with limits on the request head: bytes, header fields and time to arrive.

    httptools keeps a header in memory until it is complete, and uvicorn sets no limit, so one unauthenticated
    client could send a 64 MiB header. The bytes are counted as they arrive, before the parser sees
    them; the head must also arrive within ``header_timeout_s`` of its first byte (or of the connection).
    """
    from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

    max_bytes, max_fields, timeout = settings.max_header_bytes, settings.max_headers, settings.header_timeout_s

    class BoundedHttpToolsProtocol(HttpToolsProtocol):
        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._next_head()
            self._start_head_timer()  # a connection that never sends a byte is closed too

        def _next_head(self) -> None:
            self._in_head, self._head_bytes, self._tail, self._head_timer = True, 0, b"", None
            self._head_refusal = ""

        def _start_head_timer(self) -> None:
            self._head_timer = self.loop.call_later(timeout, self._head_too_slow)

        def _end_head(self) -> None:
            self._in_head = False
            if self._head_timer is not None:
                self._head_timer.cancel()
                self._head_timer = None

        def data_received(self, data: bytes) -> None:
            if self._in_head:
                if self._head_timer is None:
                    self._start_head_timer()
                window = self._tail + data
                end = window.find(b"\r\n\r\n")  # the blank line that ends the head
                self._head_bytes += len(data) if end < 0 else max(0, end + 4 - len(self._tail))
                self._tail = window[-3:]
                if self._head_bytes > max_bytes:
                    self._refuse(431, f"request line and headers are over the {max_bytes}-byte limit")
                    return
            super().data_received(data)

        def on_header(self, name: bytes, value: bytes) -> None:
            if len(self.headers) >= max_fields:
                # httptools turns any error raised here into its parser error, which uvicorn answers with a 400
                self._head_refusal = f"more than {max_fields} header fields"
                raise HeadTooLarge(self._head_refusal)
            super().on_header(name, value)

        def send_400_response(self, msg: str) -> None:
            if self._head_refusal:
                self._refuse(431, self._head_refusal)
            else:
                super().send_400_response(msg)

        def on_headers_complete(self) -> None:
            self._end_head()
            super().on_headers_complete()

        def on_message_complete(self) -> None:
            super().on_message_complete()
            self._next_head()  # keep-alive: the next request's head is bounded again, timed from its first byte

        def connection_lost(self, exc: Exception | None) -> None:
            self._end_head()
            super().connection_lost(exc)

        def _head_too_slow(self) -> None:
            self._head_timer = None
            self._refuse(408, f"request line and headers not received within {timeout:g} s")

        def _refuse(self, status: int, detail: str) -> None:
            self._end_head()
            if self.transport.is_closing():
                return
            body = json.dumps({"detail": detail}).encode()
            head = [STATUS_LINE[status], b"content-type: application/json\r\n", b"connection: close\r\n"]
            head.append(b"content-length: " + str(len(body)).encode() + b"\r\n\r\n")
            self.transport.write(b"".join(head) + body)
            self.transport.close()

    return BoundedHttpToolsProtocol
