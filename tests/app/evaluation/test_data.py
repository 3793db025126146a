"""Judgements in BEIR, TREC and our JSONL; the shipped sample; clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.evaluation.data import EvalDataError, load_eval_set
from tests.conftest import ROOT

SAMPLE = ROOT / "data" / "eval-sample"
LANGUAGES = ["ar", "de", "el", "en", "es", "hi", "ru", "th", "tr", "vi", "zh"]


def test_the_shipped_beir_sample() -> None:
    data = load_eval_set(SAMPLE)
    assert len(data.queries) == 451 and len(data.corpus) == 110
    assert data.queries_by_language() == dict.fromkeys(LANGUAGES, 41)
    first = data.queries[0]
    assert len(data.relevant(first.id)) == 11 and not first.lang_detected
    assert {d.lang for d in data.corpus} == set(data.queries_by_language())


def test_trec_qrels_with_tsv_queries_and_detected_languages(tmp_path: Path) -> None:
    (tmp_path / "q.tsv").write_text(
        "q1\tWie viele Punkte gab die Verteidigung ab?\nq2\tunjudged\nq3\tonly judged not relevant\n",
        encoding="utf-8",
    )
    (tmp_path / "qrels.txt").write_text("q1 0 doc%201 2\nq1 0 d2 0\nq3 0 d2 0\n")
    data = load_eval_set(tmp_path, queries=tmp_path / "q.tsv", qrels=tmp_path / "qrels.txt")
    assert [q.id for q in data.queries] == ["q1"] and data.left_out == 1  # judged, with a relevant document
    assert data.queries[0].lang == "de" and data.queries[0].lang_detected
    assert data.relevant("q1") == {"doc%201": 2}


def test_our_jsonl_with_ids_and_grades(tmp_path: Path) -> None:
    path = tmp_path / "judged.jsonl"
    path.write_text(
        '{"query": "Who won?", "relevant": ["my doc", "b"], "lang": "EN"}\n'
        '{"id": "x", "query": "Wer gewann?", "relevant": {"a": 3, "b": 0}, "lang": "de"}\n',
        encoding="utf-8",
    )
    data = load_eval_set(path)
    assert [(q.id, q.lang) for q in data.queries] == [("q1", "en"), ("x", "de")]
    assert data.relevant("q1") == {"my%20doc": 1, "b": 1}  # ids as the index holds them
    assert data.relevant("x") == {"a": 3}


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ('{"query": "q", "relevant": []}', "line 1: 'relevant' must be a non-empty list"),
        ('{"query": "q", "relevant": {"a": "high"}}', "line 1: relevance 'high' is not an integer"),
        ('{"query": "", "relevant": ["a"]}', "line 1"),
        ('{"query": "q", "relevant": ["a"], "lang": "klingon-xx"}', "line 1: "),
    ],
)
def test_bad_judgements_name_the_line(tmp_path: Path, line: str, message: str) -> None:
    path = tmp_path / "judged.jsonl"
    path.write_text(line + "\n", encoding="utf-8")
    with pytest.raises(EvalDataError, match=message):
        load_eval_set(path)


def test_a_folder_that_is_not_beir_is_refused(tmp_path: Path) -> None:
    with pytest.raises(EvalDataError, match=r"is not a BEIR folder: .*queries\.jsonl is missing"):
        load_eval_set(tmp_path)
