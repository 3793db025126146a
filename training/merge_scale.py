"""Choose the scale at which a LoRA adapter is merged into its base, by a rule written before the curve is measured.

    python -m training.merge_scale                      # the shipped adapter; resumable; ~12 min per scale, 2 cores
    python -m training.merge_scale --scales 0.375 0.125 # more points on the same curve

For every scale λ (W = W_base + λ·ΔW) the merged model is exported as it would be served (ONNX, gated int8) and
measured through its served graph on
- the XQuAD-R **dev** articles (mono / cross / multi mAP, rank distance, Hit@1/10, own-language share), and
- the monolingual QA sets of ``training.qa_retrieval`` (each question against all paragraphs of its set), with
  paired bootstrap intervals against λ = 0, the base.

The rule (fixed before any point was measured):
- **multilingual default**: the highest dev multi mAP among the scales whose MRR@10 loss against the base is at
  most ``--mono-tolerance`` (0.01) on every *choose* set and whose dev mono mAP is at least the base's;
- **one-language model** (what a corpus in one language is indexed with): the scale with the highest mean MRR@10
  over the *choose* sets (the base, λ = 0, when nothing beats it).
Held-out sets and the test articles are reported, never consulted: ``experiments/default_model_report.py`` measures
the chosen models on the test articles.

Writes ``docs/results/merge-scale.json`` (after every scale, so a stopped run resumes) and ``merge-scale.png``.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

import numpy as np

from training.data import load_split_titles
from training.default_model import DEFAULT_ADAPTER, DEFAULT_OUT
from training.evaluate import OnnxEmbedder, evaluate, load_retrieval_set
from training.qa_retrieval import EXTRA_DATA, evaluate_sets, load_qa_sets, report, summarise, worst_mrr10_loss

ROOT = Path(__file__).resolve().parent.parent
XQUAD, SPLIT_FILE = ROOT / "data" / "xquad-r", ROOT / "data" / "splits" / "xquad-r-articles.json"
LANGUAGES = ["ar", "de", "el", "en", "es", "hi", "ru", "th", "tr", "vi", "zh"]
RESULTS = ROOT / "docs" / "results"
DEV_KEYS = ("mono_map", "cross_map", "multi_map", "rank_distance", "multi_hit1", "multi_hit10")
DEFAULT_SCALES = (0.0, 1.0, 0.5, 0.25, 0.75)  # the ends first: every later point is read against them

log = logging.getLogger("training.merge_scale")


def scale_name(scale: float) -> str:
    return f"{scale:g}"


def export_scaled(base: Path, adapter: Path, scale: float, out: Path) -> Path:
    """The merged model at ``scale``, exported once (an export that finished is reused)."""
    from app.manifest import load_model_manifest
    from training.export import export_model

    manifest_path = out / "manifest.json"
    if manifest_path.is_file():
        manifest = load_model_manifest(out)
        if manifest.adapter and manifest.adapter.get("scale") == scale:
            return out
    export_model(base, out, name=f"{out.name}", adapter=adapter, adapter_scale=scale)
    return out


def measure(model_dir: Path, ranks_file: Path) -> dict:
    """Dev-article figures and monolingual QA ranks (saved beside the model for the paired intervals)."""
    embedder = OnnxEmbedder(model_dir, None)
    dev = evaluate(embedder, load_retrieval_set(XQUAD, LANGUAGES, load_split_titles(SPLIT_FILE, "dev")))
    sets = load_qa_sets()
    ranks = evaluate_sets(embedder, sets)
    np.savez(ranks_file, **ranks)
    return {
        "model": str(model_dir.relative_to(ROOT) if model_dir.is_relative_to(ROOT) else model_dir),
        "variant": embedder.encoder.variant,
        "dev": {key: round(dev[key], 4) for key in DEV_KEYS}
        | {"own_language_top10": round(dev["own_language_share_top10"], 4)},
        "qa": {qa.name: summarise(ranks[qa.name]) for qa in sets},
    }


def with_intervals(points: dict[str, dict], work: Path) -> dict[str, dict]:
    """Each point's QA figures with paired bootstrap differences against the base (λ = 0)."""
    sets = load_qa_sets()
    base = dict(np.load(work / "0" / "qa_ranks.npz"))
    for name, point in points.items():
        ranks = dict(np.load(work / name / "qa_ranks.npz"))
        point["qa"] = report(sets, ranks, base)
    return points


def choose(points: dict[str, dict], tolerance: float) -> dict:
    base = points["0"]
    eligible = [
        name
        for name, point in points.items()
        if worst_mrr10_loss(point["qa"], "choose") <= tolerance and point["dev"]["mono_map"] >= base["dev"]["mono_map"]
    ]
    multilingual = max(eligible, key=lambda name: points[name]["dev"]["multi_map"])

    def mean_choose_mrr(name: str) -> float:
        return float(np.mean([f["mrr10"] for f in points[name]["qa"].values() if f["role"] == "choose"]))

    one_language = max(points, key=lambda name: (round(mean_choose_mrr(name), 4), -float(name)))
    return {
        "rule": (
            f"multilingual: highest dev multi mAP with MRR@10 loss <= {tolerance} against the base on every choose "
            "set and dev mono mAP >= the base's; one-language: highest mean choose-set MRR@10 (ties: lower scale)"
        ),
        "multilingual_scale": float(multilingual),
        "one_language_scale": float(one_language),
        "eligible": sorted(eligible, key=float),
    }


