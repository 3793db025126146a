"""The documents API: upsert a batch (long documents split into passages), get a passage, delete a document with
its passages, delete many by id or by filter, count and list (scroll) by filter. Writes need a write key and are
durable when acknowledged."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request
from fastapi.concurrency import run_in_threadpool

from app.api.deps import get_engine, get_settings, require_read_key, require_write_key, wait_for
from app.errors import InvalidRequest, UnsupportedMediaType, documented
from app.ingest.files import MEDIA_TYPES, UnreadableFile, document_text
from app.ingest.sources import SourceDocument
from app.schemas import (
    DOCUMENT_ID_PATTERN,
    BulkDeleteRequest,
    BulkDeleteResponse,
    CountRequest,
    CountResponse,
    DeleteResponse,
    DocumentId,
    DocumentOut,
    LanguageCode,
    ScrollRequest,
    ScrollResponse,
    UpsertRequest,
    UpsertResponse,
)

router = APIRouter(tags=["documents"])
PathId = Path(description="document id", pattern=DOCUMENT_ID_PATTERN)


@router.post(
    "/documents",
    response_model=UpsertResponse,
    summary="add or replace documents; searchable and durable once acknowledged",
    dependencies=[Depends(require_write_key)],
    responses=documented(401, 403, 409, 422, 503, 504, 507, body=True),
)
async def upsert_documents(body: UpsertRequest, request: Request) -> UpsertResponse:
    documents = [SourceDocument(d.id, d.text, d.lang, d.title, d.metadata) for d in body.documents]
    return await write_documents(request, documents, body.split, body.truncate)


@router.post(
    "/documents/file",
    response_model=UpsertResponse,
    summary="add or replace one document from a file (PDF, HTML, Markdown or text, by Content-Type): its main text "
    "extracted and split into passages",
    dependencies=[Depends(require_write_key)],
    responses=documented(401, 403, 409, 415, 422, 503, 504, 507, body=True),
)
async def upsert_file(
    request: Request,
    doc_id: Annotated[DocumentId, Query(alias="id", description="the document's id")],
    lang: Annotated[LanguageCode | None, Query(description="BCP-47 tag; detected when missing")] = None,
    title: Annotated[str | None, Query(max_length=1000, description="default: the file's own title")] = None,
) -> UpsertResponse:
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    suffix = MEDIA_TYPES.get(media_type)
    if suffix is None:
        known = ", ".join(MEDIA_TYPES)
        raise UnsupportedMediaType(f"Content-Type {media_type or '(none)'!r} is not a file type read here: {known}")
    data = await request.body()
    try:
        extracted = await run_in_threadpool(document_text, data, suffix)
    except UnreadableFile as exc:
        raise InvalidRequest(f"the file cannot be read: {exc}") from exc
    metadata = {"format": suffix.lstrip(".")}
    document = SourceDocument(doc_id, extracted.text, lang, title or extracted.title, metadata)
    return await write_documents(request, [document], split=True, truncate=False)


async def write_documents(
    request: Request, documents: list[SourceDocument], split: bool, truncate: bool
) -> UpsertResponse:
    """Documents -> passages -> embeddings -> one durable write that also drops their stale passages."""
    engine, settings = get_engine(request), get_settings(request)
    engine.require_writable()
    passages = await run_in_threadpool(engine.document_passages, documents, split)  # tokenizer, detector
    encoded = await wait_for(engine.embed_passages(passages, truncate), settings)
    doc_ids = [d.id for d in documents]
    seq = await run_in_threadpool(engine.upsert, passages, encoded, doc_ids)  # fsync: off the event loop
    request.app.state.metrics.writes.labels("upsert").inc(len(passages))
    return UpsertResponse(
        upserted=len(documents),
        ids=doc_ids,
        passages=len(passages),
        passage_ids=[p.id for p in passages],
        index_size=engine.size(),
        log_seq=seq,
    )


@router.get(
    "/documents/{doc_id:path}",
    response_model=DocumentOut,
    summary="one document by id",
    dependencies=[Depends(require_read_key)],
    responses=documented(401, 403, 404, 422, 503),
)
def get_document(request: Request, doc_id: DocumentId = PathId) -> DocumentOut:
    document = get_engine(request).get(doc_id)
    if document is None:
        raise HTTPException(status_code=404, detail=f"no document with id {doc_id!r}")
    return DocumentOut(id=document.id, text=document.text, lang=document.lang, metadata=document.metadata)


@router.delete(
    "/documents/{doc_id:path}",
    response_model=DeleteResponse,
    summary="delete one document with all its passages; durable once acknowledged",
    dependencies=[Depends(require_write_key)],
    responses=documented(401, 403, 404, 409, 422, 503, 507),
)
def delete_document(request: Request, doc_id: DocumentId = PathId) -> DeleteResponse:
    engine = get_engine(request)
    engine.require_writable()
    deleted = engine.delete([doc_id])
    if not deleted:
        raise HTTPException(status_code=404, detail=f"no document with id {doc_id!r}")
    request.app.state.metrics.writes.labels("delete").inc(len(deleted))
    return DeleteResponse(deleted=doc_id, passages=len(deleted), index_size=engine.size())


@router.post(
    "/documents/delete",
    response_model=BulkDeleteResponse,
    summary="delete documents by id, or every passage a filter and/or languages select; one durable write",
    dependencies=[Depends(require_write_key)],
    responses=documented(401, 403, 409, 422, 503, 507, body=True),
)
async def delete_documents(body: BulkDeleteRequest, request: Request) -> BulkDeleteResponse:
    engine = get_engine(request)
    if body.ids is not None:
        deleted = await run_in_threadpool(engine.delete, body.ids)  # fsync: off the event loop
        passages, passage_ids = len(deleted), deleted
    else:
        passages, passage_ids = await run_in_threadpool(engine.delete_where, body.languages, body.where()), None
    request.app.state.metrics.writes.labels("delete").inc(passages)
    return BulkDeleteResponse(passages=passages, passage_ids=passage_ids, index_size=engine.size())


@router.post(
    "/documents/count",
    response_model=CountResponse,
    summary="how many passages a filter and/or languages select",
    dependencies=[Depends(require_read_key)],
    responses=documented(401, 403, 422, 503, body=True),
)
async def count_documents(body: CountRequest, request: Request) -> CountResponse:
    engine = get_engine(request)
    return CountResponse(count=await run_in_threadpool(engine.count, body.languages, body.where()))


@router.post(
    "/documents/scroll",
    response_model=ScrollResponse,
    summary="list passages in id order, a page at a time (for export); optionally those a filter selects",
    dependencies=[Depends(require_read_key)],
    responses=documented(401, 403, 422, 503, body=True),
)
async def scroll_documents(body: ScrollRequest, request: Request) -> ScrollResponse:
    engine = get_engine(request)
    page = await run_in_threadpool(engine.scroll, body.limit, body.cursor, body.languages, body.where())
    return ScrollResponse(
        documents=[DocumentOut(id=d.id, text=d.text, lang=d.lang, metadata=d.metadata) for d in page],
        next_cursor=page[-1].id if len(page) == body.limit else None,
    )
