"""Rebuild the sample folder: XQuAD-R articles from the demo corpus as the files a user has (HTML pages with
navigation and scripts around the text, Markdown, plain text, PDF, a CSV and a Parquet table), without language
tags. Needs fpdf2 (the dev extra) and DejaVu Sans (Debian: fonts-dejavu-core).

    python data/demo/build_samples.py
"""

from __future__ import annotations

import csv
import html
import json
from pathlib import Path

CORPUS = Path(__file__).resolve().parent / "corpus.jsonl"
HERE = CORPUS.parent.parent / "samples"
FONT = Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf")

# (article, language, format): a few files per format, in several languages and scripts
PLAN = [
    ("Steam_engine", "en", "html"),
    ("Steam_engine", "de", "html"),
    ("Rhine", "de", "html"),
    ("Oxygen", "es", "md"),
    ("Oxygen", "ru", "md"),
    ("Black_Death", "zh", "txt"),
    ("Black_Death", "th", "txt"),
    ("Black_Death", "hi", "txt"),
    ("Prime_number", "en", "pdf"),
    ("Prime_number", "el", "pdf"),
]
TABLES = [("Amazon_rainforest", ["vi", "tr"], "csv"), ("Amazon_rainforest", ["ar", "en"], "parquet")]

PAGE = """<!DOCTYPE html>
<html lang="{lang}"><head><meta charset="utf-8"><title>{title}</title>
<script>window.analytics = {{track: function () {{}}}};</script><style>nav {{ float: left }}</style></head>
<body>
<header><a href="/">Encyclopedia</a> <form><input name="q" placeholder="Search"></form></header>
<nav><ul><li><a href="/random">Random article</a></li><li><a href="/help">Help</a></li></ul></nav>
<main><h1>{title}</h1>
{paragraphs}
</main>
<aside>Related: <a href="/x">other articles</a></aside>
<footer>Text from XQuAD-R (CC BY-SA 4.0). <a href="/privacy">Privacy</a></footer>
</body></html>
"""


def articles() -> dict[tuple[str, str], list[str]]:
    found: dict[tuple[str, str], list[str]] = {}
    with open(CORPUS, encoding="utf-8") as handle:
        for line in handle:
            row = json.loads(line)
            found.setdefault((row["metadata"]["title"], row["lang"]), []).append(row["text"])
    return found


def write_pdf(path: Path, title: str, paragraphs: list[str]) -> None:
    from fpdf import FPDF

    pdf = FPDF()
    pdf.add_font("DejaVu", fname=str(FONT))
    pdf.set_title(title)
    pdf.set_creator("data/demo/build_samples.py")
    pdf.add_page()
    pdf.set_font("DejaVu", size=16)
    pdf.multi_cell(0, 10, title)
    pdf.set_font("DejaVu", size=11)
    for paragraph in paragraphs:
        pdf.ln(3)
        pdf.multi_cell(0, 6, paragraph)
    pdf.output(str(path))


def main() -> None:
    texts = articles()
    for article, lang, kind in PLAN:
        title = article.replace("_", " ")
        paragraphs = texts[(article, lang)]
        folder = HERE / {"html": "web", "md": "notes", "txt": "text", "pdf": "reports"}[kind]
        folder.mkdir(exist_ok=True)
        path = folder / f"{article.lower()}-{lang}.{kind}"
        if kind == "html":
            body = "\n".join(f"<p>{html.escape(p)}</p>" for p in paragraphs)
            path.write_text(PAGE.format(lang=lang, title=html.escape(title), paragraphs=body), encoding="utf-8")
        elif kind == "md":
            path.write_text(f"# {title}\n\n" + "\n\n".join(paragraphs) + "\n", encoding="utf-8")
        elif kind == "txt":
            path.write_text("\n\n".join(paragraphs) + "\n", encoding="utf-8")
        else:
            write_pdf(path, title, paragraphs)
    for article, languages, kind in TABLES:
        rows = [
            {"id": f"{article.lower()}-{lang}-{n}", "title": article.replace("_", " "), "text": text, "topic": "nature"}
            for lang in languages
            for n, text in enumerate(texts[(article, lang)])
        ]
        folder = HERE / "tables"
        folder.mkdir(exist_ok=True)
        if kind == "csv":
            with open(folder / f"{article.lower()}.csv", "w", encoding="utf-8", newline="") as handle:
                writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
                writer.writeheader()
                writer.writerows(rows)
        else:
            import pyarrow as pa
            import pyarrow.parquet as pq

            pq.write_table(pa.Table.from_pylist(rows), folder / f"{article.lower()}.parquet")


if __name__ == "__main__":
    main()
