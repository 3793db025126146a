"""The loss-curve figure: one train line per batch kind, and a PNG written."""

from __future__ import annotations

import json
from pathlib import Path

from training.plots import plot_loss_curve, train_loss_by_kind


def test_train_loss_is_split_by_batch_kind_and_dev_records_are_not_train_steps() -> None:
    records = [
        {"step": 0, "dev_loss": 4.0},
        {"step": 1, "loss": 4.1, "kind": "cross"},
        {"step": 2, "loss": 2.5, "kind": "mono"},
        {"step": 3, "loss": 3.9, "kind": "cross"},
    ]
    assert train_loss_by_kind(records) == {"cross": [(1, 4.1), (3, 3.9)], "mono": [(2, 2.5)]}
    assert train_loss_by_kind([{"step": 1, "loss": 1.0}]) == {"": [(1, 1.0)]}  # a run without batch kinds


def test_plot_writes_a_png(tmp_path: Path) -> None:
    metrics = tmp_path / "metrics.jsonl"
    lines = [{"step": 0, "dev_loss": 4.0}] + [
        {"step": s, "loss": 4.0 - s / 30, "kind": "mono" if s % 2 else "cross"} for s in range(1, 61)
    ]
    metrics.write_text("\n".join(json.dumps(line) for line in lines), encoding="utf-8")
    out = plot_loss_curve(metrics, tmp_path / "loss.png")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out.stat().st_size > 10_000
