"""The documents API: upsert a batch (long documents split into passages), get a passage, delete a document with
its passages. Writes need a write key and are durable when acknowledged."""

from __future__ import annotations

from fastapi import APIRouter, Depends, HTTPException, Path, Request
from fastapi.concurrency import run_in_threadpool

from app.api.deps import get_engine, get_settings, require_read_key, require_write_key, wait_for
from app.errors import documented
from app.ingest.sources import SourceDocument
from app.schemas import DOCUMENT_ID_PATTERN, DeleteResponse, DocumentId, DocumentOut, UpsertRequest, UpsertResponse

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
    engine, settings = get_engine(request), get_settings(request)
    engine.require_writable()
    documents = [SourceDocument(d.id, d.text, d.lang, d.title, d.metadata) for d in body.documents]
    passages = await run_in_threadpool(engine.document_passages, documents, body.split)  # tokenizer, detector
    encoded = await wait_for(engine.embed_passages(passages, body.truncate), settings)
    doc_ids = [d.id for d in body.documents]
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
    deleted = engine.delete(doc_id)
    if not deleted:
        raise HTTPException(status_code=404, detail=f"no document with id {doc_id!r}")
    request.app.state.metrics.writes.labels("delete").inc(len(deleted))
    return DeleteResponse(deleted=doc_id, passages=len(deleted), index_size=engine.size())
