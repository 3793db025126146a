"""Hard-negative mining on plain pairs with a real (tiny) ONNX model: what is never a negative, the skipped top,
the margin, determinism; and plain pairs read without ids or languages."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tests.tiny import demo_records
from training.data import read_parallel_jsonl
from training.evaluate import OnnxEmbedder
from training.mining import MiningConfig, mine_negatives, write_jsonl


@pytest.fixture(scope="module")
def pairs_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Demo paragraphs as pairs: the query is the paragraph's first 60 characters; the translations of one
    paragraph share an id (the demo's group), and two records have neither id nor language."""
    rows = [r for r in demo_records() if int(r["metadata"]["group"][1:]) < 12 and r["lang"] in ("de", "en", "zh")]
    records = [
        {"id": r["metadata"]["group"], "lang": r["lang"], "query": r["text"][:60], "positive": r["text"]} for r in rows
    ]
    records += [{"query": "Wie viele Punkte gab die Verteidigung ab?", "positive": "Die Verteidigung gab 308 ab."}]
    records += [{"query": "Who sang the national anthem?", "positive": "Lady Gaga sang the anthem."}]
    path = tmp_path_factory.mktemp("pairs") / "pairs.jsonl"
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def embedder(tiny_model: Path) -> OnnxEmbedder:
    return OnnxEmbedder(tiny_model, "fp32")


def test_plain_pairs_get_ids_and_detected_languages(pairs_file: Path) -> None:
    data = read_parallel_jsonl(pairs_file)
    assert sorted(data.by_id["p003"]) == ["de", "en", "zh"]  # translations linked by their id
    assert list(data.by_id[f"{pairs_file}#37"]) == ["de"] and list(data.by_id[f"{pairs_file}#38"]) == ["en"]


def test_what_is_mined(pairs_file: Path, embedder: OnnxEmbedder) -> None:
    data = read_parallel_jsonl(pairs_file)
    everything = MiningConfig(skip_top=0, depth=1000, margin=-10.0, per_query=3)
    mined, report = mine_negatives(data, embedder, everything)
    assert report.queries == len(data) == report.with_negatives and report.negatives == 3 * len(data)
    pool = list(dict.fromkeys(ex.positive for group in data.by_id.values() for ex in group.values()))
    vectors = embedder.encode(pool, "passage")
    for group in mined.by_id.values():
        own = {ex.positive for ex in group.values()}  # the positive and its translations
        for ex in group.values():
            assert not own & set(ex.negatives)
            scores = vectors @ embedder.encode([ex.query], "query")[0]
            best_others = [pool[i] for i in np.argsort(-scores, kind="stable") if pool[i] not in own]
            assert list(ex.negatives) == best_others[:3]  # the best non-positives, best first
    strict = MiningConfig(skip_top=1, margin=0.05, per_query=2)
    mined_strict, _ = mine_negatives(data, embedder, strict)
    for group in mined_strict.by_id.values():
        for ex in group.values():
            query = embedder.encode([ex.query], "query")[0]
            ceiling = query @ embedder.encode([ex.positive], "passage")[0] - 0.05
            assert all(query @ embedder.encode([n], "passage")[0] <= ceiling + 1e-5 for n in ex.negatives)
            assert len(ex.negatives) <= 2


def test_the_top_is_skipped_and_random_draws_are_seeded(
    pairs_file: Path, embedder: OnnxEmbedder, tmp_path: Path
) -> None:
    data = read_parallel_jsonl(pairs_file)
    top, _ = mine_negatives(data, embedder, MiningConfig(skip_top=0, margin=-10, per_query=5))
    skipped, _ = mine_negatives(data, embedder, MiningConfig(skip_top=2, margin=-10, per_query=3))
    for pair_id, group in top.by_id.items():
        for lang, ex in group.items():
            assert skipped.by_id[pair_id][lang].negatives == ex.negatives[2:5]
    draw = MiningConfig(margin=-10, per_query=3, strategy="random", seed=7)
    first, _ = mine_negatives(data, embedder, draw)
    again, _ = mine_negatives(data, embedder, draw)
    other, _ = mine_negatives(data, embedder, MiningConfig(margin=-10, per_query=3, strategy="random", seed=8))
    assert first.by_id == again.by_id and first.by_id != other.by_id
    write_jsonl(first, tmp_path / "mined.jsonl")
    assert read_parallel_jsonl(tmp_path / "mined.jsonl").by_id == first.by_id  # ready for `hard_negatives: true`
