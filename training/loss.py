"""InfoNCE with in-batch negatives (and optional hard negatives), on L2-normalised embeddings."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def info_nce(
    queries: torch.Tensor,
    positives: torch.Tensor,
    hard_negatives: torch.Tensor | None = None,
    temperature: float = 0.05,
) -> torch.Tensor:
    """Cross-entropy of each query against every passage in the batch; query i's positive is passage i.

    Candidates are [positives; hard_negatives]: every other pair's positive and every hard negative are
    negatives for every query.
    """
    candidates = positives if hard_negatives is None else torch.cat([positives, hard_negatives])
    logits = queries @ candidates.T / temperature
    labels = torch.arange(queries.shape[0], device=queries.device)
    return F.cross_entropy(logits, labels)
