"""The worked example of docs/EVALUATION.md: public QA sets in our languages, written as a user's own data would be.

ARCD (Arabic) and iApp (Thai) from ``../shared/data/extra`` (licences in its README) become, per split:
``corpus.jsonl`` (each distinct paragraph once: ``id``, ``text``, ``lang``), ``judged.jsonl`` (``polyglot-search
eval``'s JSONL: ``id``, ``query``, ``lang``, ``relevant``: the paragraph the question was written on) and
``pairs.jsonl`` (plain training pairs: ``query``, ``positive``, ``lang``); ``train-pairs.jsonl`` joins the training
splits' pairs (ARCD train, iApp valid: the test splits stay for ``eval``), what ``configs/user-data-example.yaml``
adapts the default to.

    python -m experiments.user_data_example --out runs/user-data
    polyglot-search eval runs/user-data/arcd-test/judged.jsonl --corpus runs/user-data/arcd-test/corpus.jsonl \\
        --model-dir models/multilingual-e5-small --model-dir models/multilingual-e5-small-hybrid

After the adaptation and the evaluations docs/EVALUATION.md lists, ``--collect`` gathers their figures into
``docs/results/user-data-example.json``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from training.qa_retrieval import EXTRA_DATA, MONOLINGUAL_SETS, load_qa_set

SETS = ("arcd-train", "arcd-test", "iapp-valid", "iapp-test")
TRAIN_SETS = ("arcd-train", "iapp-valid")


def write_user_data(name: str, out: Path, folder: Path = EXTRA_DATA) -> dict[str, int]:
    spec = next(s for s in MONOLINGUAL_SETS if s.name == name)
    qa = load_qa_set(spec, folder)
    target = out / name
    target.mkdir(parents=True, exist_ok=True)
    corpus = [{"id": f"{name}-p{i}", "text": text, "lang": qa.lang} for i, text in enumerate(qa.paragraphs)]
    judged = [
        {"id": f"{name}-q{i}", "query": question, "lang": qa.lang, "relevant": [f"{name}-p{int(answer)}"]}
        for i, (question, answer) in enumerate(zip(qa.questions, qa.answer, strict=True))
    ]
    pairs = [
        {"query": question, "positive": qa.paragraphs[int(answer)], "lang": qa.lang}
        for question, answer in zip(qa.questions, qa.answer, strict=True)
    ]
    for file_name, rows in (("corpus.jsonl", corpus), ("judged.jsonl", judged), ("pairs.jsonl", pairs)):
        text = "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
        (target / file_name).write_text(text, encoding="utf-8")
    return {"paragraphs": len(corpus), "questions": len(judged)}


# what --collect reads (under --out, the adapted run's summary under runs/): name -> results.json of an eval
EVALUATIONS = {
    "arcd-test": "arcd-test/eval-adapted",
    "iapp-test": "iapp-test/eval-adapted",
    "arcd-test, default vs adapted": "arcd-test/eval-default-vs-adapted",
    "iapp-test, default vs adapted": "iapp-test/eval-default-vs-adapted",
    "eval sample (11 languages), default vs adapted": "sample-eval-adapted",
}
ADAPTED_SUMMARY = Path("runs/user-data-adapted/summary.json")


def collect(out: Path, summary_path: Path = ADAPTED_SUMMARY) -> dict:
    """The worked example's figures: every model's overall row and the differences with their intervals."""
    figures: dict = {}
    for name, folder in EVALUATIONS.items():
        result = json.loads((out / folder / "results.json").read_text(encoding="utf-8"))
        models = {model: rows["all"] for model, rows in result["models"].items()}
        figures[name] = {"baseline": result["baseline"], "models": models, "differences": result["differences"]}
    summary = json.loads(summary_path.read_text(encoding="utf-8"))
    figures["held-out pairs, default vs adapted"] = summary["held_out"]
    figures["training"] = {key: summary[key] for key in ("steps", "seconds", "peak_rss_mib")}
    return figures


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=Path("runs/user-data"))
    parser.add_argument("--sets", nargs="+", default=list(SETS), choices=SETS)
    parser.add_argument("--collect", type=Path, help="write the evaluations' figures to this JSON file and stop")
    args = parser.parse_args(argv)
    if args.collect:
        args.collect.write_text(json.dumps(collect(args.out), indent=1) + "\n", encoding="utf-8")
        print(f"wrote {args.collect}")
        return
    for name in args.sets:
        print(name, write_user_data(name, args.out))
    if all(name in args.sets for name in TRAIN_SETS):
        joined = "".join((args.out / name / "pairs.jsonl").read_text(encoding="utf-8") for name in TRAIN_SETS)
        (args.out / "train-pairs.jsonl").write_text(joined, encoding="utf-8")
        print("train-pairs.jsonl", {"pairs": joined.count("\n")})


if __name__ == "__main__":
    main()
