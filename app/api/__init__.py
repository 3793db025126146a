"""HTTP layer: routes grouped by resource, plus the dependencies they share."""

from fastapi import APIRouter

from app.api import backup, documents, embeddings, page, search, system

router = APIRouter()
for module in (page, system, search, embeddings, documents, backup):
    router.include_router(module.router)
