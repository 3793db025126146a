"""One query's figures, checked by hand; the bootstrap interval."""

from __future__ import annotations

import math

import numpy as np
import pytest

from app.evaluation.metrics import own_language_share, paired_bootstrap, query_figures, rank_distance


def test_figures_of_one_ranking() -> None:
    grades = {"a": 2, "b": 1, "c": 1, "z": 0}  # z judged not relevant
    ranked = ["x", "a", "z", "b"] + [f"n{i}" for i in range(200)]  # c is never retrieved
    figures = query_figures(ranked, grades)
    dcg = 2 / math.log2(3) + 1 / math.log2(5)
    ideal = 2 + 1 / math.log2(3) + 1 / math.log2(4)
    assert figures["ndcg@10"] == pytest.approx(dcg / ideal)
    assert figures["mrr@10"] == 0.5 and figures["hit@1"] == 0 and figures["hit@10"] == 1
    assert figures["recall@10"] == pytest.approx(2 / 3) and figures["recall@100"] == pytest.approx(2 / 3)
    assert figures["map"] == pytest.approx((1 / 2 + 2 / 4) / 3)  # c, never found, counts as missed
    assert query_figures(["a", "b", "c"], grades)["ndcg@10"] == pytest.approx(1.0)
    with pytest.raises(ValueError, match="without relevant documents"):
        query_figures(ranked, {"z": 0})


def test_language_figures() -> None:
    assert own_language_share(["de", "en", "de", "zh"], "de", k=4) == 0.5
    assert own_language_share([], "de") is None
    langs = {"a-de": "de", "a-en": "en", "a-zh": "zh", "b-de": "de"}
    ranked = ["a-de", "x", "a-en"]
    assert rank_distance(ranked, {"a-de": 1, "a-en": 1}, langs, depth=100) == 2
    assert rank_distance(ranked, {"a-de": 1, "a-zh": 1}, langs, depth=100) == 100  # a-zh below the depth: 101
    assert rank_distance(ranked, {"a-de": 1, "b-de": 1}, langs, depth=100) is None  # one language: no distance


def test_paired_bootstrap_interval_holds_the_mean_and_narrows_with_more_queries() -> None:
    rng = np.random.default_rng(1)
    base = rng.random(400)
    better = base + 0.05 + rng.normal(0, 0.05, 400)
    mean, low, high = paired_bootstrap(base, better)
    assert low < mean < high and low > 0 and mean == pytest.approx(0.05, abs=0.01)
    _, low_few, high_few = paired_bootstrap(base[:40], better[:40])
    assert high_few - low_few > high - low
    assert paired_bootstrap(base, base) == (0.0, 0.0, 0.0)
