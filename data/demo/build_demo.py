"""Regenerate the bundled demo corpus from XQuAD-R (CC BY-SA 4.0); see ATTRIBUTION.md.

The product only reads the committed corpus.jsonl / queries.jsonl; this script documents where they came from.

    python data/demo/build_demo.py data/xquad-r
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

LANGUAGES = ["ar", "de", "el", "en", "es", "hi", "ru", "th", "tr", "vi", "zh"]


def main(xquad_dir: Path, out_dir: Path) -> None:
    corpus, queries = [], []
    for lang in LANGUAGES:
        data = json.loads((xquad_dir / f"{lang}.json").read_text(encoding="utf-8"))["data"]
        number = 0
        for article in data:
            for paragraph in article["paragraphs"]:
                group = f"p{number:03d}"
                number += 1
                corpus.append(
                    {
                        "id": f"xquad-{group}-{lang}",
                        "text": paragraph["context"].replace("\ufeff", "").strip(),
                        "lang": lang,
                        "metadata": {"title": article["title"], "group": group},
                    }
                )
                question = paragraph["qas"][0]
                queries.append(
                    {"query": question["question"].replace("\ufeff", "").strip(), "lang": lang, "group": group}
                )
    with open(out_dir / "corpus.jsonl", "w", encoding="utf-8") as handle:
        handle.writelines(json.dumps(row, ensure_ascii=False) + "\n" for row in corpus)
    with open(out_dir / "queries.jsonl", "w", encoding="utf-8") as handle:
        handle.writelines(json.dumps(row, ensure_ascii=False) + "\n" for row in queries)
    print(f"{len(corpus)} passages, {len(queries)} queries in {len(LANGUAGES)} languages")


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(__file__).parent)
