"""Hard negatives for plain (query, passage) pairs, mined with a model (the current default, a base, a hub id).

    python -m training.mining --data pairs.jsonl --model models/multilingual-e5-small-hybrid --out mined.jsonl

Every query is searched against a pool of passages (the pairs' own positives, in every language, plus any
``--corpus`` texts). Passages that are positives of the same pair (its translations included) are never
negatives; of the rest, best first, the first ``skip_top`` are skipped as likely unlabelled positives (false
negatives), and a candidate is kept only if it scores at most the pair's positive minus ``margin``; then
``per_query`` of those within ``depth`` are taken, best first (``top``) or drawn with the seed (``random``), as
sentence-transformers' ``mine_hard_negatives`` does. Deterministic for a model, data and seed. The output is
training JSONL with ``negatives`` (``hard_negatives: true`` in the training config uses them).
"""

from __future__ import annotations

import argparse
import json
import logging
import random
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

import faiss
import numpy as np

from training.data import Example, ParallelData, read_parallel_jsonl
from training.evaluate import Embedder, make_embedder

log = logging.getLogger("training.mining")


@dataclass(frozen=True)
class MiningConfig:
    skip_top: int = 3
    depth: int = 50
    margin: float = 0.05
    per_query: int = 5
    strategy: Literal["top", "random"] = "top"
    seed: int = 0


@dataclass
class MiningReport:
    queries: int = 0
    with_negatives: int = 0
    negatives: int = 0

    def __str__(self) -> str:
        mean = self.negatives / max(1, self.with_negatives)
        return (
            f"{self.with_negatives} of {self.queries} queries got negatives ({self.negatives} in all, {mean:.1f} each)"
        )


def mine_negatives(
    data: ParallelData, embedder: Embedder, config: MiningConfig, corpus: list[str] | None = None
) -> tuple[ParallelData, MiningReport]:
    """``data`` with mined negatives appended to each example's own."""
    examples = [ex for group in data.by_id.values() for ex in group.values()]
    pool = list(dict.fromkeys([ex.positive for ex in examples] + (corpus or [])))
    where = {text: i for i, text in enumerate(pool)}
    positives_of: dict[str, set[int]] = {}
    for ex in examples:
        positives_of.setdefault(ex.id, set()).add(where[ex.positive])
    passages = embedder.encode(pool, "passage").astype(np.float32)
    queries = embedder.encode([ex.query for ex in examples], "query").astype(np.float32)
    index = faiss.IndexFlatIP(passages.shape[1])
    index.add(passages)
    reach = min(len(pool), config.depth + config.skip_top + max(len(p) for p in positives_of.values()))
    scores, rows = index.search(queries, reach)
    mined = ParallelData()
    report = MiningReport(queries=len(examples))
    for ex, query, found_scores, found_rows in zip(examples, queries, scores, rows, strict=True):
        ceiling = float(query @ passages[where[ex.positive]]) - config.margin
        candidates = [
            (float(score), int(row))
            for score, row in zip(found_scores, found_rows, strict=True)
            if row >= 0 and row not in positives_of[ex.id]
        ][config.skip_top : config.skip_top + config.depth]
        eligible = [pool[row] for score, row in candidates if score <= ceiling and pool[row] not in ex.negatives]
        if config.strategy == "random" and len(eligible) > config.per_query:
            rng = random.Random(f"{config.seed}/{ex.id}/{ex.lang}")
            chosen = [eligible[i] for i in sorted(rng.sample(range(len(eligible)), config.per_query))]
        else:
            chosen = eligible[: config.per_query]
        report.with_negatives += bool(chosen)
        report.negatives += len(chosen)
        mined.add(replace(ex, negatives=ex.negatives + tuple(chosen)), f"{ex.id}/{ex.lang}")
    return mined, report


def write_jsonl(data: ParallelData, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as handle:
        for pair_id in data.ids:
            for _, ex in sorted(data.by_id[pair_id].items()):
                handle.write(json.dumps(_record(ex), ensure_ascii=False) + "\n")


def _record(ex: Example) -> dict:
    return {"id": ex.id, "lang": ex.lang, "query": ex.query, "positive": ex.positive, "negatives": list(ex.negatives)}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, required=True, help='JSONL of {"query", "positive", "lang"?, "id"?}')
    parser.add_argument("--model", required=True, help="model folder (ONNX via its manifest), HF folder or hub id")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--corpus", type=Path, help="more passages for the pool: JSONL with a 'text' per line")
    defaults = MiningConfig()
    for name in ("skip_top", "depth", "per_query", "seed"):
        parser.add_argument(f"--{name.replace('_', '-')}", type=int, default=getattr(defaults, name))
    parser.add_argument("--margin", type=float, default=defaults.margin)
    parser.add_argument("--strategy", choices=["top", "random"], default=defaults.strategy)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    corpus = None
    if args.corpus:
        lines = args.corpus.read_text(encoding="utf-8").splitlines()
        corpus = [json.loads(line)["text"] for line in lines if line.strip()]
    config = MiningConfig(args.skip_top, args.depth, args.margin, args.per_query, args.strategy, args.seed)
    mined, report = mine_negatives(read_parallel_jsonl(args.data), make_embedder(args.model), config, corpus)
    write_jsonl(mined, args.out)
    print(f"{report}; wrote {args.out}")


if __name__ == "__main__":
    main()
