"""Request and response bodies of the HTTP API. Requests are strict (exact JSON types, unknown fields refused);
limits that depend on settings are checked by the engine."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints, field_validator, model_validator

from app.filters import MAX_CONDITIONS, MAX_DEPTH, MAX_IN_VALUES, Filter, parse_filter
from app.ingest.languages import normalize_language
from app.results import SearchSpec

# Ids travel in URL paths: printable, no whitespace or control characters, at most 256 characters.
DOCUMENT_ID_PATTERN = r"^[^\s\x00-\x1f\x7f]{1,256}$"
DocumentId = Annotated[str, StringConstraints(pattern=DOCUMENT_ID_PATTERN)]


MAX_SCROLL_LIMIT = 1000
MAX_DELETE_IDS = 10_000

# BCP-47, normalised to lowercase ("EN" -> "en", "pt_BR" -> "pt-br"): the form the index stores
LanguageCode = Annotated[str, StringConstraints(max_length=64), AfterValidator(normalize_language)]
FilterValue = str | int | float | bool
FieldName = Annotated[str, StringConstraints(min_length=1, max_length=128)]


def _valid_filter(raw: dict[str, Any]) -> dict[str, Any]:
    if raw:  # {} has always meant "no filter"
        parse_filter(raw)  # FilterError (a ValueError): 422 naming the part
    return raw


FILTER_EXAMPLES = [
    {"source": "handbook"},
    {"tags": {"$in": ["billing", "refunds"]}, "published": {"$gte": "2024-01-01"}},
    {"$or": [{"price": {"$lt": 20}}, {"on_sale": True}], "status": {"$ne": "archived"}},
    {"$not": {"audience": "internal"}, "reviewed_by": {"$exists": True}},
    {"$and": [{"price": {"$gt": 5}}, {"price": {"$lte": 50}}], "region": {"$nin": ["eu"]}, "kind": {"$eq": "faq"}},
]
FilterExpression = Annotated[
    dict[str, Any],
    AfterValidator(_valid_filter),
    Field(
        description="metadata conditions, all of which must hold (docs/API.md, Filters): `field: value` (equals), "
        "`field: {op: value}` with $eq, $ne, $in, $nin (lists), $gt, $gte, $lt, $lte (a number, or an ISO-8601 "
        "date/time compared as an instant) and $exists (true/false); $and / $or (lists of filters) and $not (a "
        f"filter) combine them; at most {MAX_CONDITIONS} conditions, nested {MAX_DEPTH} deep, {MAX_IN_VALUES} "
        "values per list",
        examples=FILTER_EXAMPLES,
    ),
]


def _reject_unpaired_surrogates(value: Any, where: str = "body") -> None:
    """JSON may escape half a UTF-16 pair ("\\ud800"); such a string is not text and cannot be stored or encoded."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise ValueError(f"{where} holds an unpaired UTF-16 surrogate escape; send valid Unicode") from exc
    elif isinstance(value, dict):
        for key, item in value.items():
            _reject_unpaired_surrogates(key, where)
            _reject_unpaired_surrogates(item, f"{where}.{key}" if isinstance(key, str) else where)
    elif isinstance(value, list):
        for i, item in enumerate(value):
            _reject_unpaired_surrogates(item, f"{where}[{i}]")


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    @model_validator(mode="before")
    @classmethod
    def valid_unicode(cls, data: Any) -> Any:
        _reject_unpaired_surrogates(data)
        return data


class SearchOptions(Strict):
    top_k: int = Field(10, description="number of results (1..SEARCH_MAX_TOP_K); with group_by, of groups")
    offset: int = Field(
        0, ge=0, description="results to skip, for the next page; offset + top_k is at most SEARCH_MAX_TOP_K"
    )
    languages: list[LanguageCode] | None = Field(
        None, min_length=1, max_length=64, description="only return passages in these languages"
    )
    filters: FilterExpression | None = None
    min_score: float | None = Field(
        None,
        ge=-1,
        le=1,
        description="drop results scoring below this (cosine, -1..1); the response counts them in below_min_score",
    )
    truncate: bool = Field(False, description="embed only the first allowed tokens of an over-long query (else 422)")
    exact: bool = Field(
        False,
        description="exact search where the index is approximate (slower over a large corpus); scores are exact "
        "either way",
    )
    group_by: FieldName | None = Field(
        None,
        description="collapse results sharing this metadata field's value (e.g. translations of one passage) into "
        "one result each; top_k then counts groups; documents without the field are groups of one",
    )
    group_size: int = Field(3, ge=1, le=100, description="with group_by: members listed per group (best first)")
    prefer_languages: list[LanguageCode] | None = Field(
        None,
        max_length=16,
        description="with group_by: each group shows its best member in the earliest of these languages it has "
        "(else its best member); groups stay ranked by their best score in any language",
    )

    def spec(self) -> SearchSpec:
        return SearchSpec(
            top_k=self.top_k,
            offset=self.offset,
            languages=self.languages,
            where=parse_filter(self.filters) if self.filters else None,
            min_score=self.min_score,
            group_by=self.group_by,
            prefer_languages=tuple(self.prefer_languages or ()),
            truncate=self.truncate,
            exact=self.exact,
        )


