"""POST /search and POST /search/batch: queries in any language, passages from the whole collection."""

from __future__ import annotations

import time
from functools import singledispatch

from fastapi import APIRouter, Depends, Request

from app.api.deps import get_engine, get_settings, require_read_key, wait_for
from app.corpus import Groups, Hit, Hits
from app.errors import documented
from app.schemas import (
    BatchSearchRequest,
    BatchSearchResponse,
    GroupMember,
    GroupResult,
    QueryResults,
    SearchRequest,
    SearchResponse,
    SearchResult,
)

router = APIRouter(tags=["search"], dependencies=[Depends(require_read_key)])
ERRORS = documented(401, 403, 422, 503, 504, body=True)


def _result(hit: Hit, rank: int) -> SearchResult:
    document = hit.document
    return SearchResult(
        id=document.id,
        text=document.text,
        lang=document.lang,
        score=round(hit.score, 6),
        rank=rank,
        metadata=document.metadata,
    )


@singledispatch
def _answer(found: object, group_size: int) -> list[SearchResult] | list[GroupResult]:
    raise TypeError(f"a search returned {type(found).__name__}")


@_answer.register
def _hit_results(hits: Hits, group_size: int) -> list[SearchResult]:
    return [_result(hit, rank) for rank, hit in enumerate(hits, start=1)]


@_answer.register
def _group_results(groups: Groups, group_size: int) -> list[GroupResult]:
    return [
        GroupResult(
            **_result(group.members[group.shown], rank).model_dump(),
            group=group.value,  # type: ignore[arg-type]
            best_score=round(group.best.score, 6),
            members=[
                GroupMember(id=m.document.id, lang=m.document.lang, score=round(m.score, 6))
                for m in group.members[:group_size]
            ],
            members_found=len(group.members),
        )
        for rank, group in enumerate(groups, start=1)
    ]


@router.post("/search", response_model=SearchResponse, summary="best passages for a query", responses=ERRORS)
async def search(body: SearchRequest, request: Request) -> SearchResponse:
    engine, started = get_engine(request), time.perf_counter()
    (found,) = await wait_for(engine.search([body.query], body.spec()), get_settings(request))
    return SearchResponse(
        results=_answer(found, body.group_size),
        query=body.query,
        top_k=body.top_k,
        offset=body.offset,
        below_min_score=found.below_min_score,
        languages=body.languages,
        group_by=body.group_by,
        model=engine.model_name,
        took_ms=round((time.perf_counter() - started) * 1000, 2),
    )


@router.post("/search/batch", response_model=BatchSearchResponse, summary="many queries in one call", responses=ERRORS)
async def search_batch(body: BatchSearchRequest, request: Request) -> BatchSearchResponse:
    engine, settings, started = get_engine(request), get_settings(request), time.perf_counter()
    found_lists = await wait_for(engine.search(body.queries, body.spec()), settings)
    return BatchSearchResponse(
        results=[
            QueryResults(query=query, results=_answer(found, body.group_size), below_min_score=found.below_min_score)
            for query, found in zip(body.queries, found_lists, strict=True)
        ],
        top_k=body.top_k,
        offset=body.offset,
        languages=body.languages,
        group_by=body.group_by,
        model=engine.model_name,
        took_ms=round((time.perf_counter() - started) * 1000, 2),
    )
