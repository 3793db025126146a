"""Average the LoRA adapters of one recipe's seeds (a uniform "model soup") and measure it on dev (experiment 9,
experiments/recipes/09-seed-soup.yaml).

    .venv/bin/python -m experiments.adapter_soup --adapters runs/hn3-query/adapter-seed{42,1,2}.tar

Seeds of one recipe start from the same base, so their weight updates can be averaged: ΔW = mean_i(B_i A_i). peft's
``add_weighted_adapter`` with combination ``cat`` does it exactly (one adapter of rank sum(r_i), the scalings folded
into A). The soup is merged into the base and evaluated on the XQuAD-R dev articles the way the sweep evaluates its
seeds (torch, ``training.evaluate``), as are the soups of every pair of seeds (rule (b) of experiment 9 in
docs/RESULTS.md). Figures are printed and written to ``docs/results/adapter-soup-round9.json``.
"""

from __future__ import annotations

import argparse
import itertools
import json
import tarfile
import tempfile
from pathlib import Path

from peft import PeftModel

from experiments.default_model_report import LANGUAGES, SPLIT_FILE, XQUAD
from training.data import load_split_titles
from training.evaluate import RetrievalSet, evaluate, load_retrieval_set, make_embedder
from training.lora import is_adapter_dir
from training.model import load_encoder, save_hf_folder

ROOT = Path(__file__).resolve().parent.parent

FIGURES = (
    "mono_map",
    "cross_map",
    "multi_map",
    "rank_distance",
    "own_language_share_top10",
    "multi_hit1",
    "multi_hit10",
)


def adapter_folder(source: Path, scratch: Path) -> Path:
    """A peft adapter folder, or the sweep's ``adapter-seed<N>.tar`` (its ``adapter/`` member) unpacked."""
    if source.is_dir():
        return source
    target = scratch / source.stem
    with tarfile.open(source) as archive:
        archive.extractall(target, filter="data")
    folder = target / "adapter"
    if not is_adapter_dir(folder):
        raise FileNotFoundError(f"{source} holds no adapter/ folder in peft's layout")
    return folder


def soup_figures(base: str, adapters: list[Path], retrieval: RetrievalSet, scratch: Path) -> dict[str, float]:
    """Merge the uniform average of ``adapters`` into ``base`` and evaluate it on ``retrieval`` (as the sweep does)."""
    loaded = load_encoder(base)
    model = PeftModel.from_pretrained(loaded.encoder.backbone, str(adapters[0]), adapter_name="seed0")
    names = ["seed0"]
    for index, adapter in enumerate(adapters[1:], start=1):
        model.load_adapter(str(adapter), adapter_name=f"seed{index}")
        names.append(f"seed{index}")
    model.add_weighted_adapter(names, [1.0 / len(names)] * len(names), "soup", combination_type="cat")
    model.set_adapter("soup")
    loaded.encoder.backbone = model.merge_and_unload(adapter_names=["soup"])
    merged = scratch / "merged"
    save_hf_folder(loaded, merged)
    result = evaluate(make_embedder(str(merged)), retrieval)
    return {key: round(float(result[key]), 4) for key in FIGURES}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--adapters", type=Path, nargs="+", required=True, help="adapter folders or sweep tars")
    parser.add_argument("--base", default=str(ROOT / "models" / "multilingual-e5-small"))
    parser.add_argument("--split", default="dev", choices=["train", "dev"], help="never the test articles")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "results" / "adapter-soup-round9.json")
    args = parser.parse_args()
    if len(args.adapters) < 2:
        parser.error("a soup needs at least two adapters")

    with tempfile.TemporaryDirectory() as scratch:
        folders = [adapter_folder(source, Path(scratch)) for source in args.adapters]
        labels = [source.name for source in args.adapters]
        record: dict = {"split": args.split, "adapters": labels, "soups": {}}
        retrieval = load_retrieval_set(XQUAD, LANGUAGES, load_split_titles(SPLIT_FILE, args.split))
        for size in range(len(folders), 1, -1):
            for members in itertools.combinations(range(len(folders)), size):
                name = " + ".join(labels[i] for i in members)
                figures = soup_figures(args.base, [folders[i] for i in members], retrieval, Path(scratch))
                record["soups"][name] = figures
                print(name, json.dumps(figures), flush=True)
    args.out.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
