"""What filters read, as numpy columns by slot: each passage's language and metadata values coded as small
integers. A filter is evaluated as boolean masks over the slots, so a passage costs a few bytes per field instead
of an entry in a Python set per value (the sets cost ~400 bytes per passage at 100,000 passages).
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np

from app.corpus import Document
from app.filters import AllOf, AnyOf, Bound, Condition, Filter, Negation, instant, value_key

ABSENT, NOT_SCALAR = -2, -1  # codes of a slot without the field, and of a list, object or null value


class GrowingColumn:
    """A numpy column that appends in amortised O(1) (capacity doubles), read as ``values``."""

    def __init__(self, values: np.ndarray) -> None:
        self._data = np.array(values)  # a copy: the column owns its buffer
        self._size = len(values)

    @property
    def values(self) -> np.ndarray:
        return self._data[: self._size]

    def extend(self, values: np.ndarray) -> None:
        end = self._size + len(values)
        self._reserve(end)
        self._data[self._size : end] = values
        self._size = end

    def grow_to(self, size: int, fill: int) -> None:
        """At least ``size`` values, the new ones ``fill``."""
        if size > self._size:
            self._reserve(size)
            self._data[self._size : size] = fill
            self._size = size

    def _reserve(self, size: int) -> None:
        if size > len(self._data):
            grown = np.empty(max(size, 2 * len(self._data), 1024), dtype=self._data.dtype)
            grown[: self._size] = self.values
            self._data = grown


class CodedColumn:
    """One value per slot, coded: ``keys[code]`` is the value (a ``value_key``); ``ABSENT`` / ``NOT_SCALAR``."""

    def __init__(self) -> None:
        self._codes = GrowingColumn(np.zeros(0, dtype=np.int32))
        self.code_of: dict[Any, int] = {}
        self.keys: list[Any] = []

    def set(self, slot: int, key: Any) -> None:
        """Slot ``slot`` holds the value ``key`` (None: a value that is not a scalar)."""
        code = NOT_SCALAR
        if key is not None:
            code = self.code_of.setdefault(key, len(self.keys))
            if code == len(self.keys):
                self.keys.append(key)
        self._store(slot, code)

    def clear(self, slot: int) -> None:
        self._store(slot, ABSENT)

    def _store(self, slot: int, code: int) -> None:
        self._codes.grow_to(slot + 1, ABSENT)
        self._codes.values[slot] = code

    def codes(self, size: int) -> np.ndarray:
        """The codes of slots ``0..size-1`` (``ABSENT`` past the column's end)."""
        values = self._codes.values
        if len(values) >= size:
            return values[:size]
        return np.concatenate([values, np.full(size - len(values), ABSENT, dtype=np.int32)])

    def having(self, keys: list[Any], size: int, at: np.ndarray | None = None) -> np.ndarray:
        """Mask of the slots ``0..size-1`` (or of the slots ``at``, all below ``size``) whose value is one of
        ``keys``."""
        values = self.codes(size) if at is None else self.codes(size)[at]
        codes = [self.code_of[key] for key in keys if key in self.code_of]
        if not codes:
            return np.zeros(len(values), dtype=bool)
        if len(codes) == 1:
            return values == codes[0]
        return np.isin(values, np.array(codes, dtype=np.int32))


class FilterColumns:
    """Languages and metadata of the live slots, and the filter masks over them. ``slots``: one past the highest
    slot ever held (masks have that length)."""

    def __init__(self) -> None:
        self.slots = 0
        self.language = CodedColumn()
        self.language_count: Counter[str] = Counter()
        self.fields: dict[str, CodedColumn] = {}
        # documents holding each metadata field, by whether its value is a scalar (grouping needs scalars)
        self.field_count: dict[bool, Counter[str]] = {True: Counter(), False: Counter()}
        self._instants: dict[str, float | None] = {}  # date strings met by range filters, parsed once

    def add(self, slot: int, document: Document) -> None:
        self.slots = max(self.slots, slot + 1)
        self.language.set(slot, document.lang)
        self.language_count[document.lang] += 1
        for name, value in document.metadata.items():
            key = value_key(value)
            self.fields.setdefault(name, CodedColumn()).set(slot, key)
            self.field_count[key is not None][name] += 1

    def remove(self, slot: int, document: Document) -> None:
        self.language.clear(slot)
        self._uncount(self.language_count, document.lang)
        for name, value in document.metadata.items():
            self.fields[name].clear(slot)
            self._uncount(self.field_count[value_key(value) is not None], name)

    @staticmethod
    def _uncount(counter: Counter[str], name: str) -> None:
        counter[name] -= 1
        if not counter[name]:
            del counter[name]

    def live(self) -> np.ndarray:
        return self.language.codes(self.slots) >= 0

    def allowed(self, languages: list[str] | None, where: Filter | None) -> np.ndarray | None:
        """The live slots a search may return (ascending), or None for all of them."""
        if languages is None and where is None:
            return None
        mask = self.live()
        if languages is not None:
            mask &= self.language.having(list(languages), self.slots)
        if where is not None:
            mask &= self._mask(where)
        return np.flatnonzero(mask)

    def slots_holding(self, field: str, keys: list[Any]) -> np.ndarray:
        """The slots whose ``field`` holds one of ``keys`` (ascending)."""
        column = self.fields.get(field)
        return np.zeros(0, np.int64) if column is None else np.flatnonzero(column.having(keys, self.slots))

    def _mask(self, node: Filter) -> np.ndarray:
        """The slots a filter allows (live or not: the caller masks by liveness)."""
        if isinstance(node, Negation):
            return ~self._mask(node.part)
        if isinstance(node, AllOf | AnyOf):
            masks = [self._mask(part) for part in node.parts]
            return np.logical_and.reduce(masks) if isinstance(node, AllOf) else np.logical_or.reduce(masks)
        return self._condition(node)

    def _condition(self, condition: Condition) -> np.ndarray:
        column = self.fields.get(condition.field)
        if column is None:
            column = CodedColumn()
        op, wanted = condition.op, condition.value
        if op == "exists":
            holds = column.codes(self.slots) != ABSENT
            return holds if wanted else ~holds
        if isinstance(wanted, tuple):  # $in, $nin
            mask = column.having([key for key in map(value_key, wanted) if key is not None], self.slots)
            return ~mask if op == "nin" else mask
        if not isinstance(wanted, Bound):  # $eq, $ne
            key = value_key(wanted)
            mask = column.having([key] if key is not None else [], self.slots)
            return ~mask if op == "ne" else mask
        matching = []
        for kind, value in column.keys:  # the field's distinct values, not its documents
            if wanted.kind == "number" and kind == "number":
                if wanted.compare(op, value):
                    matching.append((kind, value))
            elif wanted.kind == "instant" and kind == "string":
                if value not in self._instants:
                    self._instants[value] = instant(value)
                when = self._instants[value]
                if when is not None and wanted.compare(op, when):
                    matching.append((kind, value))
        return column.having(matching, self.slots)
