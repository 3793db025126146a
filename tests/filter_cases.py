"""Random metadata and random filters, for the property tests that hold each store to ``app.filters.matches``."""

from __future__ import annotations

import random
from typing import Any

FIELDS = ["a", "b", "when", "tag"]
SCALARS: list[Any] = [0, 1, 1.0, 2.5, -3, True, False, "x", "y", "1", "", "2024-01-01", "2024-01-01T12:00:00+02:00",
                      "2023-12-31T23:30:00Z", "2024-06-30T08:00", "not a date"]  # fmt: skip
OTHERS: list[Any] = [[1, 2], ["x"], {"k": 1}, []]
BOUNDS: list[Any] = [0, 1, 1.5, 2.5, -3, "2024-01-01", "2024-01-01T10:00:00Z", "2023-12-31", "2024-06-30T08:00:00Z"]


def random_metadata(rng: random.Random) -> dict[str, Any]:
    metadata: dict[str, Any] = {}
    for name in FIELDS:
        roll = rng.random()
        if roll < 0.25:
            continue  # missing
        metadata[name] = rng.choice(OTHERS) if roll > 0.9 else rng.choice(SCALARS)
    return metadata


def random_filter(rng: random.Random, depth: int = 0) -> dict[str, Any]:
    roll = rng.random()
    if depth < 3 and roll < 0.3:
        combinator = rng.choice(["$and", "$or", "$not"])
        if combinator == "$not":
            return {"$not": random_filter(rng, depth + 1)}
        return {combinator: [random_filter(rng, depth + 1) for _ in range(rng.randint(1, 3))]}
    field = rng.choice(FIELDS)
    op = rng.choice(["eq", "$eq", "$ne", "$in", "$nin", "$gt", "$gte", "$lt", "$lte", "$exists"])
    if op == "eq":
        return {field: rng.choice(SCALARS)}
    if op in ("$in", "$nin"):
        return {field: {op: rng.sample(SCALARS, rng.randint(1, 4))}}
    if op == "$exists":
        return {field: {op: rng.random() < 0.5}}
    if op.startswith("$g") or op.startswith("$l"):
        return {field: {op: rng.choice(BOUNDS)}}
    return {field: {op: rng.choice(SCALARS)}}
