from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from training.samplers import BatchSampler

LANGS = ["ar", "de", "en", "es", "zh"]


def parallel(n_ids: int, languages: list[str] = LANGS) -> dict[str, list[str]]:
    return {f"q{i}": list(languages) for i in range(n_ids)}


ids_and_batch = st.integers(min_value=2, max_value=40).flatmap(
    lambda n: st.tuples(st.just(n), st.integers(min_value=2, max_value=n))
)


@given(ids_and_batch, st.integers(0, 10_000), st.integers(0, 50))
def test_mono_batches_are_one_language(shape: tuple[int, int], seed: int, step: int) -> None:
    n_ids, batch_size = shape
    batch = BatchSampler(parallel(n_ids), batch_size, "mono", seed=seed).batch(step)
    assert batch.kind == "mono" and len(batch.pairs) == batch_size
    assert len({p.query_lang for p in batch.pairs} | {p.passage_lang for p in batch.pairs}) == 1


@given(ids_and_batch, st.integers(0, 10_000), st.integers(0, 50))
def test_cross_pairs_never_share_a_language(shape: tuple[int, int], seed: int, step: int) -> None:
    n_ids, batch_size = shape
    batch = BatchSampler(parallel(n_ids), batch_size, "cross", seed=seed).batch(step)
    assert batch.kind == "cross" and all(p.query_lang != p.passage_lang for p in batch.pairs)


@given(ids_and_batch, st.sampled_from(["mono", "cross", "hybrid"]), st.integers(0, 10_000), st.integers(0, 50))
def test_no_id_twice_in_a_batch(shape: tuple[int, int], strategy: str, seed: int, step: int) -> None:
    n_ids, batch_size = shape
    batch = BatchSampler(parallel(n_ids), batch_size, strategy, seed=seed).batch(step)  # type: ignore[arg-type]
    ids = [p.id for p in batch.pairs]
    assert len(ids) == len(set(ids)) == batch_size


@settings(max_examples=30)
@given(st.floats(0.0, 1.0), st.integers(0, 10_000))
def test_hybrid_mono_share_is_alpha(alpha: float, seed: int) -> None:
    n = 1500
    sampler = BatchSampler(parallel(20), 4, "hybrid", alpha=alpha, seed=seed)
    mono = sum(sampler.batch(step).kind == "mono" for step in range(n))
    tolerance = 4.5 * math.sqrt(n * alpha * (1 - alpha)) + 1  # binomial, ~4.5 sigma
    assert abs(mono - alpha * n) <= tolerance


@given(st.integers(0, 10_000), st.sampled_from(["mono", "cross", "hybrid"]))
def test_same_seed_same_batches_and_ranks_differ(seed: int, strategy: str) -> None:
    def draw(rank: int) -> list:
        sampler = BatchSampler(parallel(30), 8, strategy, seed=seed, rank=rank)  # type: ignore[arg-type]
        return [sampler.batch(step) for step in range(5)]

    assert draw(0) == draw(0)
    assert draw(0) != draw(1)


def test_cross_uses_only_the_languages_an_id_has() -> None:
    uneven = {"a": ["en", "de"], "b": ["en", "zh"], "c": ["es", "en"], "d": ["de", "zh"]}
    for step in range(50):
        for pair in BatchSampler(uneven, 3, "cross", seed=1).batch(step).pairs:
            assert {pair.query_lang, pair.passage_lang} <= set(uneven[pair.id])


def test_impossible_batches_are_refused() -> None:
    with pytest.raises(ValueError, match="no language has 10 ids"):
        BatchSampler(parallel(5), 10, "mono")
    with pytest.raises(ValueError, match="cross batches need 4"):
        BatchSampler({"a": ["en"], "b": ["en", "de"], "c": ["de"], "d": ["de"]}, 4, "cross")
    with pytest.raises(ValueError, match="alpha"):
        BatchSampler(parallel(5), 2, "hybrid", alpha=1.5)
