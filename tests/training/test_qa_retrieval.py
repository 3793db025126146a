"""Monolingual QA passage retrieval: loading both formats, ranks and measures by hand, paired intervals."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np
import pytest

from tests.training.test_metrics import FixedEmbedder
from training.data import DataError
from training.qa_retrieval import (
    EXTRA_DATA,
    MONOLINGUAL_SETS,
    QaSetSpec,
    bootstrap_difference,
    load_qa_set,
    question_ranks,
    report,
    summarise,
    worst_mrr10_loss,
)

SQUAD = {
    "data": [
        {
            "title": "t",
            "paragraphs": [
                {"context": "Paris is in France. ", "qas": [{"question": "Where is Paris?"}, {"question": "Paris?"}]},
                {"context": "Berlin is in Germany.", "qas": [{"question": "Where is Berlin?"}]},
                {"context": "Paris is in France.", "qas": [{"question": "Capital of France?"}]},  # same text
            ],
        }
    ]
}


def test_squad_json_and_zipped_jsonl_give_the_same_set(tmp_path: Path) -> None:
    (tmp_path / "set.json").write_text(json.dumps(SQUAD), encoding="utf-8")
    lines = [
        {"question": qa["question"], "context": p["context"]} for p in SQUAD["data"][0]["paragraphs"] for qa in p["qas"]
    ]
    with zipfile.ZipFile(tmp_path / "set.zip", "w") as zipped:
        zipped.writestr("data/test.jsonl", "\n".join(json.dumps(line) for line in lines) + "\n")
    from_json = load_qa_set(QaSetSpec("s", "en", "set.json", "choose"), tmp_path)
    from_zip = load_qa_set(QaSetSpec("s", "en", "set.zip:data/test.jsonl", "held_out"), tmp_path)
    for qa in (from_json, from_zip):
        assert qa.paragraphs == ["Paris is in France.", "Berlin is in Germany."]  # stripped, counted once
        assert qa.answer.tolist() == [0, 0, 1, 0]


def test_unreadable_or_malformed_sets_name_the_file(tmp_path: Path) -> None:
    (tmp_path / "bad.json").write_text('{"no": "data"}', encoding="utf-8")
    with pytest.raises(DataError, match=r"bad\.json: not SQuAD-format"):
        load_qa_set(QaSetSpec("s", "en", "bad.json", "choose"), tmp_path)
    (tmp_path / "bad.jsonl").write_text('{"question": "q"}\n', encoding="utf-8")
    with pytest.raises(DataError, match=r"bad\.jsonl:1"):
        load_qa_set(QaSetSpec("s", "en", "bad.jsonl", "choose"), tmp_path)
    with pytest.raises(DataError, match="cannot read"):
        load_qa_set(QaSetSpec("s", "en", "missing.json", "choose"), tmp_path)


def test_ranks_and_measures_by_hand(tmp_path: Path) -> None:
    (tmp_path / "set.json").write_text(json.dumps(SQUAD), encoding="utf-8")
    qa = load_qa_set(QaSetSpec("s", "en", "set.json", "choose"), tmp_path)
    embedder = FixedEmbedder(
        {
            "Paris is in France.": [1, 0],
            "Berlin is in Germany.": [0, 1],
            "Where is Paris?": [0.9, 0.1],  # own paragraph first
            "Paris?": [0.2, 0.8],  # second
            "Where is Berlin?": [0.3, 0.7],  # first
            "Capital of France?": [0.4, 0.6],  # second
        }
    )
    ranks = question_ranks(embedder, qa)
    assert ranks.tolist() == [1, 2, 1, 2]
    figures = summarise(ranks)
    assert figures["mrr10"] == 0.75 and figures["hit1"] == 0.5 and figures["hit10"] == 1.0
    assert figures["ndcg10"] == round((1 + 1 / np.log2(3)) / 2, 4)


def test_paired_bootstrap_difference_and_the_worst_loss() -> None:
    better, worse = np.array([1, 1, 1, 2] * 50), np.array([1, 2, 3, 2] * 50)
    delta = bootstrap_difference(better, worse)
    assert delta["diff"] == round(np.mean([0, 0.5, 1 - 1 / 3, 0]), 4)
    assert 0 < delta["ci95"][0] < delta["diff"] < delta["ci95"][1]
    assert bootstrap_difference(worse, worse)["ci95"] == [0.0, 0.0]
    with pytest.raises(ValueError, match="same questions"):
        bootstrap_difference(better, worse[:10])


def test_report_and_worst_loss_by_role(tmp_path: Path) -> None:
    (tmp_path / "set.json").write_text(json.dumps(SQUAD), encoding="utf-8")
    sets = [
        load_qa_set(QaSetSpec("a", "en", "set.json", "choose"), tmp_path),
        load_qa_set(QaSetSpec("b", "en", "set.json", "held_out"), tmp_path),
    ]
    base = {"a": np.array([1, 1, 1, 1]), "b": np.array([2, 2, 2, 2])}
    model = {"a": np.array([1, 2, 1, 1]), "b": np.array([1, 1, 1, 1])}
    figures = report(sets, model, base)
    assert figures["a"]["vs_baseline"]["mrr10"]["diff"] == -0.125
    assert worst_mrr10_loss(figures, "choose") == 0.125
    assert worst_mrr10_loss(figures, "held_out") == -0.5


@pytest.mark.skipif(not EXTRA_DATA.is_dir(), reason="the shared extra data sets are not here")
def test_the_public_sets_load_with_their_documented_sizes() -> None:
    sizes = {spec.name: load_qa_set(spec) for spec in MONOLINGUAL_SETS}
    assert {name: len(qa.paragraphs) for name, qa in sizes.items()} == {
        "cmrc2018-trial": 256,
        "arcd-train": 231,
        "iapp-valid": 190,
        "cmrc2018-dev": 848,
        "drcd-dev": 1000,
        "arcd-test": 234,
        "iapp-test": 192,
    }
    assert {spec.role for spec in MONOLINGUAL_SETS if spec.name == "drcd-dev"} == {"held_out"}
