"""What a document's metadata may hold: everything accepted must serialise back in every response that carries it."""

from __future__ import annotations

import json
import math

from hypothesis import given, settings
from hypothesis import strategies as st

from app.corpus import MAX_METADATA_DEPTH, metadata_problem
from app.schemas import DocumentOut, SearchResponse, SearchResult
from app.settings import Settings


def nested(levels: int, leaf: object = 1) -> dict:
    """``{"k": [{"k": [ ... leaf ]}]}`` with ``levels`` objects and arrays in all."""
    value: object = leaf
    for level in range(levels - 1, -1, -1):
        value = {"k": value} if level % 2 == 0 else [value]
    assert isinstance(value, dict)
    return value


def served_back(metadata: dict) -> dict:
    """The metadata as GET /documents and /search answer it (both responses must serialise)."""
    SearchResponse(
        results=[SearchResult(id="d", text="t", lang="en", score=1.0, rank=1, metadata=metadata)],
        query="q",
        top_k=1,
        languages=None,
        model="m",
        took_ms=1.0,
    ).model_dump_json()
    return json.loads(DocumentOut(id="d", text="t", lang="en", metadata=metadata).model_dump_json())["metadata"]


def test_the_poison_document_of_issue_15_is_refused_and_the_deepest_allowed_one_serialises() -> None:
    assert "more than 32 levels" in (metadata_problem(nested(256)) or "")
    assert metadata_problem(nested(MAX_METADATA_DEPTH)) is None
    assert metadata_problem(nested(MAX_METADATA_DEPTH + 1)) is not None
    deepest = Settings.model_fields["max_metadata_depth"].metadata[-1].le  # the most a deployment may allow
    assert metadata_problem(nested(deepest), deepest) is None
    assert served_back(nested(deepest)) == nested(deepest)


def test_nan_and_infinity_are_named() -> None:
    assert metadata_problem({"score": math.nan}) == "metadata['score'] is nan; JSON has no NaN or Infinity"
    assert "inf" in (metadata_problem({"a": [1, {"b": -math.inf}]}) or "")
    assert metadata_problem({"a": [1.5, None, True, "x", {"b": []}]}) is None


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=3), children, max_size=3),
    max_leaves=40,
)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.text(max_size=3), json_values, max_size=4), st.integers(1, 6))
def test_accepted_metadata_always_serialises_unchanged(metadata: dict, depth: int) -> None:
    if metadata_problem(metadata, depth) is None:
        assert served_back(metadata) == metadata
