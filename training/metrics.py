"""Retrieval metrics of LAReQA (Roy et al. 2020) and the language-bias rank distance (Huang et al. 2023).

Everything is computed from 1-based ranks of the relevant candidates: a query's rank of a relevant item is one
plus the number of pool candidates scored strictly higher.
"""

from __future__ import annotations

import numpy as np


def ranks_of(scores: np.ndarray, relevant_scores: np.ndarray) -> np.ndarray:
    """scores [n_queries, n_pool], relevant_scores [n_queries, n_relevant] -> 1-based ranks, same shape."""
    return (scores[:, None, :] > relevant_scores[:, :, None]).sum(axis=2) + 1


def average_precision(ranks: np.ndarray) -> np.ndarray:
    """AP per query from the ranks of all its relevant items ([n_queries, n_relevant])."""
    ordered = np.sort(ranks, axis=1)
    positions = np.arange(1, ordered.shape[1] + 1)
    return (positions / ordered).mean(axis=1)


def recall_at(ranks: np.ndarray, k: int) -> np.ndarray:
    """Share of each query's relevant items found in the top k (so multi R@1 is at most 1/n_relevant)."""
    return (ranks <= k).mean(axis=1)


def rank_distance(ranks: np.ndarray) -> np.ndarray:
    """Per query: rank of the lowest-ranked minus rank of the highest-ranked relevant parallel passage."""
    return ranks.max(axis=1) - ranks.min(axis=1)
