from __future__ import annotations

import math

import numpy as np
import pytest

from training.evaluate import RetrievalSet, evaluate, first_hits
from training.metrics import average_precision, rank_distance, ranks_of, recall_at


def test_ranks_count_strictly_higher_scores() -> None:
    scores = np.array([[0.9, 0.1, 0.5, 0.7]])
    assert ranks_of(scores, np.array([[0.5, 0.9]])).tolist() == [[3, 1]]


def test_average_precision_by_hand() -> None:
    # relevant at ranks 1, 3, 6: AP = (1/1 + 2/3 + 3/6) / 3
    assert math.isclose(average_precision(np.array([[3, 1, 6]]))[0], (1 + 2 / 3 + 0.5) / 3)
    assert average_precision(np.array([[4]]))[0] == 0.25  # one relevant item: AP = 1 / rank


def test_recall_and_rank_distance_by_hand() -> None:
    ranks = np.array([[1, 2, 30], [5, 11, 12]])
    assert recall_at(ranks, 1).tolist() == [1 / 3, 0.0]
    assert recall_at(ranks, 10).tolist() == [2 / 3, 1 / 3]
    assert rank_distance(ranks).tolist() == [29, 7]


class FixedEmbedder:
    """Embeddings chosen by hand so that every rank below is known."""

    name = "hand-made"

    def __init__(self, vectors: dict[str, list[float]]) -> None:
        self.vectors = vectors

    def encode(self, texts: list[str], kind: str) -> np.ndarray:
        return np.array([self.vectors[t] for t in texts], dtype=np.float32)


def test_evaluate_on_a_two_language_toy_set() -> None:
    """Two questions (a, b) in en and de; four candidates; every rank worked out by hand."""
    data = RetrievalSet(
        languages=["en", "de"],
        questions={"en": [("a", "qa-en"), ("b", "qb-en")], "de": [("a", "qa-de"), ("b", "qb-de")]},
        candidates=["ca-en", "cb-en", "ca-de", "cb-de"],
        candidate_lang=["en", "en", "de", "de"],
        answer={("a", "en"): 0, ("b", "en"): 1, ("a", "de"): 2, ("b", "de"): 3},
    )
    embedder = FixedEmbedder(
        {
            # candidates on a line: scores are just the query's weights
            "ca-en": [1, 0, 0, 0],
            "cb-en": [0, 1, 0, 0],
            "ca-de": [0, 0, 1, 0],
            "cb-de": [0, 0, 0, 1],
            # qa-en: ca-en .9, cb-de .8, ca-de .7, cb-en .1 -> multi ranks of (ca-en, ca-de) = 1, 3
            "qa-en": [0.9, 0.1, 0.7, 0.8],
            # qb-en: cb-en .9, cb-de .5 (rank 2), others lower -> ranks 1, 2
            "qb-en": [0.2, 0.9, 0.1, 0.5],
            # qa-de: ca-de .9, ca-en .3, cb-de .4 -> ca-en rank 3; ranks 3, 1
            "qa-de": [0.3, 0.2, 0.9, 0.4],
            # qb-de: cb-en .6 top, cb-de .5 second -> ranks 1, 2
            "qb-de": [0.1, 0.6, 0.2, 0.5],
        }
    )
    r = evaluate(embedder, data)
    # multi AP: qa-en ranks (1,3): (1 + 2/3)/2; qb-en (1,2): 1; qa-de (3,1): (1 + 2/3)/2; qb-de (1,2): 1
    assert r["multi_map"] == pytest.approx(((5 / 6) * 2 + 2) / 4)
    # mono: en->en ranks: qa-en 1 (.9 vs .1), qb-en 1; de->de: qa-de 1, qb-de 1 (cb-de .5 > ca-de .2)
    assert r["mono_map"] == pytest.approx(1.0)
    # cross en->de: qa-en: ca-de .7 < cb-de .8 -> rank 2; qb-en: cb-de .5 > .1 -> 1  => (0.5 + 1)/2
    # cross de->en: qa-de: ca-en .3 > .2 -> 1; qb-de: cb-en .6 > .1 -> 1  => 1
    assert r["map_matrix"]["en"]["de"] == pytest.approx(0.75) and r["map_matrix"]["de"]["en"] == 1.0
    assert r["cross_map"] == pytest.approx(0.875)
    assert r["cross_r1"] == pytest.approx(0.75) and r["mono_r1"] == 1.0
    assert r["multi_r1"] == pytest.approx(0.5)  # each query has exactly one of its two relevant items at rank 1
    assert r["rank_distance"] == pytest.approx((2 + 1 + 2 + 1) / 4)
    assert r["multi_hit1"] == 1.0 and r["multi_hit10"] == 1.0  # every query's first result is one of its answers


def test_first_hits_count_one_slot_per_translation_group() -> None:
    groups = np.repeat(np.arange(12), 2)  # 24 candidates: 12 pairs of translations
    relevant = np.array([[22, 23], [22, 23], [20, 21]])
    rest = [i for i in range(24) if i not in (0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 22)]
    order = np.array(
        [
            [*range(10), 22, *rest],  # the answer at rank 11, but its group is the 6th group shown
            [22, *range(10), *rest],  # the answer first
            [0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 22, 23],  # 10 groups first
        ]
    )
    hits = first_hits(order, relevant, groups)
    assert hits["hit1"].tolist() == [False, True, False]
    assert hits["hit10"].tolist() == [False, True, False]
    assert hits["group_hit10"].tolist() == [True, True, False]  # row 3: the answer's group is the 11th


def test_translation_groups_join_the_answers_of_one_question() -> None:
    data = RetrievalSet(
        languages=["en", "de"],
        candidates=["a-en", "x-en", "a-de", "y-de", "z-de"],
        candidate_lang=["en", "en", "de", "de", "de"],
        answer={("a", "en"): 0, ("a", "de"): 2, ("b", "en"): 1, ("b", "de"): 3},
    )
    groups = data.translation_groups()
    assert groups[0] == groups[2] and groups[1] == groups[3]
    assert len({groups[0], groups[1], groups[4]}) == 3  # a sentence no question points to stands alone
