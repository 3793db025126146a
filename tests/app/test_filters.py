"""The filter language: what parses, what is refused (naming the part), and what each operator means."""

from __future__ import annotations

import random

import pytest

from app.filters import MAX_CONDITIONS, MAX_DEPTH, AllOf, AnyOf, Condition, FilterError, Negation, matches, parse_filter
from tests.filter_cases import random_filter, random_metadata


def test_equality_form_and_operators_parse_to_one_tree() -> None:
    tree = parse_filter({"source": "handbook", "price": {"$gte": 10, "$lt": 20}, "$or": [{"a": 1}, {"$not": {"b": 2}}]})
    assert isinstance(tree, AllOf) and len(tree.parts) == 4
    assert tree.parts[0] == Condition("source", "eq", "handbook")
    assert [part.op for part in tree.parts[1:3]] == ["gte", "lt"]  # type: ignore[union-attr]
    assert isinstance(tree.parts[3], AnyOf) and isinstance(tree.parts[3].parts[1], Negation)


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({}, r"^filters: an empty filter"),
        ({"a": None}, r"^filters\.a: null is not a value"),
        ({"a": [1, 2]}, r'^filters\.a: a list is not a value to equal; for "one of these" use \{"\$in"'),
        ({"a": {}}, r"^filters\.a: an empty condition"),
        ({"a": {"$regex": "x"}}, r"^filters\.a\.\$regex: unknown operator; a field takes \$eq, \$ne"),
        ({"$nor": []}, r"^filters\.\$nor: unknown operator"),
        ({"$or": []}, r"^filters\.\$or: takes a non-empty list"),
        ({"$or": [{"a": 1}, 5]}, r"^filters\.\$or\[1\]: a filter is a JSON object, not a number"),
        ({"$and": [{"a": {"$in": "x"}}]}, r"^filters\.\$and\[0\]\.a\.\$in: takes a list of values, not a string"),
        ({"a": {"$in": [1, {"k": 2}]}}, r"^filters\.a\.\$in\[1\]: compares with a string, number or boolean"),
        ({"a": {"$gt": "soon"}}, r"^filters\.a\.\$gt: a range takes a number or an ISO-8601 date"),
        ({"a": {"$gt": True}}, r"^filters\.a\.\$gt: a range takes a number"),
        ({"a": {"$lt": "2024-13-45"}}, r"^filters\.a\.\$lt: a range takes"),
        ({"a": {"$exists": 1}}, r"^filters\.a\.\$exists: takes true or false, not a number"),
        ({"a": {"$ne": float("inf")}}, r"^filters\.a\.\$ne: inf is not a finite number"),
        ({"x" * 129: 1}, r"a field name has 1 to 128 characters"),
        ({"a": {"$in": list(range(1025))}}, r"^filters\.a\.\$in: at most 1024 values"),
    ],
)
def test_a_bad_filter_is_refused_naming_its_part(raw: dict, message: str) -> None:
    with pytest.raises(FilterError, match=message):
        parse_filter(raw)


def test_depth_and_size_are_limited() -> None:
    nested: dict = {"a": 1}
    for _ in range(MAX_DEPTH):
        nested = {"$not": nested}
    parse_filter(nested)
    with pytest.raises(FilterError, match=rf"nest more than {MAX_DEPTH} levels"):
        parse_filter({"$not": nested})
    parse_filter({f"f{i}": i for i in range(MAX_CONDITIONS)})
    with pytest.raises(FilterError, match=rf"filters\.\$or\[1\]\.f0: a filter holds at most {MAX_CONDITIONS}"):
        parse_filter({"$or": [{f"f{i}": i for i in range(MAX_CONDITIONS)}, {"f0": 1}]})


@pytest.mark.parametrize(
    ("metadata", "raw", "expected"),
    [
        ({"n": 1.0}, {"n": 1}, True),  # numbers compare as numbers
        ({"n": True}, {"n": 1}, False),  # true is not 1
        ({"n": "1"}, {"n": 1}, False),
        ({}, {"n": {"$ne": 1}}, True),  # $ne and $nin hold without the field
        ({}, {"n": {"$nin": [1]}}, True),
        ({"n": [1, 2]}, {"n": {"$in": [1]}}, False),  # lists are not matched element-wise
        ({"n": [1, 2]}, {"n": {"$exists": True}}, True),
        ({"n": 2.5}, {"n": {"$gt": 2, "$lte": 2.5}}, True),
        ({"n": "3"}, {"n": {"$gt": 2}}, False),  # a string is not a number
        ({"d": "2024-01-01T01:00:00+02:00"}, {"d": {"$lt": "2024-01-01"}}, True),  # instants, not strings
        ({"d": "2024-01-01"}, {"d": {"$gte": "2024-01-01T00:00:00Z"}}, True),  # no offset: UTC
        ({"d": "2024-01-01"}, {"d": {"$gt": 0}}, False),  # a date is not a number
        ({"a": 1, "b": 2}, {"$or": [{"a": 2}, {"$not": {"b": 3}}]}, True),
    ],
)
def test_meaning(metadata: dict, raw: dict, expected: bool) -> None:
    assert matches(metadata, parse_filter(raw)) is expected


def test_random_filters_parse_and_evaluate() -> None:
    rng = random.Random(7)
    documents = [random_metadata(rng) for _ in range(50)]
    for _ in range(300):
        tree = parse_filter(random_filter(rng))
        negated = Negation(tree)
        for metadata in documents:
            assert matches(metadata, negated) is not matches(metadata, tree)
