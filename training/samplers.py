"""Batch strategies of arXiv 2408.10536: mono (X-X), cross (X-Y) and hybrid (mono with probability α).

A batch is a list of ``Pair(id, query_lang, passage_lang)``. Each batch is a pure function of
(seed, rank, step): resuming at a step reproduces the exact batches, and DDP ranks draw different batches of the
same strategy. No id appears twice in a batch (its translations would be false negatives).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Literal

Strategy = Literal["mono", "cross", "hybrid"]


@dataclass(frozen=True)
class Pair:
    id: str
    query_lang: str
    passage_lang: str


@dataclass(frozen=True)
class Batch:
    kind: Literal["mono", "cross"]
    pairs: list[Pair]


class BatchSampler:
    def __init__(
        self,
        languages_by_id: dict[str, list[str]],
        batch_size: int,
        strategy: Strategy = "hybrid",
        alpha: float = 0.5,
        seed: int = 0,
        rank: int = 0,
    ) -> None:
        if strategy not in ("mono", "cross", "hybrid"):
            raise ValueError(f"unknown strategy {strategy!r} (mono, cross or hybrid)")
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"alpha must be in [0, 1], got {alpha}")
        self.batch_size = batch_size
        self.strategy = strategy
        self.alpha = alpha
        self.seed = seed
        self.rank = rank
        self.ids = sorted(languages_by_id)
        self.languages_by_id = {i: sorted(set(languages_by_id[i])) for i in self.ids}
        self.languages = sorted({lang for langs in self.languages_by_id.values() for lang in langs})
        self.ids_by_lang = {lang: [i for i in self.ids if lang in self.languages_by_id[i]] for lang in self.languages}
        self.cross_ids = [i for i in self.ids if len(self.languages_by_id[i]) >= 2]
        mono_ok = any(len(ids) >= batch_size for ids in self.ids_by_lang.values())
        if strategy in ("mono", "hybrid") and alpha > 0 and not mono_ok:
            raise ValueError(f"no language has {batch_size} ids for a monolingual batch; lower batch_size")
        if strategy in ("cross", "hybrid") and alpha < 1 and len(self.cross_ids) < batch_size:
            raise ValueError(
                f"only {len(self.cross_ids)} ids exist in 2+ languages; cross batches need {batch_size}: link the "
                "translations of a pair by a shared id, add parallel data, or train with strategy mono"
            )

    def batch_kind(self, rng: random.Random) -> Literal["mono", "cross"]:
        if self.strategy == "hybrid":
            return "mono" if rng.random() < self.alpha else "cross"
        return self.strategy

    def batch(self, step: int) -> Batch:
        rng = random.Random(f"{self.seed}/{self.rank}/{step}")
        kind = self.batch_kind(rng)
        if kind == "mono":
            langs = [lang for lang in self.languages if len(self.ids_by_lang[lang]) >= self.batch_size]
            lang = rng.choice(langs)
            ids = rng.sample(self.ids_by_lang[lang], self.batch_size)
            return Batch("mono", [Pair(i, lang, lang) for i in ids])
        pairs = []
        for i in rng.sample(self.cross_ids, self.batch_size):
            query_lang, passage_lang = rng.sample(self.languages_by_id[i], 2)
            pairs.append(Pair(i, query_lang, passage_lang))
        return Batch("cross", pairs)