class SearchRequest(SearchOptions):
    query: str = Field(description="text in any language; the language needs no declaring")

    @field_validator("query")
    @classmethod
    def query_not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("query must not be empty or whitespace")
        return value


class BatchSearchRequest(SearchOptions):
    queries: list[str] = Field(min_length=1, description="queries answered together (1..SEARCH_MAX_BATCH_QUERIES)")


class SearchResult(BaseModel):
    id: str
    text: str
    lang: str
    score: float
    rank: int
    metadata: dict = Field(default_factory=dict)


class GroupMember(BaseModel):
    id: str
    lang: str
    score: float


class GroupResult(SearchResult):
    """A group's best member (its fields, score and the group's rank) and the members found, best first."""

    group: FilterValue | None = Field(description="the group's field value; null for a document without the field")
    best_score: float = Field(description="the group's best member's score, by which groups are ranked")
    members: list[GroupMember] = Field(description="up to group_size members, the best one first")
    members_found: int = Field(description="members of this group among the candidates the search looked at")


Results = list[GroupResult] | list[SearchResult]


class SearchResponse(BaseModel):
    results: Results
    query: str
    top_k: int
    offset: int = 0
    below_min_score: int = Field(0, description="results of this page dropped by min_score")
    languages: list[str] | None
    group_by: str | None = None
    model: str
    took_ms: float


class QueryResults(BaseModel):
    query: str
    results: Results
    below_min_score: int = Field(0, description="results of this page dropped by min_score")


class BatchSearchResponse(BaseModel):
    results: list[QueryResults]
    top_k: int
    offset: int = 0
    languages: list[str] | None
    group_by: str | None = None
    model: str
    took_ms: float


class EmbeddingsRequest(Strict):
    """OpenAI's embeddings request, plus ``input_type`` (which prefix the model puts before the text)."""

    input: str | list[str] | list[int] | list[list[int]] = Field(
        description="a text or a list of texts; token arrays are refused with the reason (OpenAI's token ids are not "
        "this model's)"
    )
    model: str = Field(description="a served model id from /v1/models: '<name>' (query prefix) or '<name>:passage'")
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = Field(None, description="must equal the model's dimension if given")
    user: str | None = None
    input_type: Literal["query", "passage"] = Field(
        "query", description='"query" (e5: also for symmetric tasks) or "passage" for texts to be retrieved'
    )
    truncate: bool = Field(False, description="embed only the first allowed tokens of an over-long input (else 422)")


class ModelCard(BaseModel):
    """OpenAI's model object."""

    id: str
    object: Literal["model"] = "model"
    created: int = Field(description="when the model was exported (Unix time)")
    owned_by: str = "polyglot-search"


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]


class Embedding(BaseModel):
    object: Literal["embedding"] = "embedding"
    index: int
    embedding: list[float] | str


class Usage(BaseModel):
    prompt_tokens: int
    total_tokens: int


class EmbeddingsResponse(BaseModel):
    object: Literal["list"] = "list"
    data: list[Embedding]
    model: str
    usage: Usage


class DocumentIn(Strict):
    id: DocumentId
    text: str = Field(min_length=1)
    lang: LanguageCode | None = Field(None, description="BCP-47 tag; detected when missing (lang_detected: true)")
    title: str | None = Field(None, max_length=1000, description="kept in metadata.title of every passage")
    metadata: dict[str, Any] = Field(default_factory=dict, description="any JSON object; scalar fields are filterable")

    @field_validator("text")
    @classmethod
    def text_not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("text must not be empty or whitespace")
        return value


class UpsertRequest(Strict):
    documents: list[DocumentIn] = Field(
        min_length=1, description="added, or replaced (with all their passages) when the id exists"
    )
    split: bool = Field(
        True,
        description="split a document longer than SEARCH_PASSAGE_TOKENS into passages <id>#<n> at sentence ends; "
        "false: one passage per document (an over-long one gets 422 unless truncate)",
    )
    truncate: bool = Field(False, description="with split false: embed only the first tokens of over-long texts")

    @field_validator("documents")
    @classmethod
    def ids_distinct(cls, documents: list[DocumentIn]) -> list[DocumentIn]:
        seen: set[str] = set()
        for document in documents:
            if document.id in seen:
                raise ValueError(f"duplicate id {document.id!r} in one request")
            seen.add(document.id)
        return documents


