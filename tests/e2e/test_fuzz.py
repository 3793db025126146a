"""Property-based fuzzing of every operation in the OpenAPI spec (valid and invalid data), on both stores: no 5xx,
ever."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error

from tests.conftest import running_server, writable_server_env

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def fuzz_server(
    store: str, tiny_model: Path, tiny_index: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    env = writable_server_env(
        tiny_model,
        tiny_index,
        tmp_path_factory.mktemp("fuzz"),
        store,
        SEARCH_WRITE_API_KEYS="fuzz-key",
        SEARCH_SNAPSHOT_EVERY="20",
    )
    with running_server(env) as base:
        yield base


def operations(base: str) -> list[schemathesis.APIOperation]:
    schema = schemathesis.openapi.from_url(f"{base}/openapi.json")
    return [result.ok() for result in schema.get_all_operations()]


# The spec is read from the live server, so operations are enumerated inside the test rather than at collection.
# (schemathesis' pytest fixture loader does not work with this pytest version.)
@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_no_server_errors(fuzz_server: str, mode: GenerationMode) -> None:
    found = operations(fuzz_server)
    assert len(found) >= 9, [op.label for op in found]
    outcomes: Counter[int] = Counter()
    undocumented: dict[str, set[int]] = {}
    for operation in found:

        @settings(max_examples=100, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
        @given(case=operation.as_strategy(generation_mode=mode))
        def fuzz(case: schemathesis.Case) -> None:
            # Most cases carry the write key, so the fuzzer gets past authentication into the write paths.
            if "Authorization" not in (case.headers or {}) and hash(repr(case.body)) % 4:
                case.headers = {**(case.headers or {}), "Authorization": "Bearer fuzz-key"}
            response = case.call_and_validate(checks=[not_a_server_error], timeout=30)
            outcomes[response.status_code] += 1
            documented = {int(status) for status in case.operation.definition.raw["responses"]}
            if response.status_code not in documented:  # the OpenAPI document must list every status it answers
                undocumented.setdefault(case.operation.label, set()).add(response.status_code)

        try:
            fuzz()
        except Unsatisfiable:
            assert mode is GenerationMode.NEGATIVE  # e.g. GET /health has no input to get wrong
    assert all(status < 500 for status in outcomes), outcomes
    assert undocumented == {}, f"answered with statuses the OpenAPI document does not list: {undocumented}"
    # It reached both sides: answers (past auth and validation) and refusals. Measured: positive ~56 x 200 and
    # ~550 x 4xx; negative ~44 x 200 and ~550 x 4xx.
    assert outcomes[200] > 20 and sum(n for status, n in outcomes.items() if 400 <= status < 500) > 100, outcomes
