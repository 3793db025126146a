from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.tiny import ROOT

LANGS = ["en", "de", "es", "zh"]


@pytest.fixture(scope="session")
def parallel_jsonl(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Parallel JSONL from the demo data: 40 ids x 4 languages; query = the paragraph's first question,
    positive = the paragraph's first 200 characters, negative = the next paragraph's."""
    corpus = {
        (r["metadata"]["group"], r["lang"]): r["text"]
        for r in map(json.loads, (ROOT / "data/demo/corpus.jsonl").read_text(encoding="utf-8").splitlines())
    }
    queries = [json.loads(line) for line in (ROOT / "data/demo/queries.jsonl").read_text(encoding="utf-8").splitlines()]
    rows = []
    for q in queries:
        number = int(q["group"][1:])
        if number < 40 and q["lang"] in LANGS:
            negative = corpus[(f"p{number + 1:03d}", q["lang"])][:200]
            rows.append(
                {
                    "id": q["group"],
                    "lang": q["lang"],
                    "query": q["query"],
                    "positive": corpus[(q["group"], q["lang"])][:200],
                    "negatives": [negative],
                }
            )
    path = tmp_path_factory.mktemp("parallel") / "train.jsonl"
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def plain_pairs_jsonl(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Plain pairs as a user has them (no id, no negatives) from demo paragraphs the parallel data leaves out:
    10 German, 10 English and 4 Vietnamese (a language the tiny runs do not train on)."""
    corpus = {
        (r["metadata"]["group"], r["lang"]): r["text"]
        for r in map(json.loads, (ROOT / "data/demo/corpus.jsonl").read_text(encoding="utf-8").splitlines())
    }
    queries = [json.loads(line) for line in (ROOT / "data/demo/queries.jsonl").read_text(encoding="utf-8").splitlines()]
    wanted = {"de": range(40, 50), "en": range(50, 60), "vi": range(60, 64)}
    rows = [
        {"query": q["query"], "positive": corpus[(q["group"], q["lang"])][:200], "lang": q["lang"]}
        for q in queries
        if q["lang"] in wanted and int(q["group"][1:]) in wanted[q["lang"]]
    ]
    path = tmp_path_factory.mktemp("plain") / "pairs.jsonl"
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path
