"""The manifests: the one contract between `training/` (which writes them) and `app/` (which reads them).

A model folder holds ``manifest.json`` beside ``tokenizer.json`` and ``onnx/``; an index folder holds its own
``manifest.json`` naming the model (by fingerprint) that encoded it.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field

MODEL_MANIFEST = "manifest.json"
INDEX_MANIFEST = "manifest.json"
Variant = Literal["fp32", "int8"]
M = TypeVar("M", bound=BaseModel)


class ManifestError(RuntimeError):
    """A model or index folder is missing, incomplete or does not match."""


class ModelManifest(BaseModel):
    model_config = ConfigDict(extra="allow", protected_namespaces=())

    format_version: int = 1
    name: str
    source: str = Field(description="hub id or folder the weights came from")
    fingerprint: str = Field(description="sha256 of the fp32 ONNX file")
    embedding_dim: int
    pooling: Literal["mean"] = "mean"
    normalize: bool = True
    query_prefix: str = ""
    passage_prefix: str = ""
    max_length: int
    tokenizer_file: str = "tokenizer.json"
    onnx_fp32: str = "onnx/model.onnx"
    onnx_int8: str | None = "onnx/model.int8.onnx"
    int8_servable: bool = False
    default_variant: Variant = "fp32"
    parity: dict = Field(default_factory=dict)
    created_at: str = ""
    base_model: dict | None = Field(None, description="with a merged adapter: the base's source and weights sha256")
    adapter: dict | None = Field(None, description="a LoRA adapter merged into the base: path, sha256, rank, targets")
    optimizations: dict = Field(
        default_factory=dict, description="graph optimisations applied per variant, and the ones measured and not kept"
    )

    def onnx_path(self, model_dir: Path, variant: Variant) -> Path:
        relative = self.onnx_fp32 if variant == "fp32" else self.onnx_int8
        if relative is None:
            raise ManifestError(f"{model_dir}: no {variant} ONNX model was exported")
        return model_dir / relative


class IndexManifest(BaseModel):
    model_config = ConfigDict(extra="allow", protected_namespaces=())

    format_version: int = Field(2, description="2: the folder holds SHA256SUMS of its files")
    model_name: str
    model_fingerprint: str
    model_variant: Variant
    embedding_dim: int
    normalized: bool = Field(True, description="every stored vector is unit length (checked when loaded)")
    index_type: Literal["flat", "hnsw", "auto"] = Field(
        "flat", description="flat: exact search; hnsw: an approximate graph too; auto: the graph over a size"
    )
    graph: dict | None = Field(None, description="the approximate graph's efSearch and the recall it measured")
    size: int
    languages: dict[str, int] = Field(default_factory=dict)
    corpus: str = ""
    created_at: str = ""
    build_seconds: float = 0.0
    wal_seq: int = Field(0, description="last write-ahead-log record this snapshot holds")
    passage_tokens: int | None = Field(None, description="documents were split into passages of at most this")
    passage_overlap_tokens: int = 0
    model_choice: str = Field("", description="why the model that encoded the corpus was chosen")


def read_manifest(folder: Path, cls: type[M], what: str) -> M:
    path = folder / MODEL_MANIFEST
    if not folder.is_dir():
        raise ManifestError(f"{what} folder {folder} does not exist")
    if not path.is_file():
        raise ManifestError(f"{what} folder {folder} has no {MODEL_MANIFEST}; was it built/exported?")
    try:
        return cls.model_validate_json(path.read_text())
    except ValueError as exc:
        raise ManifestError(f"{path} is not a valid {what} manifest: {exc}") from exc


def load_model_manifest(model_dir: Path) -> ModelManifest:
    return read_manifest(model_dir, ModelManifest, "model")


def load_index_manifest(index_dir: Path) -> IndexManifest:
    return read_manifest(index_dir, IndexManifest, "index")


def fsync_path(path: Path) -> None:
    """fsync a file or a folder (a folder: so that a rename or a new entry in it is durable)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_json_atomic(path: Path, payload: BaseModel | dict) -> None:
    """Write to a temp file, fsync, then rename over the target, so readers never see half a file."""
    text = payload.model_dump_json(indent=2) if isinstance(payload, BaseModel) else json.dumps(payload, indent=2)
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", encoding="utf-8") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
