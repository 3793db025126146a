"""Grouped results in the reader's language: what ``prefer_languages`` changes, measured through the served engine.

The XQuAD-R test articles' paragraphs in all 11 languages are indexed with ``group`` = the paragraph (its 11
translations are one group); each test question in each language is asked with ``group_by: group``, top 10 groups,
once without and once with ``prefer_languages: [the question's language]``. Measured per setting and per query
language:
- the share of queries whose first shown passage is in the query's language, and the share of all shown passages;
- grouped Hit@1 and Hit@10: the answer's paragraph is the first group / among the 10 (the same with and without
  preference, by construction: the check that the ranking did not move).

    python -m benchmarks.reader_language [--model-dir models/multilingual-e5-small-hybrid]

Writes docs/results/reader-language.json and docs/images/reader-language.png, and prints a markdown table.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from tqdm import tqdm

from app.build import build_index
from app.corpus import Document, Groups
from app.encoder import OnnxEncoder
from app.engine import SearchEngine
from app.results import SearchSpec
from app.settings import Settings
from training.merge_scale import LANGUAGES, SPLIT_FILE, XQUAD

OUT = Path("docs/results/reader-language.json")
PLOT = Path("docs/images/reader-language.png")
BATCH = 64  # queries per engine call (SEARCH_MAX_BATCH_QUERIES)


def test_corpus(articles: str) -> tuple[list[Document], list[tuple[str, str, str]]]:
    """Paragraphs of the chosen articles in every language (group = the paragraph), and the questions as
    (language, question, the answer's group)."""
    titles = set(json.loads(SPLIT_FILE.read_text(encoding="utf-8"))[articles])
    documents, questions = [], []
    for lang in LANGUAGES:
        data = json.loads((XQUAD / f"{lang}.json").read_text(encoding="utf-8"))["data"]
        for a, article in enumerate(data):
            if article["title"] not in titles:
                continue
            for p, paragraph in enumerate(article["paragraphs"]):
                group = f"a{a:02d}-p{p:02d}"
                metadata = {"group": group, "title": article["title"]}
                documents.append(Document(f"{group}-{lang}", paragraph["context"], lang, metadata))
                questions += [(lang, qa["question"].strip(), group) for qa in paragraph["qas"]]
    return documents, questions


def measure(engine: SearchEngine, questions: list[tuple[str, str, str]], prefer: bool) -> dict[str, dict]:
    """Per query language: first shown passage in the query's language, all shown ones, grouped Hit@1/@10."""
    counts: dict[str, dict[str, float]] = {}
    by_lang: dict[str, list[tuple[str, str]]] = {}
    for lang, question, group in questions:
        by_lang.setdefault(lang, []).append((question, group))
    for lang, asked in tqdm(sorted(by_lang.items()), desc="preferred" if prefer else "best member", unit="lang"):
        spec = SearchSpec(top_k=10, group_by="group", prefer_languages=(lang,) if prefer else ())
        figures = counts.setdefault(lang, {"queries": 0, "first": 0, "shown": 0, "hit1": 0, "hit10": 0})
        for start in range(0, len(asked), BATCH):
            batch = asked[start : start + BATCH]
            pages: list[Groups] = engine.search([q for q, _ in batch], spec).result()
            for (_, answer), page in zip(batch, pages, strict=True):
                shown = [group.members[group.shown].document.lang for group in page]
                values = [group.value for group in page]
                figures["queries"] += 1
                figures["first"] += bool(shown) and shown[0] == lang
                figures["shown"] += sum(s == lang for s in shown) / max(1, len(shown))
                figures["hit1"] += values[:1] == [answer]
                figures["hit10"] += answer in values
    table = {
        lang: {
            "queries": int(f["queries"]),
            "first_in_query_language": round(f["first"] / f["queries"], 4),
            "shown_in_query_language": round(f["shown"] / f["queries"], 4),
            "grouped_hit1": round(f["hit1"] / f["queries"], 4),
            "grouped_hit10": round(f["hit10"] / f["queries"], 4),
        }
        for lang, f in counts.items()
    }
    n = sum(row["queries"] for row in table.values())
    table["all"] = {"queries": n} | {
        key: round(sum(row[key] * row["queries"] for row in table.values()) / n, 4)
        for key in ("first_in_query_language", "shown_in_query_language", "grouped_hit1", "grouped_hit10")
    }
    return table


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    langs = [lang for lang in result["without"] if lang != "all"]
    x = range(len(langs))
    fig, ax = plt.subplots(figsize=(9, 3.6))
    settings = (("without", "best member"), ("with", "reader's language"))
    for offset, (setting, label) in zip((-0.2, 0.2), settings, strict=True):
        values = [result[setting][lang]["first_in_query_language"] for lang in langs]
        ax.bar([i + offset for i in x], values, width=0.4, label=label)
    ax.set_xticks(list(x), langs)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("first shown passage\nin the query's language")
    ax.set_title("Grouped results: which member a group shows (ranking unchanged)")
    ax.legend(loc="lower right")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model-dir", type=Path, default=Path("models/multilingual-e5-small-hybrid"))
    parser.add_argument("--articles", choices=["train", "dev", "test"], default="test")
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--plot", type=Path, default=PLOT)
    args = parser.parse_args(argv)

    documents, questions = test_corpus(args.articles)
    print(f"{len(documents)} paragraphs, {len(questions)} questions ({args.articles} articles)")
    with tempfile.TemporaryDirectory() as tmp:
        index_dir = Path(tmp) / "index"
        build_index(OnnxEncoder(args.model_dir), documents).save(index_dir)
        engine = SearchEngine(Settings(model_dir=args.model_dir, index_dir=index_dir, query_cache_size=0))
        engine.check()
        engine.load()
        if engine.error:
            raise SystemExit(engine.error)
        try:
            result = {
                "model": engine.model_name,
                "articles": args.articles,
                "without": measure(engine, questions, prefer=False),
                "with": measure(engine, questions, prefer=True),
            }
        finally:
            engine.close()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    plot(result, args.plot)
    print("| query language | first shown in it: best member → reader's | all shown in it | grouped Hit@1 | Hit@10 |")
    print("|---|---|---|---|---|")
    for lang, row in result["without"].items():
        preferred = result["with"][lang]
        print(
            f"| {lang} | {row['first_in_query_language']:.3f} → {preferred['first_in_query_language']:.3f} | "
            f"{row['shown_in_query_language']:.3f} → {preferred['shown_in_query_language']:.3f} | "
            f"{row['grouped_hit1']:.3f} / {preferred['grouped_hit1']:.3f} | "
            f"{row['grouped_hit10']:.3f} / {preferred['grouped_hit10']:.3f} |"
        )
    print(f"wrote {args.out} and {args.plot}")


if __name__ == "__main__":
    main()
