"""Metadata filter expressions: what ``filters`` may say in a search, a count, a listing or a delete.

A filter is JSON in the style of MongoDB and Qdrant: ``{"field": value}`` (equality), ``{"field": {"$op": ...}}``
with ``$eq``, ``$ne``, ``$in``, ``$nin``, ``$gt``, ``$gte``, ``$lt``, ``$lte``, ``$exists``, and ``$and`` / ``$or`` /
``$not`` around filters; the keys of one object all hold (docs/API.md, Filters). ``parse_filter`` checks it once
into a small tree that each store compiles (the embedded store into the set of rows a search may return, Milvus
into a boolean expression); ``matches`` is the meaning both must have, used as the reference in their tests.

Values compare by kind: numbers with numbers (``1`` equals ``1.0``), strings with strings, booleans with booleans
(``true`` is not ``1``). A range takes a number, or an ISO-8601 date or time, which compares as an instant with the
stored strings that are dates (a date or a time without an offset is UTC). ``$ne`` and ``$nin`` hold for documents
without the field, as ``$not`` does.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

MAX_DEPTH = 8  # nested $and / $or / $not
MAX_CONDITIONS = 64  # field conditions in one filter
MAX_IN_VALUES = 1024  # values of one $in / $nin
MAX_FIELD_CHARS = 128

Scalar = str | int | float | bool
Op = Literal["eq", "ne", "in", "nin", "gt", "gte", "lt", "lte", "exists"]
RANGE_OPS: dict[str, Op] = {"$gt": "gt", "$gte": "gte", "$lt": "lt", "$lte": "lte"}
COMBINATORS = ("$and", "$or", "$not")

ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}(?:[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d{1,9})?)?(?:Z|[+-]\d{2}:?\d{2})?)?$")


class FilterError(ValueError):
    """A filter that cannot be served; the message starts with the path of the offending part."""


@dataclass(frozen=True)
class Bound:
    """A range's limit: a number, or a date/time as seconds since the epoch (``instant``)."""

    kind: Literal["number", "instant"]
    value: float | int
    given: str | int | float

    def holds(self, op: Op, stored: object) -> bool:
        """Whether a stored value satisfies ``stored <op> self``; a value of another kind never does."""
        if self.kind == "number":
            if isinstance(stored, bool) or not isinstance(stored, int | float):
                return False
            return self.compare(op, stored)
        when = instant(stored)
        return when is not None and self.compare(op, when)

    def compare(self, op: Op, left: float | int) -> bool:
        """``left <op> self`` for a number, or an instant, of this bound's kind."""
        if op == "gt":
            return left > self.value
        if op == "gte":
            return left >= self.value
        if op == "lt":
            return left < self.value
        return left <= self.value


@dataclass(frozen=True)
class Condition:
    """One field compared: ``value`` is a scalar (eq, ne), a tuple of scalars (in, nin), a ``Bound`` (ranges) or a
    bool (exists)."""

    field: str
    op: Op
    value: Scalar | tuple[Scalar, ...] | Bound


@dataclass(frozen=True)
class AllOf:
    parts: tuple[Filter, ...]


@dataclass(frozen=True)
class AnyOf:
    parts: tuple[Filter, ...]


@dataclass(frozen=True)
class Negation:
    part: Filter


Filter = Condition | AllOf | AnyOf | Negation


def value_key(value: object) -> tuple[str, Any] | None:
    """A scalar's identity for equality and grouping: its kind and value, so that 1 and 1.0 are one value and
    ``true`` another; None for what is not a scalar."""
    if isinstance(value, bool):
        return "bool", value
    if isinstance(value, int | float):
        return "number", value  # 1 == 1.0 and they hash alike
    if isinstance(value, str):
        return "string", value
    return None


Kind = Literal["number", "instant", "string", "bool", "null", "other"]
KINDS: tuple[Kind, ...] = ("number", "instant", "string", "bool", "null", "other")


def kind_of(value: object) -> Kind:
    """What a stored value is to the filters: a range compares numbers with numbers and instants with instants."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "instant" if instant(value) is not None else "string"
    return "other"


def instant(value: object) -> float | None:
    """An ISO-8601 date or time string as seconds since the epoch (no offset: UTC); None for anything else."""
    if not isinstance(value, str) or not ISO_DATE.match(value):
        return None
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.timestamp()


def parse_filter(raw: Mapping[str, object]) -> Filter:
    """Check a filter's JSON and return its tree; ``FilterError`` names the part that is wrong."""
    counter = [0]
    return _parse_object(raw, "filters", 0, counter)


def _parse_object(raw: object, path: str, depth: int, counter: list[int]) -> Filter:
    if not isinstance(raw, Mapping):
        raise FilterError(f"{path}: a filter is a JSON object, not {_kind(raw)}")
    if not raw:
        raise FilterError(f"{path}: an empty filter; leave `filters` out to search everything")
    if depth > MAX_DEPTH:
        raise FilterError(f"{path}: $and / $or / $not nest more than {MAX_DEPTH} levels")
    parts: list[Filter] = []
    for key, value in raw.items():
        where = f"{path}.{key}"
        if key in ("$and", "$or"):
            if not isinstance(value, list) or not value:
                raise FilterError(f"{where}: takes a non-empty list of filters")
            inner = tuple(_parse_object(item, f"{where}[{i}]", depth + 1, counter) for i, item in enumerate(value))
            parts.append(AllOf(inner) if key == "$and" else AnyOf(inner))
        elif key == "$not":
            parts.append(Negation(_parse_object(value, where, depth + 1, counter)))
        elif key.startswith("$"):
            raise FilterError(f"{where}: unknown operator; at this level: a field name, $and, $or or $not")
        else:
            parts.extend(_parse_field(key, value, where, counter))
    return parts[0] if len(parts) == 1 else AllOf(tuple(parts))


