"""Batch composition: a sampled batch of parallel pairs -> the tokenized queries and passages the loss reads
(positives, translation positives, hard negatives). A pure function of the configuration, the data and the step, so
a resumed run composes the same batches."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

import torch

from training.config import ConfigError, TrainConfig
from training.data import ParallelData
from training.samplers import Batch, Pair

Inputs = dict[str, torch.Tensor]


@dataclass(frozen=True)
class Collated:
    queries: Inputs
    passages: Inputs  # positives first, then translation positives (blocks of n_positives), then hard negatives
    n_positives: int
    n_translation_positives: int = 0
    # (queries x passages) True where a passage is another copy of the query's positive text (e.g. a second question
    # on the same paragraph): not a negative. None when the batch has no such copy.
    same_as_positive: torch.Tensor | None = None


class BatchCollator:
    def __init__(
        self, config: TrainConfig, tokenize: Callable[[list[str], str, int], Inputs], train: ParallelData, rank: int
    ) -> None:
        if config.translation_positives:
            too_small = [i for i, group in train.by_id.items() if len(group) <= config.translation_positives]
            if too_small:
                raise ConfigError(
                    f"translation_positives {config.translation_positives} needs every training id in at least "
                    f"{config.translation_positives + 1} languages; {len(too_small)} are not (e.g. {too_small[0]})"
                )
        self.config = config
        self.tokenize = tokenize
        self.rank = rank

    def collate(self, batch: Batch, data: ParallelData, step: int, translations: bool = True) -> Collated:
        config = self.config
        queries = [data.by_id[p.id][p.query_lang].query for p in batch.pairs]
        positives = [data.by_id[p.id][p.passage_lang].positive for p in batch.pairs]
        extra = self.translation_positives(batch, data, step) if translations else []
        negatives = self.hard_negatives(batch, data, step) if config.hard_negatives else []
        tokenize = self.tokenize
        passages = positives + extra + negatives
        return Collated(
            tokenize(queries, config.query_prefix, config.max_query_length),
            tokenize(passages, config.passage_prefix, config.max_passage_length),
            len(positives),
            len(extra),
            copies_of_positives(positives, passages, 1 + len(extra) // len(positives))
            if config.mask_duplicate_positives
            else None,
        )

    def translation_positives(self, batch: Batch, data: ParallelData, step: int) -> list[str]:
        """``translation_positives`` blocks: block b holds every pair's positive in a b-th other language of its
        group (drawn without repeats; __init__ checked that every group has enough languages)."""
        k = self.config.translation_positives
        if k == 0:
            return []
        rng = random.Random(f"{self.config.seed}/{self.rank}/{step}/translations")
        chosen = [
            (pair, rng.sample(sorted(lang for lang in data.by_id[pair.id] if lang != pair.passage_lang), k))
            for pair in batch.pairs
        ]
        return [data.by_id[pair.id][langs[b]].positive for b in range(k) for pair, langs in chosen]

    def hard_negatives(self, batch: Batch, data: ParallelData, step: int) -> list[str]:
        """Up to ``hard_negatives_per_pair`` of each pair's negatives, in the configured language."""
        rng = random.Random(f"{self.config.seed}/{self.rank}/{step}/negatives")
        negatives: list[str] = []
        for pair in batch.pairs:
            for lang, count in self._negative_languages(pair, data, rng):
                candidates = data.by_id[pair.id][lang].negatives
                negatives += rng.sample(candidates, min(count, len(candidates)))
        return negatives

    def _negative_languages(self, pair: Pair, data: ParallelData, rng: random.Random) -> list[tuple[str, int]]:
        """Where a pair's hard negatives come from: (language, how many) in order."""
        where, per_pair = self.config.hard_negative_language, self.config.hard_negatives_per_pair
        if where == "both" and pair.query_lang != pair.passage_lang:
            in_query_language = (per_pair + 1) // 2  # the odd one where a language-biased model errs
            return [(pair.query_lang, in_query_language), (pair.passage_lang, per_pair - in_query_language)]
        if where == "query":
            return [(pair.query_lang, per_pair)]
        if where == "any":
            return [(rng.choice(sorted(data.by_id[pair.id])), per_pair)]
        return [(pair.passage_lang, per_pair)]


def copies_of_positives(positives: list[str], passages: list[str], own_blocks: int = 1) -> torch.Tensor | None:
    """Where ``passages`` repeats a query's positive text outside the query's own positive columns (row i's are
    i, n + i, ... for ``own_blocks`` blocks of n: its positive and its translation positives); None when nothing
    repeats (the common case: no mask to apply)."""
    n = len(positives)
    columns: dict[str, list[int]] = {}
    for column, text in enumerate(passages):
        columns.setdefault(text, []).append(column)
    copies = [
        (row, column)
        for row, text in enumerate(positives)
        for column in columns[text]
        if not (column < own_blocks * n and column % n == row)
    ]
    if not copies:
        return None
    mask = torch.zeros((len(positives), len(passages)), dtype=torch.bool)
    rows, cols = zip(*copies, strict=True)
    mask[list(rows), list(cols)] = True
    return mask
