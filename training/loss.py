"""InfoNCE with in-batch negatives (and optional hard negatives), on L2-normalised embeddings."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def info_nce(
    queries: torch.Tensor,
    positives: torch.Tensor,
    hard_negatives: torch.Tensor | None = None,
    temperature: float = 0.05,
    translation_positives: torch.Tensor | None = None,
    symmetric: bool = False,
    same_as_positive: torch.Tensor | None = None,
) -> torch.Tensor:
    """Cross-entropy of each query against every passage in the batch; query i's positive is passage i.

    Candidates are [positives; translation_positives; hard_negatives]: every other pair's positive and every hard
    negative are negatives for every query.

    ``translation_positives`` (k blocks of n rows, block b row i: a translation of positive i) makes query i's
    positives all k + 1 versions of its answer: each one is scored against the query's negatives alone (its other
    versions are neither negatives nor in the denominator), and the loss is the mean over queries and versions.
    With k = 0 this is the plain cross-entropy above. It asks the model to rank an answer high in every language,
    which is what the multilingual pool measures.

    ``symmetric`` adds the passage-to-query direction (as in CLIP and LaBSE): positive i picks query i among the
    batch's queries, and the loss is the mean of the two directions. Hard negatives and translations are candidates
    of the first direction only.

    ``same_as_positive`` (queries x candidates, True where a candidate is another copy of the query's positive text:
    two questions on one paragraph) leaves those candidates out of the query's negatives, in both directions.
    """
    loss, logits = _query_to_passage(
        queries, positives, hard_negatives, temperature, translation_positives, same_as_positive
    )
    return (loss + _passage_to_query(logits)) / 2 if symmetric else loss


def _query_to_passage(
    queries: torch.Tensor,
    positives: torch.Tensor,
    hard_negatives: torch.Tensor | None,
    temperature: float,
    translation_positives: torch.Tensor | None,
    same_as_positive: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The query-to-passage loss of ``info_nce`` and its logits (queries x candidates, positives first)."""

    def scored(candidates: torch.Tensor) -> torch.Tensor:
        logits = queries @ candidates.T / temperature
        if same_as_positive is None:
            return logits
        return logits.masked_fill(same_as_positive.to(logits.device), float("-inf"))

    if translation_positives is None:
        logits = scored(positives if hard_negatives is None else torch.cat([positives, hard_negatives]))
        labels = torch.arange(queries.shape[0], device=queries.device)
        return F.cross_entropy(logits, labels), logits
    n = queries.shape[0]
    if translation_positives.shape[0] % n:
        raise ValueError(f"{translation_positives.shape[0]} translation positives are not whole blocks of {n}")
    blocks = 1 + translation_positives.shape[0] // n
    parts = [positives, translation_positives] + ([] if hard_negatives is None else [hard_negatives])
    logits = scored(torch.cat(parts))
    rows = torch.arange(n, device=queries.device)
    positive_columns = rows[:, None] + n * torch.arange(blocks, device=queries.device)[None, :]  # (n, blocks)
    is_positive = torch.zeros_like(logits, dtype=torch.bool).scatter_(1, positive_columns, True)
    negatives_lse = torch.logsumexp(logits.masked_fill(is_positive, float("-inf")), dim=1, keepdim=True)
    positive_logits = logits.gather(1, positive_columns)
    return (torch.logaddexp(positive_logits, negatives_lse) - positive_logits).mean(), logits


def _passage_to_query(logits: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of each positive against every query; ``logits`` is queries x candidates, positives first."""
    n = logits.shape[0]
    return F.cross_entropy(logits[:, :n].T, torch.arange(n, device=logits.device))
