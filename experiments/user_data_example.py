"""The worked example of docs/EVALUATION.md: public QA sets in our languages, written as a user's own data would be.

ARCD (Arabic) and iApp (Thai) from ``../shared/data/extra`` (licences in its README) become, per split:
``corpus.jsonl`` (each distinct paragraph once: ``id``, ``text``, ``lang``), ``judged.jsonl`` (``polyglot-search
eval``'s JSONL: ``id``, ``query``, ``lang``, ``relevant``: the paragraph the question was written on) and
``pairs.jsonl`` (plain training pairs: ``query``, ``positive``, ``lang``).

    python -m experiments.user_data_example --out runs/user-data
    polyglot-search eval runs/user-data/arcd-test/judged.jsonl --corpus runs/user-data/arcd-test/corpus.jsonl \\
        --model-dir models/multilingual-e5-small --model-dir models/multilingual-e5-small-hybrid
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from training.qa_retrieval import EXTRA_DATA, MONOLINGUAL_SETS, load_qa_set

SETS = ("arcd-train", "arcd-test", "iapp-valid", "iapp-test")


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


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=Path("runs/user-data"))
    parser.add_argument("--sets", nargs="+", default=list(SETS), choices=SETS)
    args = parser.parse_args(argv)
    for name in args.sets:
        print(name, write_user_data(name, args.out))


if __name__ == "__main__":
    main()
