"""Passage retrieval on monolingual question-answering sets: each question against every paragraph of its set.

What XQuAD-R cannot show: its passages are short sentences in an eleven-way parallel pool, so a model can lose
ground on a one-language corpus of real, longer paragraphs without its mono figure moving. These sets are that
case (SQuAD-format JSON, or JSONL with ``context``/``question`` per line, also inside a zip). The paragraph a
question was written on is its one relevant passage; identical paragraph texts count once.

Sets have a role: ``choose`` sets may inform a choice (a merge scale, an adapter recipe); ``held_out`` sets are only
reported, so that the floor measured on them stays honest. The roles of the public sets in ``../shared/data/extra``
are fixed in MONOLINGUAL_SETS.

    python -m training.qa_retrieval --model models/multilingual-e5-small-hybrid --baseline models/multilingual-e5-small
"""

from __future__ import annotations

import argparse
import json
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np

from app.evaluation.metrics import paired_bootstrap
from training.data import DataError

if TYPE_CHECKING:
    from training.evaluate import Embedder

EXTRA_DATA = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "extra"
Role = Literal["choose", "held_out"]
MRR_DEPTH = 10


@dataclass(frozen=True)
class QaSetSpec:
    name: str
    lang: str
    path: str  # relative to the data folder; "archive.zip:member" for a file inside a zip
    role: Role


# DRCD is held out whole (never looked at while choosing); of the others, one split chooses and another is held out.
MONOLINGUAL_SETS = (
    QaSetSpec("cmrc2018-trial", "zh", "cmrc2018-zh/cmrc2018_trial.json", "choose"),
    QaSetSpec("arcd-train", "ar", "arcd-ar/data_arcd-train.json", "choose"),
    QaSetSpec("iapp-valid", "th", "iapp-th/data.zip:data/valid.jsonl", "choose"),
    QaSetSpec("cmrc2018-dev", "zh", "cmrc2018-zh/cmrc2018_dev.json", "held_out"),
    QaSetSpec("drcd-dev", "zh-Hant", "drcd-zh-hant/DRCD_dev.json", "held_out"),
    QaSetSpec("arcd-test", "ar", "arcd-ar/data_arcd-test.json", "held_out"),
    QaSetSpec("iapp-test", "th", "iapp-th/data.zip:data/test.jsonl", "held_out"),
)


@dataclass
class QaSet:
    name: str
    lang: str
    role: Role
    paragraphs: list[str]
    questions: list[str]
    answer: np.ndarray  # per question: index of its paragraph

    @classmethod
    def from_pairs(cls, spec: QaSetSpec, pairs: list[tuple[str, str]]) -> QaSet:
        """(question, paragraph) pairs -> a set with each distinct paragraph text once."""
        index: dict[str, int] = {}
        questions, answer = [], []
        for question, paragraph in pairs:
            question, paragraph = question.strip(), paragraph.strip()
            if not question or not paragraph:
                continue
            answer.append(index.setdefault(paragraph, len(index)))
            questions.append(question)
        if not questions:
            raise DataError(f"{spec.path}: no question with a non-empty paragraph")
        return cls(spec.name, spec.lang, spec.role, list(index), questions, np.array(answer))


def _read_text(folder: Path, path: str) -> str:
    archive, _, member = path.partition(".zip:")
    if member:
        with zipfile.ZipFile(folder / f"{archive}.zip") as zipped:
            return zipped.read(member).decode("utf-8")
    return (folder / path).read_text(encoding="utf-8")


