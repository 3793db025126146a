"""The documents API: upsert a batch, get one, delete one. Writes need a write key and are durable when acknowledged."""

from __future__ import annotations

from fastapi import APIRouter, Depends, HTTPException, Path, Request
from fastapi.concurrency import run_in_threadpool

from app.api.deps import get_engine, get_settings, require_read_key, require_write_key, wait_for
from app.corpus import Document
from app.errors import documented
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
    documents = [Document(d.id, d.text, d.lang, d.metadata) for d in body.documents]
    encoded = await wait_for(engine.embed_documents(documents, body.truncate), settings)
    seq = await run_in_threadpool(engine.upsert, documents, encoded)  # fsync: off the event loop
    metrics = request.app.state.metrics
    metrics.writes.labels("upsert").inc(len(documents))
    return UpsertResponse(upserted=len(documents), ids=[d.id for d in documents], index_size=engine.size(), log_seq=seq)


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
    summary="delete one document; durable once acknowledged",
    dependencies=[Depends(require_write_key)],
    responses=documented(401, 403, 404, 409, 422, 503, 507),
)
def delete_document(request: Request, doc_id: DocumentId = PathId) -> DeleteResponse:
    engine = get_engine(request)
    engine.require_writable()
    if not engine.delete(doc_id):
        raise HTTPException(status_code=404, detail=f"no document with id {doc_id!r}")
    request.app.state.metrics.writes.labels("delete").inc()
    return DeleteResponse(deleted=doc_id, index_size=engine.size())
