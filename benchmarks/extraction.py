"""Text extraction from real files: the importer's HTML and PDF readers against the alternatives they were chosen
over, on files found on this machine (documentation pages with sidebars and scripts; PDF manuals) and the sample
folder.

HTML: for each page, the words of its ``<main>`` element (what a reader came for) and the words of its ``<nav>``
elements that are not in ``<main>`` (the sidebar); ``kept`` is the share of main words found in the extracted text
(counted with repeats), ``leaked`` the share of those navigation words found there. PDF: pages, characters and
seconds per page.

    pip install trafilatura pdfminer.six        # the alternatives
    python -m benchmarks.extraction [--html GLOB] [--pdf FILE ...]

Writes docs/results/extraction.json.
"""

from __future__ import annotations

import argparse
import glob
import json
import re
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from app.ingest.files import html_text, pdf_text

OUT = Path("docs/results/extraction.json")
RUST_DOCS = "/root/.rustup/toolchains/stable-*/share/doc/rust/html/std/*/*.html"  # rustdoc: <main> + sidebar <nav>
PDFS = ["/usr/share/doc/libtasn1-doc/libtasn1.pdf", "/usr/share/doc/shared-mime-info/shared-mime-info-spec.pdf",
        "data/samples/reports/prime_number-en.pdf", "data/samples/reports/prime_number-el.pdf"]  # fmt: skip


def words(text: str) -> Counter[str]:
    """Runs of letters and digits: how inline markup joins or spaces punctuation does not count."""
    return Counter(re.findall(r"[^\W_]+", text))


def share(part: Counter[str], of: Counter[str]) -> float:
    return sum((part & of).values()) / max(1, sum(of.values()))


def html_extractors() -> dict[str, Callable[[bytes], str]]:
    from bs4 import BeautifulSoup

    found: dict[str, Callable[[bytes], str]] = {
        "bs4 + lxml, boilerplate removed (shipped)": lambda raw: html_text(raw).text,
        "bs4 + lxml, all text": lambda raw: BeautifulSoup(raw, "lxml").get_text("\n"),
    }
    try:
        import trafilatura

        found["trafilatura"] = lambda raw: trafilatura.extract(raw.decode("utf-8", "replace")) or ""
    except ImportError:
        pass
    return found


def measure_html(pattern: str, limit: int) -> dict:
    from bs4 import BeautifulSoup

    pages = sorted(glob.glob(pattern, recursive=True))[:limit]
    truth = []
    for page in pages:
        soup = BeautifulSoup(Path(page).read_bytes(), "lxml")
        main = soup.find("main")
        navs = [nav for nav in soup.find_all("nav") if main is None or main not in nav.parents]
        if main is not None and navs:
            main_words = words(main.get_text(" "))
            nav_words = sum((words(nav.get_text(" ")) for nav in navs), Counter()) - main_words
            if nav_words:
                truth.append((page, main_words, nav_words))
    results = {}
    for name, extract in html_extractors().items():
        kept = leaked = seconds = 0.0
        for page, main_words, nav_words in truth:
            raw = Path(page).read_bytes()
            started = time.perf_counter()
            text = extract(raw)
            seconds += time.perf_counter() - started
            found = words(text)
            kept += share(found, main_words)
            leaked += share(found, nav_words)
        results[name] = {
            "pages": len(truth),
            "main_words_kept": round(kept / len(truth), 3),
            "navigation_words_leaked": round(leaked / len(truth), 3),
            "ms_per_page": round(1000 * seconds / len(truth), 1),
        }
        print(name, results[name], flush=True)
    return results


def pdf_extractors() -> dict[str, Callable[[Path], str]]:
    found: dict[str, Callable[[Path], str]] = {"pypdf (shipped)": lambda path: pdf_text(path.read_bytes()).text}
    try:
        from pdfminer.high_level import extract_text

        found["pdfminer.six"] = lambda path: extract_text(str(path))
    except ImportError:
        pass
    return found


def measure_pdf(files: list[str]) -> dict:
    from pypdf import PdfReader

    present = [Path(f) for f in files if Path(f).is_file()]
    results: dict[str, dict] = {}
    for name, extract in pdf_extractors().items():
        results[name] = {}
        for path in present:
            started = time.perf_counter()
            text = extract(path)
            seconds = time.perf_counter() - started
            pages = len(PdfReader(path).pages)
            results[name][path.name] = {
                "pages": pages,
                "characters": len(text),
                "words": len(text.split()),
                "ms_per_page": round(1000 * seconds / pages, 1),
            }
        print(name, results[name], flush=True)
    return results


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--html", default=RUST_DOCS, help="a glob of HTML pages with <main> and <nav>")
    parser.add_argument("--pages", type=int, default=40)
    parser.add_argument("--pdf", nargs="*", default=PDFS)
    args = parser.parse_args(argv)
    result = {"html": measure_html(args.html, args.pages), "pdf": measure_pdf(args.pdf)}
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
