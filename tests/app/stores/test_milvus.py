"""The Milvus store on the real engine (Milvus Lite 2.5: Milvus's C++ core): same answers as the FAISS store, filter
expressions that cannot be widened by what a user sends, the model check, and clear errors."""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from app.corpus import Document
from app.encoder import OnnxEncoder
from app.errors import GroupingError, InvalidRequest, StoreUnavailable
from app.filters import matches, parse_filter
from app.manifest import ManifestError
from app.stores.embedded.index import SearchIndex
from app.stores.milvus import CollectionIdentity, MilvusStore, filter_expression, milvus_literal
from tests.conftest import copy_into_milvus

QUERIES = ["Who won Super Bowl 50?", "Wer hat den Super Bowl gewonnen?", "Warschau ist die Hauptstadt Polens"]


@pytest.fixture(scope="module")
def faiss_index(tiny_index: Path) -> SearchIndex:
    return SearchIndex.load(tiny_index)


@pytest.fixture(scope="module")
def queries(tiny_model: Path) -> np.ndarray:
    return OnnxEncoder(tiny_model, runtime="cpu").encode(QUERIES, "query")


@pytest.fixture
def milvus(tiny_index: Path, faiss_index: SearchIndex, tmp_path: Path) -> Iterator[MilvusStore]:
    """The tiny index copied into a new Milvus Lite file, opened as the service opens it."""
    uri = str(tmp_path / "milvus.db")
    copy_into_milvus(tiny_index, Path(uri))
    store = MilvusStore(uri)
    store.open(identity_of(faiss_index))
    yield store
    store.close()


def identity_of(index: SearchIndex) -> CollectionIdentity:
    return CollectionIdentity.of_index(index.manifest)


def assert_same_rankings(found: list, expected: list) -> None:
    """Same passages in the same order; scores equal up to float32 summation order (the two engines add differently)."""
    ids = [[hit.document.id for hit in hits] for hits in found]
    assert ids == [[hit.document.id for hit in hits] for hits in expected]
    for found_hits, expected_hits in zip(found, expected, strict=True):
        np.testing.assert_allclose([hit.score for hit in found_hits], [hit.score for hit in expected_hits], atol=1e-5)


@pytest.mark.parametrize(
    ("value", "literal"),
    [
        ("plain", '"plain"'),
        ('x" or lang != "', '"x\\" or lang != \\""'),
        ("back\\slash", '"back\\\\slash"'),
        ("tab\tand 中文", '"tab\tand 中文"'),
        (True, "true"),
        (-3, "-3"),
        (0.25, "0.25"),
    ],
)
def test_literals_are_escaped(value: object, literal: str) -> None:
    assert milvus_literal(value) == literal


@pytest.mark.parametrize(
    ("value", "message"),
    [("two\nlines", "line break"), (2**63, "64-bit"), (float("inf"), "finite"), ([1], "strings, numbers")],
)
def test_values_a_milvus_expression_cannot_hold_are_422(value: object, message: str) -> None:
    with pytest.raises(InvalidRequest, match=message):
        milvus_literal(value)


def test_filter_expression() -> None:
    assert filter_expression(None, None) == ""
    assert filter_expression(["de", "en"], parse_filter({"group": "p001", 'we"ird': 2})) == (
        'lang in ["de", "en"] and ((metadata["group"] == "p001") and (metadata["we\\"ird"] == 2))'
    )
    # no `not` in Milvus Lite: pushed down to the conditions; a range's negation also holds for other kinds
    negated = parse_filter({"$not": {"$or": [{"a": {"$in": [1, 2.5, "x"]}}, {"n": {"$gt": 3}}]}})
    assert filter_expression(None, negated) == (
        '((metadata["a"] not in [1] and (metadata["a"] not in [2.5] and metadata["a"] not in ["x"])) and '
        '(metadata["n"] <= 3 or filterable["kind"]["n"] != "number"))'
    )


def test_a_collection_without_field_kinds_refuses_only_what_needs_them() -> None:
    assert filter_expression(None, parse_filter({"n": {"$gt": 3}, "s": {"$ne": "x"}}), filterable=False)
    for needs_kinds in ({"n": {"$exists": True}}, {"d": {"$gte": "2024-01-01"}}, {"$not": {"n": {"$lt": 1}}}):
        with pytest.raises(InvalidRequest, match="need a collection made by this version"):
            filter_expression(None, parse_filter(needs_kinds), filterable=False)


