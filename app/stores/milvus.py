"""The Milvus store: documents and vectors in a Milvus collection; this process holds no data.

The same ``MilvusClient`` code talks to Milvus Lite (``uri`` a local ``*.db`` file: Milvus's C++ core as a child
process, one process per file), Milvus Standalone and Milvus Distributed (``uri`` ``http://host:19530``). A write
is acknowledged once Milvus has accepted it (written to its log); with ``Strong`` consistency, the default, every
search after that sees it.

Collection ``<name>``: ``id`` (VARCHAR primary key), ``vector`` (FLOAT_VECTOR, the model's dimension, inner
product), ``text``, ``lang`` and ``metadata`` (JSON). Its description records the model that embedded it, checked
at start-up the way the FAISS index manifest is. Beside it ``<name>_catalog`` lists the languages and metadata
fields ever written (Milvus has no DISTINCT), so that every API replica can validate ``languages`` and
``group_by``; it only grows (a language whose last document was deleted stays listed, and finds nothing), and
is read whole (Milvus returns at most 16,384 rows: languages plus distinct field names beyond that go unseen). A list
or object where ``group_by`` points is refused when a search meets it (the FAISS store counts them up front).

Filters become Milvus expressions built from escaped literals only (Milvus Lite 2.5 has no expression templates):
strings are quoted with ``\\`` and ``"`` escaped; a value Milvus's grammar cannot hold (a line break, an integer
beyond 64 bits, a non-finite number) is refused with 422, never pasted in.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import re
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from app.corpus import Document, Group, Hit
from app.errors import GroupingError, InvalidRequest, NotOnThisStore, StoreUnavailable
from app.filters import KINDS, AllOf, AnyOf, Bound, Condition, Filter, Negation, Op, Scalar, instant, kind_of
from app.manifest import IndexManifest, ManifestError, ModelManifest
from app.settings import Settings
from app.stores.base import Store, StoreHealth, is_scalar, top_groups

log = logging.getLogger(__name__)

MAX_ID_BYTES, MAX_TEXT_BYTES, MAX_LANG_BYTES = 1024, 65535, 64
MAX_TOP_K = 16384  # Milvus's limit on one search's results
CATALOG_SUFFIX = "_catalog"
CATALOG_TTL_S = 2.0  # how stale another replica's new language or field may be here
OUTPUT_FIELDS = ["text", "lang", "metadata"]
FILTERABLE = "filterable"
INVALID_PARAMETER = 1100  # Milvus's error code for a request it cannot parse
RANGE_SYMBOLS = {"gt": ">", "gte": ">=", "lt": "<", "lte": "<="}
NEGATED_RANGE: dict[Op, Op] = {"gt": "lte", "gte": "lt", "lt": "gte", "lte": "gt"}
NOTHING, EVERYTHING = '(id == "")', '(id != "")'  # no document has an empty id
KIND_LITERALS = ", ".join(json.dumps(kind) for kind in KINDS)  # any kind: the field is there


@dataclass(frozen=True)
class CollectionIdentity:
    """What the collection's description records: the model whose passage embeddings it holds."""

    model_name: str
    model_fingerprint: str
    model_variant: str
    embedding_dim: int
    created_by: str = "polyglot-search"

    @classmethod
    def of_model(cls, model: ModelManifest, variant: str) -> CollectionIdentity:
        return cls(model.name, model.fingerprint, variant, model.embedding_dim)

    @classmethod
    def of_index(cls, index: IndexManifest) -> CollectionIdentity:
        """The identity of an embedded index's vectors (what `copy` moves)."""
        return cls(index.model_name, index.model_fingerprint, index.model_variant, index.embedding_dim)

    def describe(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def parse(cls, description: str, collection: str) -> CollectionIdentity:
        try:
            fields = json.loads(description)
            return cls(**fields)
        except (ValueError, TypeError) as exc:
            raise ManifestError(
                f"Milvus collection {collection!r} was not made by polyglot-search (its description is "
                f"{description[:80]!r}); choose another SEARCH_MILVUS_COLLECTION"
            ) from exc


def milvus_literal(value: object) -> str:
    """``value`` as a Milvus expression literal; InvalidRequest for what the grammar cannot hold."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        if not -(2**63) <= value < 2**63:
            raise InvalidRequest(f"filter value {value} does not fit a 64-bit integer")
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise InvalidRequest(f"filter value {value} is not a finite number")
        return repr(value)
    if isinstance(value, str):
        if "\n" in value or "\r" in value:
            raise InvalidRequest("a filter field or value holds a line break, which a Milvus expression cannot")
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    raise InvalidRequest(f"filter values must be strings, numbers or booleans, not {type(value).__name__}")


def filter_expression(languages: list[str] | None, where: Filter | None, filterable: bool = True) -> str:
    """The Milvus boolean expression for a search's languages and metadata filter ('' = everything).

    Milvus Lite 2.5 has no ``not``: a negation is pushed down to the conditions (De Morgan), each of which has a
    negated form (``!=`` and ``not in`` hold where the field is missing, as ``app.filters`` means). And a chain of
    more than ~50 ``or``/``and`` fails in its planner: parts are joined as a balanced tree instead.
    ``filterable``: whether the collection has the ``filterable`` field that ranges over dates, ``$exists`` and
    negated ranges read (collections made before it do not).
    """
    parts = []
    if languages:
        parts.append(f"lang in [{', '.join(milvus_literal(lang) for lang in languages)}]")
    if where is not None:
        parts.append(_Compiler(filterable).expression(where, negated=False))
    return " and ".join(parts)


class _Compiler:
    def __init__(self, filterable: bool) -> None:
        self.filterable = filterable

    def expression(self, node: Filter, negated: bool) -> str:
        if isinstance(node, Negation):
            return self.expression(node.part, not negated)
        if isinstance(node, AllOf | AnyOf):
            conjunction = isinstance(node, AllOf) != negated
            return _balanced([self.expression(part, negated) for part in node.parts], "and" if conjunction else "or")
        return self.condition(node, negated)

    def condition(self, condition: Condition, negated: bool) -> str:
        name = milvus_literal(condition.field)
        field, wanted = f"metadata[{name}]", condition.value
        if condition.op == "exists":
            present = wanted is not negated
            return f"({self.kind(condition)} {'in' if present else 'not in'} [{KIND_LITERALS}])"
        if isinstance(wanted, tuple):  # $in, $nin
            inside = (condition.op == "in") != negated
            lists = [f"{field} {'in' if inside else 'not in'} [{', '.join(map(milvus_literal, values))}]"
                     for values in _by_type(wanted)]  # fmt: skip
            return _balanced(lists, "or" if inside else "and") if lists else (NOTHING if inside else EVERYTHING)
        if isinstance(wanted, Bound):
            target = field if wanted.kind == "number" else self.instant_of(condition)
            op = NEGATED_RANGE[condition.op] if negated else condition.op
            compared = f"{target} {RANGE_SYMBOLS[op]} {milvus_literal(wanted.value)}"
            if not negated:
                return f"({compared})"
            return f"({compared} or {self.kind(condition)} != {milvus_literal(wanted.kind)})"
        equal = (condition.op == "eq") != negated
        return f"({field} {'==' if equal else '!='} {milvus_literal(wanted)})"

    def kind(self, condition: Condition) -> str:
        self.require_filterable(condition)
        return f'filterable["kind"][{milvus_literal(condition.field)}]'

    def instant_of(self, condition: Condition) -> str:
        self.require_filterable(condition)
        return f'filterable["at"][{milvus_literal(condition.field)}]'

    def require_filterable(self, condition: Condition) -> None:
        if not self.filterable:
            raise InvalidRequest(
                f"filters on {condition.field!r}: date ranges, $exists and negated ranges need a collection made by "
                "this version (it keeps each field's kind); index the corpus into a new collection (docs/MILVUS.md)"
            )


def filterable_fields(metadata: dict) -> dict:
    """What the ``filterable`` field holds for a document: each metadata field's kind, and the instants of its
    dates, so that Milvus can answer $exists, negated ranges and date ranges."""
    kinds = {name: kind_of(value) for name, value in metadata.items()}
    instants = {name: instant(metadata[name]) for name, kind in kinds.items() if kind == "instant"}
    return {"kind": kinds, "at": instants}


def _by_type(values: tuple[Scalar, ...]) -> list[list[Scalar]]:
    """Values in lists of one type: Milvus Lite fails on an ``in`` list that mixes strings, booleans, integers and
    floats (an integer list still matches 1.0, a float list 1)."""
    lists: dict[type, list[Scalar]] = {}
    for value in values:
        lists.setdefault(type(value), []).append(value)
    return list(lists.values())


def _balanced(parts: list[str], joiner: str) -> str:
    if len(parts) == 1:
        return parts[0]
    middle = len(parts) // 2
    return f"({_balanced(parts[:middle], joiner)} {joiner} {_balanced(parts[middle:], joiner)})"


def is_lite(uri: str) -> bool:
    return re.match(r"^(https?|tcp|grpc|unix)://", uri) is None


class MilvusStore(Store):
    remote = True

    def __init__(
        self,
        uri: str,
        collection: str = "passages",
        token: str = "",
        db_name: str = "",
        consistency: str = "Strong",
        timeout_s: float = 10,
    ) -> None:
        from pymilvus import MilvusClient
        from pymilvus.exceptions import MilvusException

        self._milvus_error = MilvusException
        self.uri, self.collection, self.catalog = uri, collection, collection + CATALOG_SUFFIX
        # whole seconds: pymilvus bounds its retries by the timeout only when it is an int (else 75 retries, minutes)
        self.consistency, self.timeout_s = consistency, max(1, math.ceil(timeout_s))
        self.lite = is_lite(uri)
        if self.lite:
            path = Path(uri)
            if path.suffix != ".db":
                raise ManifestError(f"SEARCH_MILVUS_URI {uri!r}: a Milvus Lite file must end in .db")
            path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self.client = MilvusClient(uri=uri, token=token, db_name=db_name, timeout=self.timeout_s)
        except MilvusException as exc:
            hint = (
                " (a Milvus Lite file is open in one process at a time: is a server or an index build using it?)"
                if is_lite(uri)
                else ""
            )
            raise StoreUnavailable(f"cannot connect to Milvus at {uri}: {exc.message}{hint}") from exc
        self.index_type = "FLAT"
        self.filterable = True  # set by open()
        self._catalog_lock = threading.Lock()
        self._catalog_keys: set[str] = set()
        self._catalog_read_at = -math.inf

    # --- the collection and its identity -------------------------------------------------------------------------

    @contextlib.contextmanager
    def _calls(self, what: str) -> Iterator[None]:
        """Milvus's errors as ours: a request it cannot parse is 422, anything else (down, timeout) is 503."""
        try:
            yield
        except self._milvus_error as exc:
            if exc.code == INVALID_PARAMETER:
                raise InvalidRequest(f"Milvus refused the {what}: {exc.message}") from exc
            raise StoreUnavailable(f"Milvus did not complete the {what}: {exc.message}") from exc

    def exists(self) -> bool:
        with self._calls("collection lookup"):
            return self.client.has_collection(self.collection, timeout=self.timeout_s)

    def stored_identity(self) -> CollectionIdentity | None:
        """The identity the collection records; None when there is no collection yet."""
        return self.read_identity() if self.exists() else None

    def read_identity(self) -> CollectionIdentity:
        with self._calls("collection lookup"):
            description = self.client.describe_collection(self.collection, timeout=self.timeout_s)["description"]
        return CollectionIdentity.parse(description, self.collection)

    def open(self, identity: CollectionIdentity, index_type: str = "FLAT", create: bool = True) -> None:
        """Use the collection, created for ``identity`` when missing (and ``create``); refuse one made by another
        model, as the FAISS index manifest is refused."""
        from pymilvus import DataType, MilvusClient

        if not self.exists():
            if not create:
                raise ManifestError(f"Milvus at {self.uri} has no collection {self.collection!r}")
            schema = MilvusClient.create_schema(
                auto_id=False, enable_dynamic_field=False, description=identity.describe()
            )
            schema.add_field("id", DataType.VARCHAR, is_primary=True, max_length=MAX_ID_BYTES)
            schema.add_field("vector", DataType.FLOAT_VECTOR, dim=identity.embedding_dim)
            schema.add_field("text", DataType.VARCHAR, max_length=MAX_TEXT_BYTES)
            schema.add_field("lang", DataType.VARCHAR, max_length=MAX_LANG_BYTES)
            schema.add_field("metadata", DataType.JSON)
            schema.add_field(FILTERABLE, DataType.JSON)  # filterable_fields(metadata)
            index_params = self.client.prepare_index_params()
            index_params.add_index("vector", index_type=index_type, metric_type="IP", params=_build_params(index_type))
            # a scalar index on lang: one-language search on 100k passages p50 4.2 vs 4.5 ms, p99 5.7 vs 7.0 ms
            # (benchmarks/store_compare.py); Milvus Lite cannot filter a partition key with `in`
            index_params.add_index("lang", index_type="INVERTED")
            with self._calls("collection creation"):
                self.client.create_collection(
                    self.collection,
                    schema=schema,
                    index_params=index_params,
                    consistency_level=self.consistency,
                    timeout=self.timeout_s,
                )
            log.info("created Milvus collection %s (%s, dim %d)", self.collection, index_type, identity.embedding_dim)
        found = self.read_identity()
        where = f"Milvus collection {self.collection!r} at {self.uri}"
        if found.model_fingerprint != identity.model_fingerprint:
            raise ManifestError(
                f"{where} holds embeddings of model '{found.model_name}' (fingerprint {found.model_fingerprint[:12]}), "
                f"not of '{identity.model_name}' (fingerprint {identity.model_fingerprint[:12]}); rebuild it with "
                "that model, or choose another SEARCH_MILVUS_COLLECTION"
            )
        self._open_catalog()
        with self._calls("collection lookup"):
            fields = self.client.describe_collection(self.collection, timeout=self.timeout_s)["fields"]
        self.filterable = any(field["name"] == FILTERABLE for field in fields)
        if not self.filterable:
            log.warning(
                "Milvus collection %s has no %r field (made by an older version): date ranges, $exists and negated "
                "ranges are refused on it",
                self.collection,
                FILTERABLE,
            )
        with self._calls("index lookup"):
            self.client.load_collection(self.collection, timeout=self.timeout_s)
            described = self.client.describe_index(self.collection, "vector", timeout=self.timeout_s)
        self.index_type = described.get("index_type", "FLAT")

    def _open_catalog(self) -> None:
        from pymilvus import DataType, MilvusClient

        with self._calls("catalog lookup"):
            exists = self.client.has_collection(self.catalog, timeout=self.timeout_s)
        if not exists:
            schema = MilvusClient.create_schema(auto_id=False, description=f"languages and fields of {self.collection}")
            schema.add_field("key", DataType.VARCHAR, is_primary=True, max_length=512)
            schema.add_field("vector", DataType.FLOAT_VECTOR, dim=2)  # Milvus needs one; nothing searches it
            index_params = self.client.prepare_index_params()
            index_params.add_index("vector", index_type="FLAT", metric_type="L2")
            with self._calls("catalog creation"):
                self.client.create_collection(
                    self.catalog,
                    schema=schema,
                    index_params=index_params,
                    consistency_level="Strong",
                    timeout=self.timeout_s,
                )
        with self._calls("catalog load"):
            self.client.load_collection(self.catalog, timeout=self.timeout_s)

    # --- reads ---------------------------------------------------------------------------------------------------

    def _catalog(self, refresh: bool = False) -> set[str]:
        with self._catalog_lock:
            if refresh or time.monotonic() - self._catalog_read_at > CATALOG_TTL_S:
                with self._calls("catalog read"):
                    rows = self.client.query(
                        self.catalog, filter='key != ""', output_fields=["key"], limit=MAX_TOP_K, timeout=self.timeout_s
                    )
                self._catalog_keys = {row["key"] for row in rows}
                self._catalog_read_at = time.monotonic()
            return self._catalog_keys

    @property
    def size(self) -> int:
        return self._count("")

    def _count(self, expression: str) -> int:
        with self._calls("count"):
            rows = self.client.query(
                self.collection,
                filter=expression,
                output_fields=["count(*)"],
                consistency_level=self.consistency,
                timeout=self.timeout_s,
            )
        return int(rows[0]["count(*)"])

    @property
    def languages(self) -> list[str]:
        return sorted(key[5:] for key in self._catalog() if key.startswith("lang:"))

    @property
    def group_fields(self) -> list[str]:
        return sorted(key[6:] for key in self._catalog() if key.startswith("field:"))

    def check_group_field(self, group_by: str) -> None:
        """Known fields only (the catalog); a list or object value is refused when a search meets it."""
        if "field:" + group_by not in self._catalog() and "field:" + group_by not in self._catalog(refresh=True):
            raise GroupingError(f"no document has a metadata field '{group_by}'; groupable fields: {self.group_fields}")

    def search(
        self,
        queries: np.ndarray,
        top_k: int,
        languages: list[str] | None = None,
        where: Filter | None = None,
        exact: bool = False,
    ) -> list[list[Hit]]:
        self._check_exact(exact)
        return self._search(queries, top_k, filter_expression(languages, where, self.filterable))

    def _search_description(self) -> str:
        return (
            "exact (Milvus FLAT index)"
            if self.index_type == "FLAT"
            else f"approximate (Milvus {self.index_type} index)"
        )

    def _check_exact(self, exact: bool) -> None:
        if exact and self.index_type != "FLAT":
            raise NotOnThisStore(
                f"exact search is not available on this Milvus collection: its vector index is {self.index_type} "
                "(approximate); a FLAT collection is searched exactly"
            )

    def _search(self, queries: np.ndarray, top_k: int, expression: str) -> list[list[Hit]]:
        top_k = min(top_k, MAX_TOP_K)
        with self._calls("search"):
            results = self.client.search(
                self.collection,
                data=np.asarray(queries, dtype=np.float32).tolist(),
                limit=top_k,
                filter=expression,
                output_fields=OUTPUT_FIELDS,
                search_params={"metric_type": "IP", "params": _search_params(self.index_type, top_k)},
                consistency_level=self.consistency,
                timeout=self.timeout_s,
            )
        return [[Hit(_document(hit["id"], hit["entity"]), float(hit["distance"])) for hit in hits] for hits in results]

    def search_grouped(
        self,
        queries: np.ndarray,
        top_k: int,
        group_by: str,
        languages: list[str] | None = None,
        where: Filter | None = None,
        exact: bool = False,
    ) -> list[list[Group]]:
        """Exact as with FAISS (``top_groups``) up to Milvus's 16,384 results per search."""
        self._check_exact(exact)
        self.check_group_field(group_by)
        expression = filter_expression(languages, where, self.filterable)
        available = min(self._count(expression), MAX_TOP_K)

        def search(rows: np.ndarray, fetch: int) -> list[list[Hit]]:
            hit_lists = self._search(rows, fetch, expression)
            for hit in (hit for hits in hit_lists for hit in hits):
                if group_by in hit.document.metadata and not is_scalar(hit.document.metadata[group_by]):
                    raise GroupingError(
                        f"cannot group by '{group_by}': documents such as {hit.document.id!r} hold a list or object "
                        "there; grouping needs a string, number or boolean"
                    )
            return hit_lists

        return top_groups(search, queries, top_k, group_by, available)

    def get(self, doc_id: str) -> Document | None:
        rows = self._rows([doc_id], OUTPUT_FIELDS)
        return _document(rows[0]["id"], rows[0]) if rows else None

    def present(self, doc_ids: list[str]) -> set[str]:
        """Which of ``doc_ids`` the collection holds."""
        return {row["id"] for row in self._rows(doc_ids, ["id"])} if doc_ids else set()

    def _rows(self, doc_ids: list[str], fields: list[str]) -> list[dict]:
        # Not MilvusClient.get: it pastes ids into its expression unescaped, so an id holding a quote could
        # widen it (and delete(ids=) likewise): every expression here is built from escaped literals.
        with self._calls("read"):
            return self.client.query(
                self.collection,
                filter=_ids_expression(doc_ids),
                output_fields=fields,
                limit=len(doc_ids),
                consistency_level=self.consistency,
                timeout=self.timeout_s,
            )

    # --- writes --------------------------------------------------------------------------------------------------

    def upsert(self, documents: list[Document], embeddings: np.ndarray, replacing: Sequence[str] = ()) -> None:
        """Milvus has no transaction: the new passages are written first, then the stale ones of ``replacing``
        deleted, so a failure in between leaves extra passages of the document, never none."""
        if len(documents) != len(embeddings) or len({d.id for d in documents}) != len(documents):
            raise ValueError("upsert needs one embedding per document and distinct ids")
        for i, document in enumerate(documents):
            self._check_id(document.id, f"document {i}")
            for what, value, limit in (
                ("id", document.id, MAX_ID_BYTES),
                ("text", document.text, MAX_TEXT_BYTES),
                ("lang", document.lang, MAX_LANG_BYTES),
            ):
                if len(value.encode()) > limit:
                    raise InvalidRequest(f"document {i} ({document.id[:64]!r}): its {what} is over {limit} bytes")
        self._add_to_catalog(documents)
        rows = [
            {"id": d.id, "vector": vector, "text": d.text, "lang": d.lang, "metadata": d.metadata}
            | ({FILTERABLE: filterable_fields(d.metadata)} if self.filterable else {})
            for d, vector in zip(documents, np.asarray(embeddings, dtype=np.float32).tolist(), strict=True)
        ]
        with self._calls("write"):
            self.client.upsert(self.collection, rows, timeout=self.timeout_s)
        new = {d.id for d in documents}
        stale = [i for i in self.passage_ids(list(replacing)) if i not in new]
        if stale:
            with self._calls("delete"):
                self.client.delete(self.collection, filter=_ids_expression(stale), timeout=self.timeout_s)
        return None

    def _add_to_catalog(self, documents: list[Document]) -> None:
        keys = {"lang:" + d.lang for d in documents} | {"field:" + name for d in documents for name in d.metadata}
        keys = {key for key in keys if len(key.encode()) <= 512}  # longer field names cannot be grouped by anyway
        new = keys - self._catalog()
        if new:
            with self._calls("catalog write"):
                # insert, not upsert: the keys are new, and Milvus Lite's upsert fails on a key with a single quote
                # (it deletes the old row by an expression it does not escape); a key two processes both add is
                # listed twice, and read back as one
                rows = [{"key": key, "vector": [0.0, 0.0]} for key in sorted(new)]
                self.client.insert(self.catalog, rows, timeout=self.timeout_s)
            with self._catalog_lock:
                self._catalog_keys |= new

    def _check_id(self, doc_id: str, what: str) -> None:
        if self.lite and "'" in doc_id:
            raise InvalidRequest(
                f"{what} ({doc_id[:64]!r}): Milvus Lite cannot replace or delete an id holding a single quote (its "
                "storage layer does not escape it); use another id, or a Milvus server"
            )

    def delete(self, doc_ids: list[str]) -> list[str]:
        for doc_id in doc_ids:
            self._check_id(doc_id, "document")
        present = self.passage_ids(doc_ids)
        if present:
            with self._calls("delete"):
                self.client.delete(self.collection, filter=_ids_expression(sorted(present)), timeout=self.timeout_s)
        return present

    def passage_ids(self, doc_ids: list[str]) -> list[str]:
        """The passages of these documents: the passage with the id itself, and those split from it."""
        if not doc_ids:
            return []
        literals = ", ".join(milvus_literal(doc_id) for doc_id in doc_ids)
        with self._calls("read"):
            rows = self.client.query(
                self.collection,
                filter=f'id in [{literals}] or metadata["doc_id"] in [{literals}]',
                output_fields=["id"],
                consistency_level=self.consistency,
                timeout=self.timeout_s,
            )
        return sorted(row["id"] for row in rows)

    def count(self, languages: list[str] | None = None, where: Filter | None = None) -> int:
        return self._count(filter_expression(languages, where, self.filterable))

    def scroll(
        self, limit: int, after: str | None = None, languages: list[str] | None = None, where: Filter | None = None
    ) -> list[Document]:
        """Milvus answers a query with a limit by the smallest primary keys, in order (what pymilvus's own query
        iterator pages by)."""
        expression = filter_expression(languages, where, self.filterable)
        if after is not None:
            expression = f"id > {milvus_literal(after)}" + (f" and ({expression})" if expression else "")
        with self._calls("listing"):
            rows = self.client.query(
                self.collection,
                filter=expression or EVERYTHING,
                output_fields=OUTPUT_FIELDS,
                limit=min(limit, MAX_TOP_K),
                consistency_level=self.consistency,
                timeout=self.timeout_s,
            )
        return sorted((_document(row["id"], row) for row in rows), key=lambda document: document.id)

    def delete_where(self, languages: list[str] | None, where: Filter | None) -> int:
        """One delete by expression: Milvus applies it as one operation."""
        expression = filter_expression(languages, where, self.filterable) or EVERYTHING
        with self._calls("delete"):
            result = self.client.delete(self.collection, filter=expression, timeout=self.timeout_s)
        # Milvus Lite returns the deleted keys, a Milvus server their count
        return len(result) if isinstance(result, list) else int(result.get("delete_count", 0))

    def require_writable(self) -> None:
        return None

    def health(self) -> StoreHealth:
        return StoreHealth(writable=True, search_index=self._search_description())

    def drop(self) -> None:
        """Delete the collection and its catalog (tests, and ``index --rebuild``)."""
        with self._calls("drop"):
            for name in (self.collection, self.catalog):
                self.client.drop_collection(name, timeout=self.timeout_s)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.client.close()
        if is_lite(self.uri):  # stop the Milvus Lite child now, so another process may open the file
            from milvus_lite.server_manager import server_manager_instance

            server_manager_instance.release_server(self.uri)


def milvus_store(settings: Settings) -> MilvusStore:
    """The Milvus store of the settings, connected; its collection not opened yet."""
    return MilvusStore(
        settings.milvus_uri,
        settings.milvus_collection,
        settings.milvus_token,
        settings.milvus_db,
        settings.milvus_consistency,
        settings.milvus_timeout_s,
    )


def connect_milvus(settings: Settings, identity: CollectionIdentity, create: bool = True) -> MilvusStore:
    """The Milvus store of the settings, its collection opened (created when missing) and checked for ``identity``."""
    store = milvus_store(settings)
    try:
        store.open(identity, settings.milvus_index_type, create)
    except BaseException:
        store.close()
        raise
    return store


def _ids_expression(doc_ids: list[str]) -> str:
    return f"id in [{', '.join(milvus_literal(doc_id) for doc_id in doc_ids)}]"


def _document(doc_id: str, entity: dict) -> Document:
    return Document(doc_id, entity["text"], entity["lang"], entity.get("metadata") or {})


def _build_params(index_type: str) -> dict:
    return {"IVF_FLAT": {"nlist": 128}, "HNSW": {"M": 32, "efConstruction": 200}}.get(index_type, {})


def _search_params(index_type: str, top_k: int) -> dict:
    return {"IVF_FLAT": {"nprobe": 32}, "HNSW": {"ef": max(128, top_k)}}.get(index_type, {})
