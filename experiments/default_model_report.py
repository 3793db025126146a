"""The served default model's figures on the XQuAD-R test articles and on monolingual QA sets, through the ONNX
graphs that are served.

    python -m experiments.default_model_report              # after `make models`; ~40 min on 2 cores

Writes ``docs/results/default-model.json`` (fp32 and int8 of the served default on the test articles, the chosen
recipe's three seeds from ``--sweep`` beside the previous recipe's from ``--previous-sweep``, merged at scale 1 as
they were trained; the served default against the base on every monolingual QA set of ``training.qa_retrieval``,
held-out sets included, with paired bootstrap intervals) and the adapter's
reference figures on a fixed slice of the test articles (``models/adapters/<name>/reference_slice.json``), which
``tests/training/test_default_adapter.py`` checks after merging and exporting the adapter again.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import yaml

from app.manifest import ManifestError, load_model_manifest
from training.data import load_split_titles
from training.default_model import DEFAULT_ADAPTER, DEFAULT_OUT, DEFAULT_SERVED
from training.evaluate import Embedder, OnnxEmbedder, evaluate, load_retrieval_set
from training.merge_scale import LANGUAGES, RESULTS, SPLIT_FILE, XQUAD
from training.plots import plot_matrix
from training.qa_retrieval import evaluate_sets, load_qa_sets, report, summarise

ROOT = Path(__file__).resolve().parent.parent

SLICE_ARTICLES = 2  # the first test articles of the split file: the reference slice
# the figures reported per model and per seed (and own_language_top10, evaluate's own_language_share_top10)
SEED_KEYS = ("mono_map", "cross_map", "multi_map", "rank_distance", "multi_hit1", "multi_hit10", "multi_group_hit10")


def summary(result: dict) -> dict:
    """The figures the issue names, under the names of default-model.json."""
    figures = {key: result[key] for key in SEED_KEYS}
    figures["own_language_top10"] = result["own_language_share_top10"]
    matrix, langs = result["map_matrix"], result["languages"]
    figures["per_language_mono_map"] = {x: matrix[x][x] for x in langs}
    # as the query language: mean X->Y mAP over the other ten candidate languages
    figures["per_language_cross_map"] = {x: float(np.mean([matrix[x][y] for y in langs if y != x])) for x in langs}
    return json.loads(json.dumps(figures), parse_float=lambda text: round(float(text), 4))


def slice_titles() -> list[str]:
    return json.loads(SPLIT_FILE.read_text(encoding="utf-8"))["test"][:SLICE_ARTICLES]


def slice_figures(embedder: Embedder) -> dict:
    """mono / cross / multi mAP and rank distance on the reference slice (all 11 languages)."""
    result = evaluate(embedder, load_retrieval_set(XQUAD, LANGUAGES, set(slice_titles())))
    figures = {key: round(result[key], 4) for key in ("mono_map", "cross_map", "multi_map", "rank_distance")}
    return {"articles": slice_titles(), "n_queries": result["n_queries"], **figures}


def seeds_summary(sweep: dict) -> tuple[list[dict], dict]:
    """The chosen recipe's seeds (GPU runs, torch fp32, from the sweep's test figures) and their mean ± std."""
    chosen = sweep["chosen"]["candidate"]
    runs = [(name, figures) for name, figures in sweep["test"].items() if name.startswith(f"{chosen}-seed")]
    seeds = [
        {"seed": int(name.rsplit("seed", 1)[1])}
        | {key: figures[key] for key in SEED_KEYS}
        | {"own_language_top10": figures["own_language_share_top10"]}
        for name, figures in runs
    ]
    stats = {
        key: {"mean": round(float(np.mean(values)), 4), "std": round(float(np.std(values, ddof=1)), 4)}
        for key in (*SEED_KEYS, "own_language_top10")
        for values in [[seed[key] for seed in seeds]]
    }
    return seeds, stats


def monolingual_figures(model: Path, base: Path, curve_file: Path) -> dict:
    """The served default (its served variant) against the base on every monolingual QA set, with paired intervals.
    Taken from the merge-scale curve when the curve measured these very graphs (same fp32 fingerprint and variant
    for the served model; its λ = 0 point for the base), else measured here."""
    manifest = load_model_manifest(model)
    curve = json.loads(curve_file.read_text(encoding="utf-8")) if curve_file.is_file() else {"points": {}}
    for point in curve["points"].values():
        try:
            measured = load_model_manifest(ROOT / point["model"])
        except ManifestError:  # the curve's exports are not on this machine
            continue
        if (measured.fingerprint, point["variant"]) == (manifest.fingerprint, manifest.default_variant):
            base_point = curve["points"]["0"]
            return {
                "measured_in": f"{curve_file.name}: the same graphs ({point['model']}; base {base_point['model']})",
                "base": {
                    name: {k: f[k] for k in ("mrr10", "ndcg10", "hit1", "hit10")}
                    for name, f in base_point["qa"].items()
                },
                "served": point["qa"],
            }
    sets = load_qa_sets()
    base_ranks = evaluate_sets(OnnxEmbedder(base, None), sets)
    return {
        "measured_in": "this report",
        "base": {qa.name: summarise(base_ranks[qa.name]) for qa in sets},
        "served": report(sets, evaluate_sets(OnnxEmbedder(model, None), sets), base_ranks),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", type=Path, default=ROOT / DEFAULT_SERVED)
    parser.add_argument("--adapter", type=Path, default=ROOT / DEFAULT_ADAPTER)
    parser.add_argument("--base", type=Path, default=ROOT / DEFAULT_OUT, help="the base, ONNX-exported")
    parser.add_argument("--curve", type=Path, default=RESULTS / "merge-scale.json", help="training.merge_scale's")
    parser.add_argument("--sweep", type=Path, default=RESULTS / "adapter-sweep-round5.json")
    parser.add_argument("--previous-sweep", type=Path, default=RESULTS / "adapter-sweep-round2.json")
    parser.add_argument("--config", type=Path, default=ROOT / "configs" / "default-adapter.yaml")
    parser.add_argument("--out", type=Path, default=RESULTS / "default-model.json")
    args = parser.parse_args()

    manifest = load_model_manifest(args.model)
    recipe = yaml.safe_load(args.config.read_text(encoding="utf-8"))
    sweep = json.loads(args.sweep.read_text(encoding="utf-8"))
    seeds, seeds_mean_std = seeds_summary(sweep)
    _, previous_mean_std = seeds_summary(json.loads(args.previous_sweep.read_text(encoding="utf-8")))
    test = load_retrieval_set(XQUAD, LANGUAGES, load_split_titles(SPLIT_FILE, "test"))
    figures = {}
    for variant in ("fp32", "int8"):
        result = evaluate(OnnxEmbedder(args.model, variant), test)
        figures[variant] = summary(result)
        if variant == "fp32":
            plot_matrix(result, args.out.with_name("default-model-map-matrix.png"))
        print(variant, json.dumps({k: v for k, v in figures[variant].items() if not k.startswith("per_language")}))
    monolingual = monolingual_figures(args.model, args.base, args.curve)
    report = {
        "model": manifest.name,
        "adapter_sha256": manifest.adapter["sha256"] if manifest.adapter else None,
        "base_model": manifest.base_model,
        "served_variant": manifest.default_variant,
        "test_articles": figures,
        "int8_multi_map_loss": round(figures["fp32"]["multi_map"] - figures["int8"]["multi_map"], 4),
        "merge_scale": manifest.adapter.get("scale", 1.0) if manifest.adapter else None,
        "monolingual_qa": monolingual,
        "zero_shot_languages": [lang for lang in LANGUAGES if lang not in recipe["languages"]],  # never trained on
        "recipe": sweep["chosen"]["recipe"],
        "served_seed": recipe["seed"],
        "seeds": seeds,
        "seeds_mean_std": seeds_mean_std,
        "previous_recipe_seeds_mean_std": previous_mean_std,
        "previous_recipe_sweep": args.previous_sweep.name,
        "command": " ".join(["python -m experiments.default_model_report", *sys.argv[1:]]),
    }
    args.out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    reference = slice_figures(OnnxEmbedder(args.model, "fp32"))
    (args.adapter / "reference_slice.json").write_text(json.dumps(reference, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {args.out} and {args.adapter / 'reference_slice.json'}: {reference}")


if __name__ == "__main__":
    main()
