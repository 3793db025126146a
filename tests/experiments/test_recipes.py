"""The experiments in experiments/recipes/ (change, rule, result) agree with the records their results come from."""

from __future__ import annotations

import json

import pytest

from experiments.adapter_sweep import CHALLENGERS, EXPERIMENTS, ROOT


def seed2_dev(entry: dict) -> dict:
    dev = entry["dev"]
    return dev.get("2", dev)


@pytest.mark.parametrize("step", EXPERIMENTS, ids=[f"{e['experiment']:02d}-{e['name']}" for e in EXPERIMENTS])
def test_an_experiment_states_its_change_rule_and_result(step: dict) -> None:
    assert step["why"] and step["rule"]
    if step["result"] is None:  # written before its run: only the newest one, and nothing recorded for it yet
        assert step is EXPERIMENTS[-1] and not (ROOT / step["record"]).exists()
        return
    assert step["result"]["verdict"]
    assert (ROOT / step["record"]).is_file()
    result = step["result"]
    if "three_seed_mean_dev_multi_map" in result and "dev_multi_map" not in result:
        delta = result["three_seed_mean_dev_multi_map"] - result["reference_three_seed_mean_dev_multi_map"]
    else:
        delta = result["dev_multi_map"] - result["reference_dev_multi_map"]
    assert result["delta_dev_multi_map"] == pytest.approx(delta, abs=1e-4)
    assert result["verdict"].startswith("adopted") == (step["name"] in {"combined", "b128-t02-hn-query", "hn3-query"})


@pytest.mark.parametrize("name", sorted(CHALLENGERS))
def test_a_challengers_result_is_the_one_its_record_holds(name: str) -> None:
    step = next(e for e in EXPERIMENTS if e["name"] == name)
    if step["result"] is None:
        return  # pending: checked above
    record = json.loads((ROOT / step["record"]).read_text())
    reference = record.get("reference") or record["round2"]
    assert step["result"]["dev_multi_map"] == seed2_dev(record[f"{name}-seed2"])["multi_map"]
    assert step["result"]["reference_dev_multi_map"] == seed2_dev(reference)["multi_map"]
    adopted = record["chosen"]["candidate"] == name
    assert step["result"]["verdict"].startswith("adopted") == adopted
