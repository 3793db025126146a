"""What routes share: the engine, awaiting its futures with the request timeout, and API-key checks."""

from __future__ import annotations

import asyncio
import hmac
from concurrent.futures import Future
from typing import Annotated, Any

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from app.engine import SearchEngine
from app.settings import Settings

bearer = HTTPBearer(auto_error=False, description="API key from SEARCH_WRITE_API_KEYS / SEARCH_READ_API_KEYS")
Credentials = Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]


def get_engine(request: Request) -> SearchEngine:
    return request.app.state.engine


def get_settings(request: Request) -> Settings:
    return request.app.state.settings


async def wait_for(future: Future, settings: Settings) -> Any:
    """Await work running on the batcher thread; 504 when it takes longer than the request timeout."""
    try:
        return await asyncio.wait_for(asyncio.wrap_future(future), settings.request_timeout_s)
    except TimeoutError as exc:
        raise HTTPException(
            status_code=504, detail=f"not answered within the {settings.request_timeout_s:g} s request timeout"
        ) from exc


def _key_matches(given: str, keys: list[str]) -> bool:
    # compare_digest against every key: no early exit that would leak which prefix matched
    return any([hmac.compare_digest(given.encode(), key.encode()) for key in keys])


def _unauthorized(message: str) -> HTTPException:
    return HTTPException(status_code=401, detail=message, headers={"WWW-Authenticate": "Bearer"})


# async although nothing awaits: FastAPI would run a plain function in its thread pool, a thread hop per request.
async def require_write_key(request: Request, credentials: Credentials) -> None:
    keys = get_settings(request).write_api_keys
    if credentials is None:
        raise _unauthorized("writes need an API key: send 'Authorization: Bearer <key>'")
    if not keys:
        raise HTTPException(status_code=403, detail="this server takes no writes: SEARCH_WRITE_API_KEYS is not set")
    if not _key_matches(credentials.credentials, keys):
        raise HTTPException(status_code=403, detail="this API key may not write")


async def require_read_key(request: Request, credentials: Credentials) -> None:
    settings = get_settings(request)
    if not settings.read_api_keys:
        return  # reads are open unless read keys are set
    if credentials is None:
        raise _unauthorized("reads need an API key on this server: send 'Authorization: Bearer <key>'")
    if not _key_matches(credentials.credentials, settings.read_api_keys + settings.write_api_keys):
        raise HTTPException(status_code=403, detail="this API key may not read")
