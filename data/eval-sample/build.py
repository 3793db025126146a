"""Build the BEIR-format evaluation sample from two XQuAD-R test articles (data/xquad-r, CC BY-SA 4.0).

    python data/eval-sample/build.py

corpus.jsonl: each paragraph of the articles in all 11 languages (``_id`` ``<article>-p<n>-<lang>``, ``lang``).
queries.jsonl: each question in all 11 languages (``_id`` ``<SQuAD id>-<lang>``, ``lang``).
qrels/test.tsv: a question's relevant documents are its paragraph in every language (grade 1): parallel
judgements, so ``eval`` reports the rank distance between them.
"""

from __future__ import annotations

import json
from pathlib import Path

HERE = Path(__file__).resolve().parent
XQUAD = HERE.parent / "xquad-r"
ARTICLES = ["Packet_switching", "Private_school"]  # test articles (data/splits): 10 paragraphs, 41 questions
LANGUAGES = ["ar", "de", "el", "en", "es", "hi", "ru", "th", "tr", "vi", "zh"]


def main() -> None:
    corpus, queries, qrels = [], [], []
    for lang in LANGUAGES:
        data = json.loads((XQUAD / f"{lang}.json").read_text(encoding="utf-8"))["data"]
        for article in (a for a in data if a["title"] in ARTICLES):
            for p, paragraph in enumerate(article["paragraphs"]):
                paragraph_id = f"{article['title']}-p{p}"
                corpus.append({"_id": f"{paragraph_id}-{lang}", "title": article["title"].replace("_", " "),
                               "text": paragraph["context"], "lang": lang})  # fmt: skip
                for qa in paragraph["qas"]:
                    queries.append({"_id": f"{qa['id']}-{lang}", "text": qa["question"].strip(), "lang": lang})
                    qrels += [(f"{qa['id']}-{lang}", f"{paragraph_id}-{other}") for other in LANGUAGES]
    (HERE / "qrels").mkdir(exist_ok=True)
    for name, rows in (("corpus.jsonl", corpus), ("queries.jsonl", queries)):
        text = "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
        (HERE / name).write_text(text, encoding="utf-8")
    lines = ["query-id\tcorpus-id\tscore"] + [f"{q}\t{d}\t1" for q, d in qrels]
    (HERE / "qrels" / "test.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    print(f"{len(corpus)} documents, {len(queries)} queries, {len(qrels)} judgements")


if __name__ == "__main__":
    main()
