"""Where the documents live: the store interface (``base``), the embedded FAISS store (``embedded``) and Milvus
(``milvus``). ``open_store`` picks one from the settings."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from app.manifest import ManifestError, ModelManifest
from app.settings import Settings
from app.stores.base import Store, StoreHealth

__all__ = ["Store", "StoreHealth", "StoredEmbeddings", "check_index", "open_store", "stored_embeddings"]


@dataclass(frozen=True)
class StoredEmbeddings:
    """What the store records about the model that encoded it: read once at start-up, for choosing the model and
    for checking it."""

    model_fingerprint: str | None  # None: a Milvus collection not made yet
    model_name: str = ""
    model_variant: str = ""


def stored_embeddings(settings: Settings) -> StoredEmbeddings:
    if settings.store == "milvus":
        from app.stores.milvus import milvus_store

        store = milvus_store(settings)
        try:
            identity = store.stored_identity()
        finally:
            store.close()
        return StoredEmbeddings(identity.model_fingerprint if identity else None)
    from app.stores.embedded.index import readable_manifest

    index = readable_manifest(settings.index_dir)
    return StoredEmbeddings(index.model_fingerprint, index.model_name, index.model_variant)


def check_index(index_dir: Path, stored: StoredEmbeddings, model: ModelManifest, model_dir: Path) -> str:
    """Cheap start-up check that an embedded index holds embeddings of ``model`` (Milvus checks its collection when
    opened). Returns the variant the index was encoded with."""
    if stored.model_fingerprint != model.fingerprint:
        raise ManifestError(
            f"index {index_dir} was built by model '{stored.model_name}' "
            f"(fingerprint {(stored.model_fingerprint or '')[:12]}), but the service loads '{model.name}' from "
            f"{model_dir} (fingerprint {model.fingerprint[:12]}); rebuild the index with this model, or point "
            "SEARCH_MODEL_DIR / SEARCH_ONE_LANGUAGE_MODEL_DIR at the model that built it"
        )
    return stored.model_variant


def open_store(settings: Settings, model: ModelManifest, variant: str) -> Store:
    """The configured store, loaded and checked against the model (``ManifestError`` when it was built by another)."""
    if settings.store == "milvus":
        from app.stores.milvus import CollectionIdentity, connect_milvus

        return connect_milvus(settings, CollectionIdentity.of_model(model, variant))
    from app.stores.embedded.collection import Collection
    from app.stores.embedded.index import GraphTuning

    tuning = GraphTuning(settings.graph_auto_from, settings.graph_exact_below, settings.graph_ef_search)
    return Collection(settings.index_dir, settings.snapshot_every, tuning)