def _parse_field(field: str, raw: object, path: str, counter: list[int]) -> list[Condition]:
    if not field or len(field) > MAX_FIELD_CHARS:
        raise FilterError(f"{path}: a field name has 1 to {MAX_FIELD_CHARS} characters")
    if isinstance(raw, Mapping):
        if not raw:
            raise FilterError(f"{path}: an empty condition; give a value or an operator such as $gte")
        ops = list(raw.items())
    elif isinstance(raw, list):
        raise FilterError(f'{path}: a list is not a value to equal; for "one of these" use {{"$in": [...]}}')
    else:
        ops = [("$eq", raw)]
    conditions = []
    for op, value in ops:
        where = path if op == "$eq" and not isinstance(raw, Mapping) else f"{path}.{op}"
        counter[0] += 1
        if counter[0] > MAX_CONDITIONS:
            raise FilterError(f"{where}: a filter holds at most {MAX_CONDITIONS} field conditions")
        conditions.append(_parse_condition(field, op, value, where))
    return conditions


def _parse_condition(field: str, op: str, value: object, path: str) -> Condition:
    if op in ("$eq", "$ne"):
        return Condition(field, "eq" if op == "$eq" else "ne", _scalar(value, path))
    if op in ("$in", "$nin"):
        if not isinstance(value, list):
            raise FilterError(f"{path}: takes a list of values, not {_kind(value)}")
        if len(value) > MAX_IN_VALUES:
            raise FilterError(f"{path}: at most {MAX_IN_VALUES} values, not {len(value)}")
        values = tuple(_scalar(item, f"{path}[{i}]") for i, item in enumerate(value))
        return Condition(field, "in" if op == "$in" else "nin", values)
    if op in RANGE_OPS:
        return Condition(field, RANGE_OPS[op], _bound(value, path))
    if op == "$exists":
        if not isinstance(value, bool):
            raise FilterError(f"{path}: takes true or false, not {_kind(value)}")
        return Condition(field, "exists", value)
    known = ", ".join(["$eq", "$ne", "$in", "$nin", *RANGE_OPS, "$exists"])
    raise FilterError(f"{path}: unknown operator; a field takes {known}")


def _scalar(value: object, path: str) -> Scalar:
    if value is None:
        raise FilterError(f'{path}: null is not a value to compare; use {{"$exists": false}}')
    if isinstance(value, float) and not math.isfinite(value):
        raise FilterError(f"{path}: {value} is not a finite number")
    if not isinstance(value, str | int | float | bool):
        raise FilterError(f"{path}: compares with a string, number or boolean, not {_kind(value)}")
    return value


def _bound(value: object, path: str) -> Bound:
    if isinstance(value, int | float) and not isinstance(value, bool):
        if not math.isfinite(value):
            raise FilterError(f"{path}: {value} is not a finite number")
        return Bound("number", value, value)
    when = instant(value)
    if when is None:
        raise FilterError(
            f"{path}: a range takes a number or an ISO-8601 date or time (2024-05-01, 2024-05-01T12:00:00Z), "
            f"not {value!r}"[:300]
        )
    assert isinstance(value, str)
    return Bound("instant", when, value)


def _kind(value: object) -> str:
    if value is None:
        return "null"
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean"}.get(type(value), "a number")


def matches(metadata: Mapping[str, object], node: Filter) -> bool:
    """Whether a document's metadata satisfies the filter: the reference meaning of every operator."""
    if isinstance(node, AllOf):
        return all(matches(metadata, part) for part in node.parts)
    if isinstance(node, AnyOf):
        return any(matches(metadata, part) for part in node.parts)
    if isinstance(node, Negation):
        return not matches(metadata, node.part)
    present = node.field in metadata
    stored = metadata.get(node.field)
    if node.op == "exists":
        return present == node.value
    if node.op in ("eq", "ne"):
        equal = present and value_key(stored) is not None and value_key(stored) == value_key(node.value)
        return equal if node.op == "eq" else not equal
    if node.op in ("in", "nin"):
        assert isinstance(node.value, tuple)
        key = value_key(stored) if present else None
        found = key is not None and key in {value_key(v) for v in node.value}
        return found if node.op == "in" else not found
    assert isinstance(node.value, Bound)
    return present and node.value.holds(node.op, stored)


def fields_of(node: Filter) -> set[str]:
    """The metadata fields a filter reads."""
    if isinstance(node, AllOf | AnyOf):
        return set().union(*(fields_of(part) for part in node.parts))
    if isinstance(node, Negation):
        return fields_of(node.part)
    return {node.field}