def test_same_answers_as_faiss_exact_search(milvus: MilvusStore, faiss_index: SearchIndex, queries: np.ndarray) -> None:
    assert milvus.size == faiss_index.size == 220 and milvus.languages == faiss_index.languages
    assert milvus.group_fields == faiss_index.group_fields
    for languages, raw in [
        (None, None),
        (["de", "zh"], None),
        (None, {"group": "p003"}),
        (["en"], {"title": "Super_Bowl_50"}),
        (None, {"title": 1}),
    ]:
        where = parse_filter(raw) if raw else None
        expected = faiss_index.search(queries, 10, languages, where)
        assert_same_rankings(milvus.search(queries, 10, languages, where), expected)
    grouped = milvus.search_grouped(queries, 4, "group", ["de", "en", "es"])
    expected_groups = faiss_index.search_grouped(queries, 4, "group", ["de", "en", "es"])
    assert [[(g.value, len(g.members)) for g in groups] for groups in grouped] == [
        [(g.value, len(g.members)) for g in groups] for groups in expected_groups
    ]


def test_user_values_cannot_widen_an_expression(milvus: MilvusStore, queries: np.ndarray) -> None:
    """An injection through a filter value, a field name and document ids: each matches only what it spells."""
    sneaky = 'x" or lang != "'
    vector = queries[:1]
    milvus.upsert([Document("sneaky", "text", "en", {"note": sneaky, 'k"ey': "v"})], vector)
    assert milvus.search(vector, 50, where=parse_filter({"group": sneaky})) == [[]]
    assert [h.document.id for h in milvus.search(vector, 50, where=parse_filter({"note": sneaky}))[0]] == ["sneaky"]
    assert [h.document.id for h in milvus.search(vector, 50, where=parse_filter({'k"ey': "v"}))[0]] == ["sneaky"]
    # "a']||id not in ['b" makes MilvusClient.get(ids=) return every row (and delete(ids=) delete it)
    for doc_id in ("a']||id not in ['b", 'a"]||id not in ["b', 'a"||id!="', "a\\"):
        assert milvus.get(doc_id) is None
        if "'" in doc_id:  # refused on Milvus Lite before any expression is built (next test)
            with pytest.raises(InvalidRequest, match="single quote"):
                milvus.delete([doc_id])
        else:
            assert milvus.delete([doc_id]) == []
    assert milvus.size == 221
    milvus.upsert([Document('q"uote\\', "text", "en")], vector)
    assert milvus.get('q"uote\\').id == 'q"uote\\' and milvus.delete(['q"uote\\', "missing"]) == ['q"uote\\']
    assert milvus.size == 221


OPERATOR_TEMPLATES = [
    {"F": "V"},
    {"F": {"$eq": "V"}},
    {"F": {"$ne": "V"}},
    {"F": {"$in": ["V", "other"]}},
    {"F": {"$nin": ["V"]}},
    {"F": {"$exists": True}},
    {"F": {"$exists": False}},
    {"F": {"$gt": "2024-01-01"}},
    {"F": {"$lte": 5}},
    {"$not": {"F": "V"}},
    {"$or": [{"F": "V"}, {"F": {"$lt": 0}}]},
    {"$and": [{"F": {"$ne": "V"}}, {"$not": {"F": {"$gte": 3}}}]},
]


def test_every_operator_matches_only_what_it_spells(milvus: MilvusStore, queries: np.ndarray) -> None:
    """Values and field names that would end a string literal or an expression, in every operator: Milvus selects
    exactly what the reference meaning selects, no more."""
    sneaky_values = ['x" or id != "', "x\\", 'x\\" or id != "', "x' or id != '"]
    sneaky_fields = ['f"] or id != ["', "f\\", "f' or '"]
    documents = [
        Document(f"sneaky-{i}-{j}", "text", "en", {field: value})
        for i, field in enumerate(sneaky_fields)
        for j, value in enumerate([*sneaky_values, 3, "2024-06-01"])
    ]
    milvus.upsert(documents, np.repeat(queries[:1], len(documents), axis=0))
    everything = {d.id: d for d in documents}
    others = {h.document.id for h in milvus.search(queries[:1], 500)[0]} - set(everything)  # none has the fields
    for template, field, value in itertools.product(OPERATOR_TEMPLATES, sneaky_fields, sneaky_values):
        raw = json.loads(json.dumps(template).replace('"F"', json.dumps(field)).replace('"V"', json.dumps(value)))
        where = parse_filter(raw)
        found = {h.document.id for h in milvus.search(queries[:1], 500, where=where)[0]}
        expected = {i for i, d in everything.items() if matches(d.metadata, where)}
        assert {i for i in found if i.startswith("sneaky-")} == expected, raw
        assert found - set(everything) == (others if matches({}, where) else set()), raw


