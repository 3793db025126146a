"""One query's figures from its ranked documents and its judgements (graded: a grade > 0 is relevant).

nDCG@10 uses the grades as gains (as BEIR's pytrec_eval does); MRR@10 the first relevant rank; Recall@k the share of
relevant documents in the top k; AP the mean precision at each relevant document found within the ranking's depth
(relevant documents below it count as missed); Hit@k whether any relevant document is in the top k. The language
figures: the share of the top 10 in the query's own language, and, where a query's relevant documents are in
several languages (parallel judgements), the rank distance between the best- and the worst-ranked of them (a
relevant document below the depth counts at depth + 1): 0 when the ranking ignores language.
"""

from __future__ import annotations

import math

import numpy as np

METRICS = ("ndcg@10", "mrr@10", "recall@10", "recall@100", "map", "hit@1", "hit@10")


def query_figures(ranked: list[str], grades: dict[str, int]) -> dict[str, float]:
    relevant = {doc for doc, grade in grades.items() if grade > 0}
    if not relevant:
        raise ValueError("a query without relevant documents has no figures")
    found = [doc in relevant for doc in ranked]
    first = next((rank for rank, hit in enumerate(found[:10], start=1) if hit), None)
    gains = [grades.get(doc, 0) if doc in relevant else 0 for doc in ranked[:10]]
    ideal = sorted((g for g in grades.values() if g > 0), reverse=True)[:10]
    precisions = [sum(found[:rank]) / rank for rank, hit in enumerate(found, start=1) if hit]
    return {
        "ndcg@10": _dcg(gains) / _dcg(ideal),
        "mrr@10": 1 / first if first else 0.0,
        "recall@10": sum(found[:10]) / len(relevant),
        "recall@100": sum(found[:100]) / len(relevant),
        "map": sum(precisions) / len(relevant),
        "hit@1": float(any(found[:1])),
        "hit@10": float(any(found[:10])),
    }


def _dcg(gains: list[int]) -> float:
    return sum(gain / math.log2(rank + 1) for rank, gain in enumerate(gains, start=1))


def own_language_share(ranked_langs: list[str], lang: str, k: int = 10) -> float | None:
    """Share of the top ``k`` in ``lang``; None for an empty ranking."""
    top = ranked_langs[:k]
    return sum(tag == lang for tag in top) / len(top) if top else None


def rank_distance(ranked: list[str], grades: dict[str, int], doc_lang: dict[str, str], depth: int) -> float | None:
    """Rank of the worst- minus the best-ranked relevant document, when they span several languages; else None."""
    relevant = [doc for doc, grade in grades.items() if grade > 0]
    if len({doc_lang.get(doc) for doc in relevant}) < 2:
        return None
    position = {doc: rank for rank, doc in enumerate(ranked[:depth], start=1)}
    ranks = [position.get(doc, depth + 1) for doc in relevant]
    return float(max(ranks) - min(ranks))


def paired_bootstrap(
    baseline: np.ndarray, other: np.ndarray, resamples: int = 2000, seed: int = 0
) -> tuple[float, float, float]:
    """Mean of ``other - baseline`` over the same queries, and its 95 % interval by resampling queries."""
    differences = np.asarray(other, dtype=float) - np.asarray(baseline, dtype=float)
    rng = np.random.default_rng(seed)
    means = differences[rng.integers(0, len(differences), size=(resamples, len(differences)))].mean(axis=1)
    low, high = np.percentile(means, [2.5, 97.5])
    return float(differences.mean()), float(low), float(high)