def _pairs(text: str, path: str) -> list[tuple[str, str]]:
    """SQuAD JSON ({"data": [{"paragraphs": [{"context", "qas": [{"question"}]}]}]}) or JSONL with context and
    question fields per line."""
    if path.endswith(".json"):
        try:
            articles = json.loads(text)["data"]
            return [
                (qa["question"], paragraph["context"])
                for article in articles
                for paragraph in article["paragraphs"]
                for qa in paragraph["qas"]
            ]
        except (KeyError, TypeError, ValueError) as exc:
            raise DataError(f"{path}: not SQuAD-format JSON ({exc!r})") from exc
    pairs = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            pairs.append((record["question"], record["context"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise DataError(f"{path}:{number}: expected a JSON object with question and context ({exc!r})") from exc
    return pairs


def load_qa_set(spec: QaSetSpec, folder: Path = EXTRA_DATA) -> QaSet:
    try:
        text = _read_text(folder, spec.path)
    except (OSError, KeyError, zipfile.BadZipFile) as exc:
        raise DataError(f"{folder / spec.path}: cannot read ({exc})") from exc
    return QaSet.from_pairs(spec, _pairs(text, spec.path))


def load_qa_sets(role: Role | None = None, folder: Path = EXTRA_DATA) -> list[QaSet]:
    return [load_qa_set(spec, folder) for spec in MONOLINGUAL_SETS if role in (None, spec.role)]


def question_ranks(embedder: Embedder, qa: QaSet, chunk: int = 512) -> np.ndarray:
    """1-based rank of each question's own paragraph among all paragraphs of the set (one plus the paragraphs
    scored strictly higher, as in training.metrics)."""
    paragraphs = embedder.encode(qa.paragraphs, "passage")
    queries = embedder.encode(qa.questions, "query")
    ranks = np.empty(len(qa.questions), dtype=np.int64)
    for start in range(0, len(qa.questions), chunk):
        scores = queries[start : start + chunk] @ paragraphs.T
        own = scores[np.arange(len(scores)), qa.answer[start : start + chunk]]
        ranks[start : start + chunk] = (scores > own[:, None]).sum(axis=1) + 1
    return ranks


def per_question(ranks: np.ndarray) -> dict[str, np.ndarray]:
    """Per-question values of the reported measures (one relevant paragraph: nDCG@10 = 1/log2(rank+1))."""
    within = ranks <= MRR_DEPTH
    return {
        "mrr10": np.where(within, 1.0 / ranks, 0.0),
        "ndcg10": np.where(within, 1.0 / np.log2(ranks + 1.0), 0.0),
        "hit1": (ranks == 1).astype(float),
        "hit10": within.astype(float),
    }


def summarise(ranks: np.ndarray) -> dict[str, float]:
    return {name: round(float(values.mean()), 4) for name, values in per_question(ranks).items()}


def bootstrap_difference(
    ranks: np.ndarray, baseline_ranks: np.ndarray, measure: str = "mrr10", samples: int = 2000, seed: int = 0
) -> dict[str, float]:
    """Paired bootstrap over questions of mean(measure) − mean(baseline's measure): the difference and its 95 %
    interval."""
    if ranks.shape != baseline_ranks.shape:
        raise ValueError("the two rank arrays must hold the same questions")
    mean, low, high = paired_bootstrap(
        per_question(baseline_ranks)[measure], per_question(ranks)[measure], samples, seed
    )
    return {"diff": round(mean, 4), "ci95": [round(low, 4), round(high, 4)]}


def evaluate_sets(embedder: Embedder, sets: list[QaSet]) -> dict[str, np.ndarray]:
    """Ranks per set name (the raw material of summaries and paired intervals)."""
    return {qa.name: question_ranks(embedder, qa) for qa in sets}


def report(
    sets: list[QaSet], ranks: dict[str, np.ndarray], baseline: dict[str, np.ndarray] | None = None
) -> dict[str, dict]:
    """Per set: language, role, sizes, the measures, and with a baseline the paired MRR@10 and Hit@1 differences."""
    out = {}
    for qa in sets:
        entry = {
            "lang": qa.lang,
            "role": qa.role,
            "paragraphs": len(qa.paragraphs),
            "questions": len(qa.questions),
            **summarise(ranks[qa.name]),
        }
        if baseline is not None:
            entry["vs_baseline"] = {
                measure: bootstrap_difference(ranks[qa.name], baseline[qa.name], measure)
                for measure in ("mrr10", "hit1")
            }
        out[qa.name] = entry
    return out


def worst_mrr10_loss(figures: dict[str, dict], role: Role) -> float:
    """The largest MRR@10 loss against the baseline over the sets of a role (negative: a gain on every set)."""
    return max(-entry["vs_baseline"]["mrr10"]["diff"] for entry in figures.values() if entry["role"] == role)


def markdown(figures: dict[str, dict]) -> str:
    lines = ["| set | lang | role | paragraphs / questions | MRR@10 | Hit@1 | Hit@10 | nDCG@10 | ΔMRR@10 [95 % CI] |"]
    lines.append("|---" * 9 + "|")
    for name, f in figures.items():
        delta = f.get("vs_baseline", {}).get("mrr10")
        cell = f"{delta['diff']:+.3f} [{delta['ci95'][0]:+.3f}, {delta['ci95'][1]:+.3f}]" if delta else ""
        lines.append(
            f"| {name} | {f['lang']} | {f['role']} | {f['paragraphs']:,} / {f['questions']:,} | {f['mrr10']:.3f} "
            f"| {f['hit1']:.3f} | {f['hit10']:.3f} | {f['ndcg10']:.3f} | {cell} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    from training.evaluate import make_embedder

    parser = argparse.ArgumentParser(description="Monolingual QA passage retrieval (MRR@10, Hit@1/10, nDCG@10).")
    parser.add_argument("--model", required=True, help="model folder (ONNX via its manifest) or HF id/folder")
    parser.add_argument("--baseline", help="a second model: paired bootstrap differences against it")
    parser.add_argument("--variant", choices=["fp32", "int8"], help="ONNX variant (default: the manifest's)")
    parser.add_argument("--role", choices=["choose", "held_out"], help="only the sets of this role")
    parser.add_argument("--data", type=Path, default=EXTRA_DATA, help="folder holding the sets")
    parser.add_argument("--out", type=Path, help="write the figures as JSON here")
    args = parser.parse_args(argv)
    try:
        sets = load_qa_sets(args.role, args.data)
    except DataError as exc:
        raise SystemExit(f"qa_retrieval: {exc}") from exc
    ranks = evaluate_sets(make_embedder(args.model, args.variant), sets)
    baseline = evaluate_sets(make_embedder(args.baseline, args.variant), sets) if args.baseline else None
    figures = report(sets, ranks, baseline)
    print(markdown(figures))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