def test_single_quotes_in_field_names_are_written_and_in_ids_refused_on_milvus_lite(
    milvus: MilvusStore, queries: np.ndarray
) -> None:
    """Milvus Lite's upsert and delete remove rows by an expression its storage layer does not escape: a key with a
    single quote made the write fail with an internal error (503). Field names go into the catalog by insert; an id
    with a quote gets a 422 that says why, before anything is written."""
    milvus.upsert([Document("quoted-field", "text", "en", {"it's": 1})], queries[:1])
    milvus.upsert([Document("quoted-field", "text again", "en", {"it's": 2})], queries[:1])
    assert "it's" in milvus.group_fields
    found = milvus.search(queries[:1], 5, where=parse_filter({"it's": 2}))[0]
    assert [h.document.id for h in found] == ["quoted-field"]
    with pytest.raises(InvalidRequest, match="single quote"):
        milvus.upsert([Document("it's", "text", "en")], queries[:1])
    assert milvus.get("it's") is None


def test_writes_replace_delete_and_extend_the_catalog(milvus: MilvusStore, queries: np.ndarray) -> None:
    milvus.upsert([Document("new", "first", "sw", {"shelf": 1})], queries[:1])
    milvus.upsert([Document("new", "second", "sw", {"shelf": 2})], queries[1:2])
    assert milvus.get("new") == Document("new", "second", "sw", {"shelf": 2}) and milvus.size == 221
    assert "sw" in milvus.languages and "shelf" in milvus.group_fields
    assert milvus.search(queries[1:2], 1, ["sw"])[0][0].document.id == "new"
    assert milvus.delete(["new", "never-there"]) == ["new"] and milvus.get("new") is None and milvus.size == 220
    with pytest.raises(GroupingError, match="no document has a metadata field 'nope'"):
        milvus.check_group_field("nope")
    milvus.upsert([Document("listed", "x", "en", {"group": ["p001", "p002"]})], queries[:1])
    with pytest.raises(GroupingError, match="hold a list or object"):
        milvus.search_grouped(queries[:1], 3, "group")
    with pytest.raises(InvalidRequest, match="text is over 65535 bytes"):
        milvus.upsert([Document("huge", "é" * 40000, "en")], queries[:1])


def test_a_collection_of_another_model_is_refused(milvus: MilvusStore, faiss_index: SearchIndex) -> None:
    other = CollectionIdentity("someone-else", "0" * 64, "fp32", faiss_index.dim)
    with pytest.raises(ManifestError, match=r"holds embeddings of model 'tiny-bert'.*not of 'someone-else'"):
        milvus.open(other)
    milvus.client.create_collection("foreign", dimension=4)
    foreign = MilvusStore(milvus.uri, collection="foreign")
    with pytest.raises(ManifestError, match="was not made by polyglot-search"):
        foreign.open(other)
    with pytest.raises(ManifestError, match="has no collection 'absent'"):
        MilvusStore(milvus.uri, collection="absent").open(other, create=False)


def test_identity_survives_in_the_collection_description(milvus: MilvusStore, faiss_index: SearchIndex) -> None:
    assert milvus.read_identity() == identity_of(faiss_index)
    assert json.loads(milvus.client.describe_collection("passages")["description"])["created_by"] == "polyglot-search"


def test_an_unreachable_server_is_a_503_within_the_timeout() -> None:
    with pytest.raises(StoreUnavailable, match=r"cannot connect to Milvus at http://127\.0\.0\.1:9"):
        MilvusStore("http://127.0.0.1:9", timeout_s=1.0)


def test_replacing_and_deleting_a_document_covers_all_its_passages(milvus: MilvusStore, queries: np.ndarray) -> None:
    base = milvus.size
    vectors = np.resize(queries, (4, queries.shape[1]))
    quoted = 'doc"] or id != ["x'  # an id that would widen an unescaped expression
    for doc_id in ("doc", quoted):
        four = [Document(f"{doc_id}#{i}", f"part {i}", "en", {"doc_id": doc_id, "chunk": i}) for i in range(4)]
        milvus.upsert(four, vectors, replacing=[doc_id])
    assert milvus.size == base + 8
    milvus.upsert([Document("doc", "now short", "en")], vectors[:1], replacing=["doc"])
    assert milvus.size == base + 5 and milvus.get("doc#0") is None and milvus.get("doc").text == "now short"
    assert milvus.delete([quoted]) == sorted(f"{quoted}#{i}" for i in range(4))
    assert milvus.delete(["doc"]) == ["doc"] and milvus.size == base
