"""The comparison of arXiv 2408.10536 (Table 1) on XQuAD-R test articles, on one machine, in one go.

From the same base (multilingual-e5-small) and the same budget (steps, batch size, lr, seed, data), train
mono (X-X), cross (X-Y) and hybrid (alpha = 0.5) models, then evaluate base + the three on the test articles
(pool: all sentences of the 16 test articles in 11 languages; el and vi are unseen in training).

    python -m experiments.paper_comparison --steps 400            # ~1 h on a 2-core CPU
    python -m experiments.paper_comparison --steps 400 --alpha-sweep

Writes docs/results/xquad-r-test.json (and per-model results, heatmaps and loss curves under runs/bench/).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

from training.data import load_split_titles
from training.evaluate import (
    METRIC_KEYS,
    load_retrieval_set,
    make_embedder,
    markdown_table,
    write_outputs,
)
from training.evaluate import evaluate as run_evaluation
from training.merge_scale import LANGUAGES as ALL_LANGUAGES

ROOT = Path(__file__).resolve().parent.parent

PAPER_TABLE1 = {
    "XLM-R hybrid (paper, full XQuAD-R)": {"mono_map": 0.798, "cross_map": 0.705, "multi_map": 0.593},
    "LaBSE hybrid (paper, full XQuAD-R)": {
        "mono_map": 0.817,
        "cross_map": 0.767,
        "multi_map": 0.682,
        "rank_distance": 221.1,
    },
}


def train(name: str, strategy: str, alpha: float, args: argparse.Namespace) -> Path:
    command = [
        sys.executable,
        "training/train.py",
        "--config",
        f"configs/{strategy}.yaml",
        "--run-name",
        name,
        "--strategy",
        strategy,
        "--alpha",
        str(alpha),
        "--max-steps",
        str(args.steps),
        "--batch-size",
        str(args.batch_size),
        "--lr",
        str(args.lr),
        "--seed",
        str(args.seed),
        "--temperature",
        str(args.temperature),
        "--hard-negatives",
        str(args.hard_negatives).lower(),
        "--eval-every",
        str(args.eval_every),
        "--checkpoint-every",
        str(args.eval_every),
        "--runs-dir",
        str(args.runs_dir),
        "--output-dir",
        str(args.models_dir),
        "--resume",
        "true",
    ]
    print(f"\n=== training {name}: {' '.join(command[2:])}", flush=True)
    subprocess.run(command, cwd=ROOT, check=True)
    return args.models_dir / name


def evaluate_model(name: str, model_dir: Path, data, args: argparse.Namespace) -> dict:  # type: ignore[no-untyped-def]
    print(f"\n=== evaluating {name} ({model_dir})", flush=True)
    result = run_evaluation(make_embedder(str(model_dir), args.variant), data)
    result["model_dir"] = str(model_dir)
    result["dataset"] = "XQuAD-R test articles"
    write_outputs(result, args.runs_dir / "eval" / name)
    return result


def summarise(result: dict, alpha: float | None) -> dict:
    keep = [*METRIC_KEYS, "own_language_share_top10", "model_dir", "map_matrix"]
    summary = {key: result[key] for key in keep}
    if alpha is not None:
        summary["alpha"] = alpha
        summary["best_step"] = result["train_summary"]["best_step"]
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=400, help="training steps per model (the budget)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=5e-5)
    parser.add_argument("--temperature", type=float, default=0.05)
    parser.add_argument("--hard-negatives", action="store_true")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--eval-every", type=int, default=50, help="dev-loss evaluation and checkpoint interval")
    parser.add_argument("--variant", default="fp32", choices=["fp32", "int8"], help="ONNX variant evaluated")
    parser.add_argument("--alpha-sweep", action="store_true", help="also train hybrid with alpha 0.25 and 0.75")
    parser.add_argument("--base", type=Path, default=ROOT / "models" / "multilingual-e5-small")
    parser.add_argument("--data", type=Path, default=ROOT / "data" / "xquad-r")
    parser.add_argument("--split-file", type=Path, default=ROOT / "data" / "splits" / "xquad-r-articles.json")
    parser.add_argument("--runs-dir", type=Path, default=ROOT / "runs" / "bench")
    parser.add_argument("--models-dir", type=Path, default=ROOT / "models")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "results" / "xquad-r-test.json")
    args = parser.parse_args()
    started = time.perf_counter()
    data = load_retrieval_set(args.data, ALL_LANGUAGES, load_split_titles(args.split_file, "test"))

    runs = [("mono", "mono", 1.0), ("cross", "cross", 0.0), ("hybrid", "hybrid", 0.5)]
    if args.alpha_sweep:
        runs += [("hybrid-a0.25", "hybrid", 0.25), ("hybrid-a0.75", "hybrid", 0.75)]
    models = {"base": evaluate_model("base", args.base, data, args)}
    timings = {}
    for key, strategy, alpha in runs:
        t0 = time.perf_counter()
        model_dir = train(f"bench-{key}", strategy, alpha, args)
        timings[key] = round(time.perf_counter() - t0, 1)
        models[key] = evaluate_model(key, model_dir, data, args)
        models[key]["train_summary"] = json.loads((args.runs_dir / f"bench-{key}" / "summary.json").read_text())

    alphas = {key: alpha for key, _, alpha in runs}
    report = {
        "dataset": "XQuAD-R (LAReQA), test articles of data/splits/xquad-r-articles.json, 11 languages",
        "budget": {
            "steps": args.steps,
            "batch_size": args.batch_size,
            "lr": args.lr,
            "temperature": args.temperature,
            "hard_negatives": args.hard_negatives,
            "seed": args.seed,
            "eval_variant": args.variant,
            "train_languages": "ar de en es hi ru th tr zh (train articles); el, vi unseen",
            "train_seconds": timings,
            "total_seconds": round(time.perf_counter() - started, 1),
        },
        "models": {name: summarise(result, alphas.get(name)) for name, result in models.items()},
        "paper_table1": PAPER_TABLE1,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2), encoding="utf-8")
    print("\n" + markdown_table(models))
    print(f"\nwrote {args.out} in {report['budget']['total_seconds'] / 60:.1f} min")


if __name__ == "__main__":
    main()
