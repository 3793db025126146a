from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.tiny import ROOT
from training.data import DataError, load_data, read_parallel_jsonl

XQUAD = ROOT / "data" / "xquad-r"
SPLITS = ROOT / "data" / "splits" / "xquad-r-articles.json"


def test_lareqa_train_split_matches_the_readme() -> None:
    data = load_data("lareqa", XQUAD, ["en", "de", "zh"], SPLITS, "train")
    assert len(data.by_id) == 666 and data.languages == ["de", "en", "zh"]
    example = data.by_id[data.ids[0]]["en"]
    paragraph_sentences = [example.positive, *example.negatives]
    assert example.positive and len(paragraph_sentences) >= 2
    dev = load_data("lareqa", XQUAD, ["en"], SPLITS, "dev")
    test_titles = set(json.loads(SPLITS.read_text())["test"])
    assert len(dev.by_id) == 93 and not set(dev.by_id) & set(data.by_id)
    assert test_titles.isdisjoint(json.loads(SPLITS.read_text())["train"])


def test_lareqa_positive_contains_the_answer() -> None:
    data = load_data("lareqa", XQUAD, ["en"], SPLITS, "dev")
    squad = json.loads((XQUAD / "en.json").read_text())["data"]
    answers = {qa["id"]: qa["answers"][0]["text"] for a in squad for p in a["paragraphs"] for qa in p["qas"]}
    inside = [answers[i] in data.by_id[i]["en"].positive for i in data.ids]
    assert sum(inside) / len(inside) > 0.97  # a few answers run past their sentence (README)


def test_parallel_jsonl_groups_translations(parallel_jsonl: Path) -> None:
    data = read_parallel_jsonl(parallel_jsonl)
    assert len(data.by_id) == 40 and data.languages == ["de", "en", "es", "zh"]
    assert data.restrict(["en", "zh"]).languages == ["en", "zh"]
    with pytest.raises(DataError, match=r"languages \['fr'\] are not in the data"):
        data.restrict(["en", "fr"])


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("{oops", "line 2: invalid JSON"),
        ('{"id": "a", "lang": "en", "query": "q"}', "line 2: 'positive' must be a non-empty string"),
        ('{"id": "a", "lang": "en", "query": "q", "positive": "p", "negatives": "n"}', "'negatives' must be a list"),
        ('{"id": "a", "lang": "en", "query": "q", "positive": "p", "score": 1}', r"unknown field\(s\) \['score'\]"),
        ('{"id": "x", "lang": "en", "query": "q", "positive": "p"}', "line 2: duplicate record for id 'x'"),
    ],
)
def test_malformed_jsonl_names_the_line(tmp_path: Path, line: str, message: str) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text('{"id": "x", "lang": "en", "query": "q", "positive": "p"}\n' + line + "\n")
    with pytest.raises(DataError, match=message):
        read_parallel_jsonl(path)
