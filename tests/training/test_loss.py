from __future__ import annotations

import math

import pytest
import torch

from training.collator import copies_of_positives
from training.loss import info_nce


def test_info_nce_matches_a_hand_computed_value() -> None:
    queries = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    positives = torch.tensor([[1.0, 0.0], [0.6, 0.8]])
    # logits / 0.5: query 0 -> [1, 0.6] / 0.5 = [2, 1.2]; query 1 -> [0, 0.8] / 0.5 = [0, 1.6]
    expected = (
        -math.log(math.exp(2) / (math.exp(2) + math.exp(1.2))) - math.log(math.exp(1.6) / (1 + math.exp(1.6)))
    ) / 2
    assert math.isclose(float(info_nce(queries, positives, temperature=0.5)), expected, rel_tol=1e-6)


def test_hard_negatives_join_every_querys_candidates() -> None:
    queries = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    positives = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    negatives = torch.tensor([[0.8, 0.6]])
    # query 0: logits [1, 0, 0.8]; query 1: [0, 1, 0.6] (temperature 1)
    expected = (-math.log(math.e / (math.e + 1 + math.exp(0.8))) - math.log(math.e / (1 + math.e + math.exp(0.6)))) / 2
    assert math.isclose(float(info_nce(queries, positives, negatives, temperature=1.0)), expected, rel_tol=1e-6)


def test_translation_positives_are_scored_against_the_negatives_alone() -> None:
    queries = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    positives = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    translations = torch.tensor([[0.6, 0.8], [0.8, 0.6]])
    negatives = torch.tensor([[0.0, -1.0]])
    # temperature 1. query 0: positives 1 (own) and 0.6 (its translation); negatives: pair 1's positive 0 and its
    # translation 0.8, the hard negative 0. query 1: positives 1 and 0.6; negatives 0, 0.6 (pair 0's translation), -1.
    negatives_0 = math.exp(0) + math.exp(0.8) + math.exp(0)
    negatives_1 = math.exp(0) + math.exp(0.8) + math.exp(-1)

    def term(positive: float, negatives_sum: float) -> float:
        return -math.log(math.exp(positive) / (math.exp(positive) + negatives_sum))

    expected = (term(1, negatives_0) + term(0.6, negatives_0) + term(1, negatives_1) + term(0.6, negatives_1)) / 4
    loss = info_nce(queries, positives, negatives, temperature=1.0, translation_positives=translations)
    assert math.isclose(float(loss), expected, rel_tol=1e-6)


def test_the_masked_form_with_no_translations_equals_the_plain_loss() -> None:
    generator = torch.Generator().manual_seed(0)
    queries, positives, negatives = (torch.randn(n, 8, generator=generator) for n in (4, 4, 6))
    plain = info_nce(queries, positives, negatives, temperature=0.1)
    masked = info_nce(queries, positives, negatives, temperature=0.1, translation_positives=torch.empty(0, 8))
    assert torch.allclose(plain, masked, atol=1e-6)


def test_translation_positives_must_be_whole_blocks() -> None:
    queries = torch.eye(2)
    with pytest.raises(ValueError, match="whole blocks"):
        info_nce(queries, queries, translation_positives=torch.ones(3, 2))


def test_symmetric_adds_the_passage_to_query_direction() -> None:
    queries = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    positives = torch.tensor([[1.0, 0.0], [0.6, 0.8]])
    # logits / 0.5 as in the first test; passage 0 -> queries [2, 0]; passage 1 -> [1.2, 1.6]
    query_to_passage = (
        -math.log(math.exp(2) / (math.exp(2) + math.exp(1.2))) - math.log(math.exp(1.6) / (1 + math.exp(1.6)))
    ) / 2
    passage_to_query = (
        -math.log(math.exp(2) / (math.exp(2) + 1)) - math.log(math.exp(1.6) / (math.exp(1.2) + math.exp(1.6)))
    ) / 2
    loss = info_nce(queries, positives, temperature=0.5, symmetric=True)
    assert math.isclose(float(loss), (query_to_passage + passage_to_query) / 2, rel_tol=1e-6)


def test_the_passage_to_query_direction_leaves_hard_negatives_and_translations_out() -> None:
    generator = torch.Generator().manual_seed(0)
    queries, positives, translations, negatives = (torch.randn(n, 8, generator=generator) for n in (4, 4, 4, 6))
    passage_to_query = torch.nn.functional.cross_entropy(positives @ queries.T / 0.1, torch.arange(4))
    for extra in ({}, {"translation_positives": translations}):
        one_way = info_nce(queries, positives, negatives, temperature=0.1, **extra)
        both = info_nce(queries, positives, negatives, temperature=0.1, symmetric=True, **extra)
        assert torch.allclose(both, (one_way + passage_to_query) / 2, atol=1e-6)


def test_a_copy_of_the_positive_is_not_a_negative() -> None:
    """Pairs 0 and 1 share one positive text (two questions on one paragraph): with the mask, neither copy is the
    other query's negative, in either direction; pair 2 is scored against everything."""
    torch.manual_seed(0)
    queries = torch.nn.functional.normalize(torch.randn(3, 4), dim=1)
    passages = torch.nn.functional.normalize(torch.randn(3, 4), dim=1)
    passages[1] = passages[0]
    negatives = torch.nn.functional.normalize(torch.randn(2, 4), dim=1)
    mask = copies_of_positives(["p", "p", "q"], ["p", "p", "q", "n1", "n2"])
    assert mask is not None and mask.nonzero().tolist() == [[0, 1], [1, 0]]
    logits = queries @ torch.cat([passages, negatives]).T / 0.1
    forwards = [
        torch.logsumexp(logits[0, [0, 2, 3, 4]], 0) - logits[0, 0],
        torch.logsumexp(logits[1, [1, 2, 3, 4]], 0) - logits[1, 1],
        torch.logsumexp(logits[2], 0) - logits[2, 2],
    ]
    masked = info_nce(queries, passages, negatives, 0.1, same_as_positive=mask)
    assert float(masked) == pytest.approx(float(sum(forwards) / 3), rel=1e-5)
    backwards = [
        torch.logsumexp(logits[[0, 2], 0], 0) - logits[0, 0],
        torch.logsumexp(logits[[1, 2], 1], 0) - logits[1, 1],
        torch.logsumexp(logits[:3, 2], 0) - logits[2, 2],
    ]
    symmetric = info_nce(queries, passages, negatives, 0.1, symmetric=True, same_as_positive=mask)
    assert float(symmetric) == pytest.approx(float((sum(forwards) + sum(backwards)) / 6), rel=1e-5)
    unmasked = info_nce(queries, passages, negatives, 0.1)
    assert float(unmasked) > float(masked)  # each copy counted against the other


def test_no_repeated_positive_no_mask() -> None:
    assert copies_of_positives(["p", "q"], ["p", "q", "n"]) is None
    # a hard negative that is a copy of a query's positive is left out of that query's negatives too
    assert copies_of_positives(["p", "q"], ["p", "q", "p"]).nonzero().tolist() == [[0, 2]]
    # a translation positive that reads the same as its own positive (a name) stays a positive
    assert copies_of_positives(
        ["Paris", "q"], ["Paris", "q", "Paris", "q-de", "Paris"], own_blocks=2
    ).nonzero().tolist() == [[0, 4]]
