"""Figures people would rather look at than read: the loss curve of a training run, the X→Y mAP matrix."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np


def train_loss_by_kind(records: list[dict]) -> dict[str, list[tuple[int, float]]]:
    """(step, loss) of the training steps, by batch kind ("mono", "cross"; "" where a run records none)."""
    by_kind: dict[str, list[tuple[int, float]]] = {}
    for record in records:
        if "loss" in record:
            by_kind.setdefault(record.get("kind", ""), []).append((record["step"], record["loss"]))
    return by_kind


def plot_loss_curve(metrics_path: Path, out: Path, title: str = "") -> Path:
    """Train loss per step (one line per batch kind: a hybrid run's monolingual batches are easier than its
    cross-lingual ones, and one line through both would only show the alternation) and the dev loss."""
    records = [json.loads(line) for line in metrics_path.read_text(encoding="utf-8").splitlines() if line.strip()]
    train_by_kind = train_loss_by_kind(records)
    dev = [(r["step"], r["dev_loss"]) for r in records if "dev_loss" in r]
    figure, axis = plt.subplots(figsize=(8, 4.5), dpi=110)
    colours = iter(["tab:blue", "tab:green", "tab:purple", "tab:orange"])
    for kind, train in sorted(train_by_kind.items()):
        colour, label = next(colours), f"train loss, {kind} batches" if kind else "train loss"
        steps, losses = map(np.array, zip(*train, strict=True))
        axis.plot(steps, losses, color=colour, alpha=0.25, linewidth=0.8)
        window = max(1, len(losses) // 25)
        smooth = np.convolve(losses, np.ones(window) / window, mode="valid")
        label += f" (mean of {window})" if window > 1 else ""
        axis.plot(steps[window - 1 :], smooth, color=colour, linewidth=1.8, label=label)
    if dev:
        steps, losses = zip(*dev, strict=True)
        axis.plot(steps, losses, "o-", color="tab:red", linewidth=1.8, label="dev loss")
    axis.set_xlabel("step")
    axis.set_ylabel("InfoNCE loss")
    axis.set_title(title or metrics_path.parent.name)
    axis.grid(alpha=0.3)
    axis.legend()
    figure.tight_layout()
    figure.savefig(out)
    plt.close(figure)
    return out


def plot_matrix(result: dict, out: Path) -> Path:
    """The X→Y mAP matrix of an evaluation as a heatmap."""
    langs = result["languages"]
    values = np.array([[result["map_matrix"][x][y] for y in langs] for x in langs])
    figure, axis = plt.subplots(figsize=(1.0 + 0.62 * len(langs), 0.6 + 0.55 * len(langs)), dpi=110)
    image = axis.imshow(values, cmap="viridis", vmin=0, vmax=1)
    axis.set_xticks(range(len(langs)), langs)
    axis.set_yticks(range(len(langs)), langs)
    axis.set_xlabel("candidate language (Y)")
    axis.set_ylabel("query language (X)")
    for i in range(len(langs)):
        for j in range(len(langs)):
            axis.text(
                j,
                i,
                f"{values[i, j]:.2f}",
                ha="center",
                va="center",
                fontsize=7,
                color="white" if values[i, j] < 0.6 else "black",
            )
    axis.set_title(f"X→Y mAP: {result['model']}", fontsize=9)
    figure.colorbar(image, ax=axis, fraction=0.046)
    figure.tight_layout()
    figure.savefig(out)
    plt.close(figure)
    return out
