"""POST /backup: the index as one tar archive (snapshot files and their checksums), consistent at one log sequence,
taken while the service keeps answering and writing. Restore it with ``polyglot-search restore``."""

from __future__ import annotations

import shutil

from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import StreamingResponse

from app.api.deps import get_engine, require_write_key
from app.errors import documented
from app.stores.embedded.backup import archive_size, tar_stream

router = APIRouter(tags=["backup"])


@router.post(
    "/backup",
    summary="a backup of the index: a tar of its snapshot files with SHA256SUMS, at the log sequence in "
    "X-Log-Seq (embedded store; Milvus has its own tools)",
    dependencies=[Depends(require_write_key)],
    response_class=StreamingResponse,
    responses={
        **documented(401, 403, 409, 503, 507),
        200: {"description": "the archive", "content": {"application/x-tar": {"schema": {"type": "string"}}}},
    },
)
async def backup(request: Request) -> StreamingResponse:
    folder, manifest = await run_in_threadpool(get_engine(request).backup)
    try:
        size = archive_size(folder)
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    name = f"{manifest.model_name}-{manifest.size}-seq{manifest.wal_seq}.tar".replace("/", "_")
    headers = {
        "Content-Disposition": f'attachment; filename="{name}"',
        "Content-Length": str(size),
        "X-Log-Seq": str(manifest.wal_seq),
        "X-Model-Fingerprint": manifest.model_fingerprint,
    }
    return StreamingResponse(tar_stream(folder, remove=True), media_type="application/x-tar", headers=headers)
