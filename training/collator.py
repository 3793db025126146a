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
        return Collated(
            tokenize(queries, config.query_prefix, config.max_query_length),
            tokenize(positives + extra + negatives, config.passage_prefix, config.max_passage_length),
            len(positives),
            len(extra),
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
