from __future__ import annotations

import math

import torch

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
