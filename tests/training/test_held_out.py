from __future__ import annotations

import pytest

from training.data import Example, ParallelData
from training.held_out import eval_set_of, sharing_a_positive, split_held_out


def plain_pairs(positives: list[str]) -> ParallelData:
    data = ParallelData()
    for number, positive in enumerate(positives):
        data.add(Example(f"q{number:02d}", "en", f"question {number}", positive), "test")
    return data


def test_questions_on_one_paragraph_are_held_out_together() -> None:
    # 30 paragraphs with 1, 2 or 3 questions each
    positives = [f"paragraph {n}" for n in range(30) for _ in range(1 + n % 3)]
    data = plain_pairs(positives)
    clusters = sharing_a_positive(data)
    assert len(clusters) == 30 and sorted(len(ids) for ids in clusters.values()) == [1] * 10 + [2] * 10 + [3] * 10
    kept, held = split_held_out(data, 0.2, seed=3)
    assert {ex.positive for g in kept.by_id.values() for ex in g.values()}.isdisjoint(
        {ex.positive for g in held.by_id.values() for ex in g.values()}
    )
    held_paragraphs = {ex.positive for g in held.by_id.values() for ex in g.values()}
    assert len(held_paragraphs) == 6 and len(kept.by_id) + len(held.by_id) == len(positives)
    assert split_held_out(data, 0.2, seed=3)[1].ids == held.ids  # seeded


def test_distinct_positives_hold_out_ids() -> None:
    data = plain_pairs([f"paragraph {n}" for n in range(10)])
    assert len(split_held_out(data, 0.3, seed=0)[1].by_id) == 3
    with pytest.raises(ValueError, match="holds out 0"):
        split_held_out(data, 0.01, seed=0)


def test_the_held_out_corpus_has_each_paragraph_once() -> None:
    data = plain_pairs(["A", "A", "B"])
    data.add(Example("q02", "de", "Frage 2", "B auf Deutsch"), "test")
    evaluation = eval_set_of(data)
    assert [doc.id for doc in evaluation.corpus] == ["q00/en", "q02/de", "q02/en"]
    assert evaluation.qrels["q01/en"] == {"q00/en": 1}  # the second question on paragraph A
    assert evaluation.qrels["q02/en"] == {"q02/de": 1, "q02/en": 1}  # its translation is relevant too
