from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.tiny import ROOT
from training.data import DataError, add_extra_pairs, load_data, read_parallel_jsonl

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


def test_extra_pairs_join_any_training_data(parallel_jsonl: Path, plain_pairs_jsonl: Path) -> None:
    data = read_parallel_jsonl(parallel_jsonl)
    joined = add_extra_pairs(data, [str(plain_pairs_jsonl)], ["de", "en", "es", "zh"])
    added = set(joined.by_id) - set(data.by_id)
    assert len(added) == 20 and all(i.startswith(f"{plain_pairs_jsonl}#") for i in added)  # vi left out
    assert sorted(lang for i in added for lang in joined.by_id[i]) == ["de"] * 10 + ["en"] * 10
    assert all(joined.by_id[i] == data.by_id[i] for i in data.by_id)


def test_extra_pairs_with_a_known_id_are_its_translations(tmp_path: Path, parallel_jsonl: Path) -> None:
    extra = tmp_path / "vi.jsonl"
    extra.write_text('{"id": "p000", "lang": "vi", "query": "Ai thắng?", "positive": "Broncos thắng."}\n')
    joined = add_extra_pairs(read_parallel_jsonl(parallel_jsonl), [str(extra)], ["de", "en", "es", "vi", "zh"])
    assert sorted(joined.by_id["p000"]) == ["de", "en", "es", "vi", "zh"]  # cross batches can pair vi with the rest


def test_extra_pairs_errors(tmp_path: Path, parallel_jsonl: Path, plain_pairs_jsonl: Path) -> None:
    data = read_parallel_jsonl(parallel_jsonl)
    with pytest.raises(DataError, match=r"duplicate record for id 'p000' in language 'en'"):
        add_extra_pairs(data, [str(parallel_jsonl)], ["en"])
    with pytest.raises(DataError, match=r"pairs.jsonl: no records in the training languages \['fr'\]"):
        add_extra_pairs(data, [str(plain_pairs_jsonl)], ["fr"])


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
