"""`polyglot-search eval` on the shipped BEIR sample: two model folders compared, and a running server measured
over HTTP, which must agree with the same model measured in-process."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from app.cli import main
from tests.conftest import ROOT, running_server

pytestmark = pytest.mark.e2e
SAMPLE = ROOT / "data" / "eval-sample"


def test_two_models_compared_with_intervals_and_language_figures(
    tiny_model: Path, second_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    models = ["--model-dir", str(tiny_model), "--model-dir", str(second_model)]
    main(["eval", str(SAMPLE), *models, "--out", str(tmp_path)])
    printed = capsys.readouterr().out
    assert "| model | queries | ndcg@10 |" in printed and "95 % bootstrap interval" in printed
    result = json.loads((tmp_path / "results.json").read_text(encoding="utf-8"))
    assert result["queries"] == 451 and result["documents"] == 110 and len(result["queries_by_language"]) == 11
    baseline, other = result["models"]
    for figures in result["models"].values():
        assert figures["all"]["queries"] == 451 and len(figures["by_language"]) == 11
        assert all(0 <= figures["all"][key] <= 1 for key in ("ndcg@10", "mrr@10", "map", "hit@10", "own_language@10"))
        assert figures["all"]["rank_distance"] >= 0
    difference = result["differences"][other]["ndcg@10"]
    assert difference["low"] <= difference["mean"] <= difference["high"] and difference["queries"] == 451
    expected = result["models"][other]["all"]["ndcg@10"] - result["models"][baseline]["all"]["ndcg@10"]
    assert difference["mean"] == pytest.approx(expected, abs=1e-3)
    assert (tmp_path / "results.md").read_text(encoding="utf-8").strip() == printed.strip()
    assert (tmp_path / "per-language.png").stat().st_size > 10_000


def test_a_running_server_measures_as_its_model_does(
    tiny_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SEARCH_INT8", "false")  # fp32 on both sides: int8 embeddings move with the batch they are in
    index = tmp_path / "indexes" / "sample"
    main(["index", "--corpus", str(SAMPLE / "corpus.jsonl"), "--out", str(index), "--model-dir", str(tiny_model)])
    main(["eval", str(SAMPLE), "--model-dir", str(tiny_model), "--out", str(tmp_path / "model")])
    env = {"SEARCH_MODEL_DIR": str(tiny_model), "SEARCH_INDEX_DIR": str(index), "SEARCH_INT8": "false"}
    with running_server(env) as base:
        main(["eval", str(SAMPLE), "--server", base, "--out", str(tmp_path / "server")])
    in_process, served = (
        json.loads((tmp_path / where / "results.json").read_text(encoding="utf-8")) for where in ("model", "server")
    )
    (model_figures,), (server_figures,) = in_process["models"].values(), served["models"].values()
    assert served["documents"] is None  # the server's index is the corpus
    for key in ("ndcg@10", "map", "hit@10", "own_language@10", "rank_distance"):
        assert server_figures["all"][key] == pytest.approx(model_figures["all"][key], abs=0.01), key
