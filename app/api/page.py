"""GET /: the search page, one static file served by the app itself (no build step, no CDN, works offline)."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import HTMLResponse

from app.errors import documented

PAGE = Path(__file__).resolve().parent.parent / "static" / "index.html"
_HTML = PAGE.read_text(encoding="utf-8")

router = APIRouter(include_in_schema=False)


@router.get("/", response_class=HTMLResponse, summary="the search page", responses=documented())
async def page() -> HTMLResponse:
    return HTMLResponse(_HTML, headers={"Cache-Control": "no-cache"})
