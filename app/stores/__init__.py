"""Where the documents live: the store interface (``base``), the embedded FAISS store (``embedded``) and Milvus
(``milvus``). ``open_store`` picks one from the settings."""

from __future__ import annotations

from pathlib import Path

from app.manifest import ManifestError, ModelManifest
from app.settings import Settings
from app.stores.base import Store, StoreHealth

__all__ = ["Store", "StoreHealth", "check_store", "encoded_with", "open_store"]


def encoded_with(settings: Settings) -> str | None:
    """The fingerprint of the model whose embeddings the store holds; None for a Milvus collection not made yet."""
    if settings.store == "milvus":
        from app.stores.milvus import milvus_store

        store = milvus_store(settings)
        try:
            identity = store.stored_identity()
        finally:
            store.close()
        return identity.model_fingerprint if identity else None
    from app.stores.embedded.index import readable_manifest

    return readable_manifest(settings.index_dir).model_fingerprint


def check_store(settings: Settings, model: ModelManifest, model_dir: Path) -> str:
    """Cheap start-up check that the store holds embeddings of ``model`` (FAISS: its manifest; Milvus: done when
    opened). Returns the variant the store was encoded with, when known."""
    if settings.store == "milvus":
        return ""
    from app.stores.embedded.index import readable_manifest

    index = readable_manifest(settings.index_dir)
    if index.model_fingerprint != model.fingerprint:
        raise ManifestError(
            f"index {settings.index_dir} was built by model '{index.model_name}' "
            f"(fingerprint {index.model_fingerprint[:12]}), but the service loads '{model.name}' from "
            f"{model_dir} (fingerprint {model.fingerprint[:12]}); rebuild the index with this model, or point "
            "SEARCH_MODEL_DIR / SEARCH_ONE_LANGUAGE_MODEL_DIR at the model that built it"
        )
    return index.model_variant


def open_store(settings: Settings, model: ModelManifest, variant: str) -> Store:
    """The configured store, loaded and checked against the model (``ManifestError`` when it was built by another)."""
    if settings.store == "milvus":
        from app.stores.milvus import CollectionIdentity, connect_milvus

        return connect_milvus(settings, CollectionIdentity.of_model(model, variant))
    from app.stores.embedded.collection import Collection

    return Collection(settings.index_dir, settings.snapshot_every)
