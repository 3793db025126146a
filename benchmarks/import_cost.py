"""What an import costs: reading, splitting and language detection on a folder 10x the demo corpus, and encoding.

The folder is written first (the demo's 48 articles x 11 languages, each article in each language one document,
copied ten times, in turn as .txt, .md, .html and .pdf: 5,280 documents, about 26,400 paragraphs). Measured in this
process: documents/s and passages/s of reading + splitting + detection (no model call), the memory of that phase
(resident memory before and after it: the passages are held, as an index holds them), and the
encoding rate of the served model on the first ``--encode`` passages, from which the whole
import time is estimated.

    python -m benchmarks.import_cost [--copies 10] [--encode 512]

Writes docs/results/import-cost.json.
"""

from __future__ import annotations

import argparse
import html
import json
import resource
import tempfile
import time
from collections import defaultdict
from pathlib import Path

from app.encoder import OnnxEncoder
from app.ingest.passages import passage_maker, read_passages
from app.ingest.sources import ImportReport
from app.settings import Settings

DEMO = Path("data/demo/corpus.jsonl")
OUT = Path("docs/results/import-cost.json")
FORMATS = ("txt", "md", "html", "pdf")


def resident_mib() -> float:
    """This process's resident memory now (Linux)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def write_folder(root: Path, copies: int) -> int:
    articles: dict[tuple[str, str], list[str]] = defaultdict(list)
    with open(DEMO, encoding="utf-8") as handle:
        for line in handle:
            row = json.loads(line)
            articles[(row["metadata"]["title"], row["lang"])].append(row["text"])
    written = 0
    for copy in range(copies):
        for (title, lang), paragraphs in sorted(articles.items()):
            kind = FORMATS[written % len(FORMATS)]
            path = root / f"copy-{copy}" / lang / f"{title}.{kind}"
            path.parent.mkdir(parents=True, exist_ok=True)
            if kind == "pdf" and lang in ("ar", "hi", "th", "zh"):  # scripts the PDF font lacks or cannot shape
                kind, path = "html", path.with_suffix(".html")
            write_document(path, kind, title, paragraphs)
            written += 1
    return written


def write_document(path: Path, kind: str, title: str, paragraphs: list[str]) -> None:
    if kind == "txt":
        path.write_text("\n\n".join(paragraphs), encoding="utf-8")
    elif kind == "md":
        path.write_text(f"# {title}\n\n" + "\n\n".join(paragraphs), encoding="utf-8")
    elif kind == "html":
        body = "".join(f"<p>{html.escape(p)}</p>" for p in paragraphs)
        path.write_text(f"<html><head><title>{html.escape(title)}</title></head><body><nav>menu</nav><main>{body}"
                        "</main><footer>footer</footer></body></html>", encoding="utf-8")  # fmt: skip
    else:
        from fpdf import FPDF

        pdf = FPDF()
        pdf.add_font("DejaVu", fname="/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf")
        pdf.set_title(title)
        pdf.add_page()
        pdf.set_font("DejaVu", size=11)
        for paragraph in paragraphs:
            pdf.multi_cell(0, 6, paragraph, new_x="LMARGIN", new_y="NEXT")
        pdf.output(str(path))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--copies", type=int, default=10)
    parser.add_argument("--encode", type=int, default=512, help="passages encoded to measure the model's rate")
    args = parser.parse_args(argv)
    settings = Settings()
    encoder = OnnxEncoder(settings.model_dir)
    maker = passage_maker(encoder, settings)
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        started = time.perf_counter()
        documents = write_folder(root, args.copies)
        print(f"wrote {documents} documents in {time.perf_counter() - started:.0f} s")
        before = resident_mib()
        report = ImportReport()
        started = time.perf_counter()
        passages = read_passages(root, maker, report=report)
        read_s = time.perf_counter() - started
        after = resident_mib()
    sample = passages[: args.encode]
    started = time.perf_counter()
    encoder.encode([p.text for p in sample], "passage", batch_size=32, progress=True)
    rate = len(sample) / (time.perf_counter() - started)
    result = {
        "documents": report.documents,
        "skipped": len(report.skipped),
        "passages": len(passages),
        "passage_tokens": maker.splitter.max_tokens,
        "read_split_detect_seconds": round(read_s, 1),
        "documents_per_second": round(report.documents / read_s, 1),
        "passages_per_second_without_model": round(len(passages) / read_s, 1),
        "rss_mib_before_reading": round(before),
        "rss_mib_after_reading": round(after),
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "encode_passages_per_second": round(rate, 1),
        "estimated_import_minutes": round((read_s + len(passages) / rate) / 60, 1),
        "model": f"{encoder.manifest.name} ({encoder.variant})",
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
