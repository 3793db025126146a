"""Service settings: environment variables with the SEARCH_ prefix (or a .env file). The one source of defaults."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SEARCH_", env_file=".env", extra="ignore", protected_namespaces=())

    model_dir: Path = Field(Path("models/multilingual-e5-small"), description="model folder with manifest.json")
    index_dir: Path = Field(Path("indexes/demo"), description="index folder built by `python -m app.cli index`")
    runtime: Literal["auto", "cpu", "cuda"] = Field("auto", description="ONNX Runtime device; auto = CUDA if present")
    int8: bool | None = Field(None, description="serve the int8 model; unset = the model's gated default")
    intra_op_threads: int = Field(0, ge=0, description="ONNX Runtime intra-op threads; 0 = all cores")
    max_query_chars: int = Field(2000, ge=1, description="longer queries are refused (422)")
    max_query_tokens: int = Field(512, ge=8, description="longer queries are refused (422), never truncated")
    max_top_k: int = Field(100, ge=1, description="largest top_k a request may ask for")
    host: str = Field("127.0.0.1", description="bind address for `python -m app.cli serve`")
    port: int = Field(8000, ge=1, le=65535, description="port for `python -m app.cli serve`")
    log_level: str = Field("info", description="uvicorn/app log level")