def markdown(points: dict[str, dict]) -> str:
    """One row per scale: the dev-article figures, then ΔMRR@10 against the base per QA set (held-out sets marked)."""
    names = list(next(iter(points.values()))["qa"])
    roles = {name: next(iter(points.values()))["qa"][name]["role"] for name in names}
    header = ["λ", "dev mono", "dev cross", "dev multi", "rank dist.", "Hit@1", "Hit@10", "own lang."]
    header += [f"{name}{' (held out)' if roles[name] == 'held_out' else ''}" for name in names]
    lines = ["| " + " | ".join(header) + " |", "|---" * len(header) + "|"]
    for scale, point in points.items():
        dev = point["dev"]
        cells = [scale] + [f"{dev[k]:.3f}" for k in ("mono_map", "cross_map", "multi_map")]
        cells += [f"{dev['rank_distance']:.1f}", f"{dev['multi_hit1']:.3f}", f"{dev['multi_hit10']:.3f}"]
        cells += [f"{dev['own_language_top10']:.1%}"]
        cells += [f"{point['qa'][name]['vs_baseline']['mrr10']['diff']:+.3f}" for name in names]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot(points: dict[str, dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    scales = sorted(points, key=float)
    x = [float(s) for s in scales]
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    for key, label in (("multi_map", "multi mAP"), ("cross_map", "cross mAP"), ("mono_map", "mono mAP")):
        left.plot(x, [points[s]["dev"][key] for s in scales], marker="o", label=label)
    left.set(title="XQuAD-R dev articles", xlabel="merge scale λ (0 = base, 1 = adapter)", ylabel="mAP")
    left.legend()
    set_names = list(points[scales[0]]["qa"])
    for name in set_names:
        role = points[scales[0]]["qa"][name]["role"]
        diffs = [points[s]["qa"][name]["vs_baseline"]["mrr10"]["diff"] for s in scales]
        style = "-" if role == "held_out" else "--"
        right.plot(x, diffs, marker="o", linestyle=style, label=f"{name} ({role.replace('_', ' ')})")
    right.axhline(-0.01, color="grey", linewidth=0.8, linestyle=":")
    right.axhline(0.0, color="black", linewidth=0.6)
    right.set(
        title="monolingual QA: MRR@10 against the base",
        xlabel="merge scale λ",
        ylabel="ΔMRR@10 (dotted: −0.01 floor)",
    )
    right.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--base", type=Path, default=ROOT / DEFAULT_OUT)
    parser.add_argument("--adapter", type=Path, default=ROOT / DEFAULT_ADAPTER)
    parser.add_argument("--scales", type=float, nargs="+", default=list(DEFAULT_SCALES))
    parser.add_argument("--work", type=Path, default=ROOT / "models" / "merge-scale", help="exported models")
    parser.add_argument("--out", type=Path, default=RESULTS / "merge-scale.json")
    parser.add_argument("--mono-tolerance", type=float, default=0.01)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("training").setLevel(logging.INFO)
    if not EXTRA_DATA.is_dir() or not XQUAD.is_dir():
        raise SystemExit(f"merge_scale needs {EXTRA_DATA} and {XQUAD}")
    done = json.loads(args.out.read_text(encoding="utf-8")) if args.out.is_file() else {}
    points: dict[str, dict] = done.get("points", {})
    for scale in args.scales:
        name = scale_name(scale)
        if name in points:
            continue
        model_dir = export_scaled(args.base, args.adapter, scale, args.work / name)
        points[name] = measure(model_dir, model_dir / "qa_ranks.npz")
        print(name, json.dumps(points[name]["dev"]), flush=True)
        args.out.write_text(json.dumps({"points": points}, indent=2) + "\n", encoding="utf-8")
    if "0" not in points:
        raise SystemExit("the curve needs scale 0 (the base) to compare against")
    points = with_intervals(dict(sorted(points.items(), key=lambda item: float(item[0]))), args.work)
    result = {
        "adapter": str(args.adapter.relative_to(ROOT) if args.adapter.is_relative_to(ROOT) else args.adapter),
        "choice": choose(points, args.mono_tolerance),
        "points": points,
        "command": " ".join(["python -m training.merge_scale", *sys.argv[1:]]),
    }
    args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    plot(points, args.out.with_suffix(".png"))
    print(markdown(points))
    print(json.dumps(result["choice"], indent=2))


if __name__ == "__main__":
    main()
