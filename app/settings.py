"""Service settings: environment variables with the SEARCH_ prefix (or a .env file). The one source of defaults."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from app.corpus import MAX_METADATA_DEPTH

Keys = Annotated[list[str], NoDecode]


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SEARCH_", env_file=".env", extra="ignore", protected_namespaces=())

    model_dir: Path = Field(
        Path("models/multilingual-e5-small-hybrid"),
        description="model folder with manifest.json: the multilingual model, for a corpus in several languages",
    )
    one_language_model_dir: Path = Field(
        Path("models/multilingual-e5-small"),
        description="the model for a corpus (almost) in one language: it ranks best within a language",
    )
    model_choice: Literal["auto", "multilingual", "one_language"] = Field(
        "auto",
        description="which model `index` encodes a corpus with: auto = by the corpus's language mix; the service "
        "always loads the configured model that encoded the store",
    )
    one_language_share: float = Field(
        0.95, gt=0.5, le=1.0, description="auto: a corpus whose largest language has this share is in one language"
    )
    store: Literal["faiss", "milvus"] = Field(
        "faiss", description="where the documents live: the embedded FAISS index, or a Milvus collection"
    )
    index_dir: Path = Field(Path("indexes/demo"), description="index folder built by `python -m app.cli index`")
    milvus_uri: str = Field(
        "indexes/milvus.db", description="with store=milvus: a local file path (Milvus Lite) or http://host:19530"
    )
    milvus_token: str = Field("", description="with store=milvus: 'user:password' or an API key; empty = none")
    milvus_db: str = Field("", description="with store=milvus: the Milvus database; empty = the default one")
    milvus_collection: str = Field(
        "passages", pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,254}$", description="with store=milvus: the collection"
    )
    milvus_consistency: Literal["Strong", "Bounded", "Session", "Eventually"] = Field(
        "Strong", description="with store=milvus: what a search sees of recent writes (Strong: every acknowledged one)"
    )
    milvus_index_type: Literal["FLAT", "IVF_FLAT", "HNSW", "AUTOINDEX"] = Field(
        "FLAT", description="with store=milvus: vector index of a new collection (FLAT = exact; HNSW needs a server)"
    )
    milvus_timeout_s: float = Field(
        10.0, gt=0, description="with store=milvus: a Milvus call not done after this many seconds gets 503"
    )
    runtime: Literal["auto", "cpu", "cuda"] = Field("auto", description="ONNX Runtime device; auto = CUDA if present")
    int8: bool | None = Field(None, description="serve the int8 model; unset = the model's gated default")
    intra_op_threads: int = Field(0, ge=0, description="ONNX Runtime intra-op threads; 0 = all cores")
    faiss_threads: int = Field(1, ge=0, description="OpenMP threads of a FAISS search; 0 = FAISS's default (all cores)")
    max_query_chars: int = Field(2000, ge=1, description="longer queries are refused (422)")
    max_query_tokens: int = Field(512, ge=8, description="longer queries are refused (422), never truncated")
    max_top_k: int = Field(100, ge=1, description="largest top_k a request may ask for")
    max_result_window: int = Field(
        1000, ge=1, description="largest offset + top_k: how deep a search may page (each page searches that deep)"
    )
    max_batch_queries: int = Field(64, ge=1, description="most queries/inputs in one /search/batch or /v1/embeddings")
    max_documents_per_request: int = Field(256, ge=1, description="most documents in one POST /documents")
    max_document_chars: int = Field(20000, ge=1, description="longer document texts are refused (422)")
    passage_tokens: int = Field(
        256, ge=16, description="documents longer than this many model tokens are split into passages of at most it"
    )
    passage_overlap_tokens: int = Field(
        0, ge=0, description="tokens of whole sentences that consecutive passages of a document share"
    )
    max_metadata_bytes: int = Field(4096, ge=2, description="largest metadata object, as compact JSON")
    max_metadata_depth: int = Field(
        MAX_METADATA_DEPTH, ge=1, le=200, description="most nested levels of objects/arrays in metadata"
    )
    max_body_bytes: int = Field(4 * 2**20, ge=1024, description="larger request bodies are refused (413)")
    max_header_bytes: int = Field(
        64 * 2**10, ge=1024, description="request line + headers larger than this are refused (431)"
    )
    max_headers: int = Field(100, ge=8, description="requests with more header fields are refused (431)")
    header_timeout_s: float = Field(
        10.0, gt=0, description="a request line + headers not complete this long after they start get 408"
    )
    body_timeout_s: float = Field(30.0, gt=0, description="a request body that stalls this long between reads gets 408")
    body_deadline_s: float = Field(
        60.0, gt=0, description="a request body not complete this long after the request began gets 408"
    )
    request_timeout_s: float = Field(30.0, gt=0, description="a request still waiting after this gets 504")
    batch_max_texts: int = Field(32, ge=1, description="dynamic batching: most texts in one model call")
    batch_max_tokens: int = Field(8192, ge=64, description="dynamic batching: most padded tokens in one model call")
    batch_fair_tokens: int = Field(
        2048, ge=64, description="most padded tokens in one model call while several requests share the model"
    )
    batch_fair_ms: float = Field(
        250.0,
        ge=0,
        description="while several requests share the model, a call takes no more rows than measured to run this "
        "long at their width (0 = batch_fair_tokens alone)",
    )
    max_request_tokens: int = Field(
        32768, ge=64, description="most tokens one request may have encoded (after truncation); more gets 413"
    )
    batch_wait_ms: float = Field(0.0, ge=0, description="dynamic batching: extra wait for more requests (0 = none)")
    max_queue: int = Field(2048, ge=1, description="requests waiting to be encoded beyond this get 503")
    query_cache_size: int = Field(10000, ge=0, description="query embeddings kept (LRU) for repeated queries; 0 = off")
    spin_threads: Literal["never", "during_calls", "always"] = Field(
        "during_calls",
        description="ONNX Runtime threads spin while a model call needs them (during_calls), also between calls "
        "(always: burns idle CPU), or never",
    )
    snapshot_every: int = Field(1000, ge=1, description="writes between background snapshots")
    graph_auto_from: int = Field(
        20_000, ge=0, description="an index built with --index-type auto gets its approximate graph at this size"
    )
    graph_exact_below: int = Field(
        20_000, ge=0, description="searches among fewer passages (a selective filter) skip the graph: exact"
    )
    graph_ef_search: int | None = Field(
        None, ge=1, description="the graph's efSearch; unset = the value measured for recall@10 0.97 when it was built"
    )
    write_api_keys: Keys = Field(default_factory=list, description="comma-separated keys for writes; none = no writes")
    read_api_keys: Keys = Field(default_factory=list, description="comma-separated keys for reads; none = open reads")
    host: str = Field("127.0.0.1", description="bind address for `python -m app.cli serve`")
    port: int = Field(8000, ge=1, le=65535, description="port for `python -m app.cli serve`")
    log_level: str = Field("info", description="uvicorn/app log level")
    log_format: Literal["text", "json"] = Field("text", description="log lines as text or one JSON object each")
    cors_origins: Keys = Field(
        default_factory=list, description="comma-separated origins a browser may call the API from; none = no CORS"
    )

    @field_validator("write_api_keys", "read_api_keys", "cors_origins", mode="before")
    @classmethod
    def split_keys(cls, value: object) -> object:
        if isinstance(value, str):
            return [key.strip() for key in value.split(",") if key.strip()]
        return value