class UpsertResponse(BaseModel):
    upserted: int = Field(description="documents written")
    ids: list[str] = Field(description="their ids")
    passages: int = Field(description="passages written (a long document is several)")
    passage_ids: list[str]
    index_size: int
    log_seq: int | None = Field(
        description="write-ahead-log record that made the write durable (embedded store; null with Milvus)"
    )


class DocumentOut(BaseModel):
    id: str
    text: str
    lang: str
    metadata: dict = Field(default_factory=dict)


class DocumentSelection(Strict):
    """Which passages a count, a listing or a delete is about: those in ``languages`` whose metadata satisfies
    ``filters`` (both optional)."""

    filters: FilterExpression | None = None
    languages: list[LanguageCode] | None = Field(
        None, min_length=1, max_length=64, description="only passages in these languages"
    )

    def where(self) -> Filter | None:
        return parse_filter(self.filters) if self.filters else None


class CountRequest(DocumentSelection):
    pass


class CountResponse(BaseModel):
    count: int = Field(description="passages selected")


class ScrollRequest(DocumentSelection):
    limit: int = Field(100, ge=1, le=MAX_SCROLL_LIMIT, description=f"passages per page (1..{MAX_SCROLL_LIMIT})")
    cursor: str | None = Field(
        None, max_length=1024, description="the previous page's next_cursor; leave it out for the first page"
    )


class ScrollResponse(BaseModel):
    documents: list[DocumentOut] = Field(description="passages in id order")
    next_cursor: str | None = Field(description="pass it as cursor for the next page; null after the last one")


class BulkDeleteRequest(DocumentSelection):
    """Delete documents by id (each with all its passages), or every passage a selection holds: one write."""

    ids: list[DocumentId] | None = Field(
        None, min_length=1, max_length=MAX_DELETE_IDS, description=f"document ids (1..{MAX_DELETE_IDS})"
    )

    @model_validator(mode="after")
    def one_selection(self) -> BulkDeleteRequest:
        selects = bool(self.filters) or self.languages is not None
        if (self.ids is None) == (not selects):
            raise ValueError(
                "give either ids, or a non-empty filters and/or languages (to delete everything, list every language "
                "of /ready's languages)"
            )
        return self


class BulkDeleteResponse(BaseModel):
    passages: int = Field(description="passages deleted")
    passage_ids: list[str] | None = Field(
        description="their ids, when deleted by id (a delete by filter reports the count only)"
    )
    index_size: int


class DeleteResponse(BaseModel):
    deleted: str
    passages: int = Field(description="passages deleted: the document's own, and those split from it")
    index_size: int


class Health(BaseModel):
    status: str


class Readiness(BaseModel):
    ready: bool
    model: str | None = None
    model_role: Literal["multilingual", "one_language"] | None = Field(
        None, description="multilingual: the language-agnostic default; one_language: the model for a corpus in one"
    )
    model_choice: str | None = Field(None, description="why this model encodes the corpus and its queries")
    variant: str | None = None
    providers: list[str] = Field(default_factory=list)
    store: str = Field("", description="where the documents live: faiss (embedded) or milvus")
    index_size: int | None = None
    languages: list[str] = Field(default_factory=list)
    group_fields: list[str] = Field(default_factory=list, description="metadata fields that group_by accepts")
    writable: bool = False
    snapshot_error: str | None = Field(
        None, description="why the last background snapshot failed (writes are safe in the log; it is retried)"
    )
    recovered_from: str | None = Field(
        None, description="set when start-up found the newest snapshot damaged and loaded the previous one"
    )
    search_index: str = Field("", description="how searches are answered: exact, or through an approximate index")
    error: str | None = None


class ErrorBody(BaseModel):
    """Every error answer outside /v1."""

    detail: str = Field(description="what is wrong, in words")


class ValidationIssue(BaseModel):
    loc: list[str]
    msg: str
    type: str


class ValidationErrorBody(ErrorBody):
    """422 for a request that does not fit the schema: the message plus each problem."""

    errors: list[ValidationIssue] = Field(default_factory=list)


class OpenAIError(BaseModel):
    message: str
    type: str = Field(description="invalid_request_error | authentication_error | permission_error | server_error")
    param: str | None = None
    code: str | None = None


class OpenAIErrorBody(BaseModel):
    """Every error answer on the /v1 routes, in OpenAI's shape."""

    error: OpenAIError
