"""Request and response bodies of the HTTP API."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator


class SearchRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    query: str = Field(description="text in any language; the language needs no declaring")
    top_k: int = Field(10, description="number of results (1..SEARCH_MAX_TOP_K)")
    languages: list[str] | None = Field(None, description="only return passages in these languages")

    @field_validator("query")
    @classmethod
    def query_not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("query must not be empty or whitespace")
        return value

    @field_validator("languages")
    @classmethod
    def languages_not_empty(cls, value: list[str] | None) -> list[str] | None:
        if value is not None and not value:
            raise ValueError("languages must be null or a non-empty list")
        return value


class SearchResult(BaseModel):
    id: str
    text: str
    lang: str
    score: float
    rank: int
    metadata: dict = Field(default_factory=dict)


class SearchResponse(BaseModel):
    results: list[SearchResult]
    query: str
    top_k: int
    languages: list[str] | None
    model: str
    took_ms: float


class Health(BaseModel):
    status: str


class Readiness(BaseModel):
    ready: bool
    model: str | None = None
    variant: str | None = None
    providers: list[str] = Field(default_factory=list)
    index_size: int | None = None
    languages: list[str] = Field(default_factory=list)
    error: str | None = None
