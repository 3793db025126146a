"""Reading documents: the sample folder (every format), record files, damaged files, and the passages made of them."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest

from app.ingest.passages import PassageMaker, read_passages
from app.ingest.sources import Columns, CorpusError, ImportReport, read_documents
from app.ingest.splitter import PassageSplitter
from tests.tiny import ROOT, demo_records, train_tokenizer

SAMPLES = ROOT / "data" / "samples"


@pytest.fixture(scope="module")
def maker() -> PassageMaker:
    tokenizer = train_tokenizer([r["text"] for r in demo_records()], vocab_size=4000)
    return PassageMaker(PassageSplitter(tokenizer, "passage: ", 128))


def test_the_sample_folder_reads_every_format_without_boilerplate() -> None:
    report = ImportReport()
    documents = {d.id: d for d in read_documents(SAMPLES, report=report)}
    assert report.documents == len(documents) == 30 and not report.skipped
    formats = {d.metadata.get("format") for d in documents.values()}
    assert formats == {"html", "md", "txt", "pdf", None}  # None: rows of the CSV and Parquet tables
    page = documents["web/steam_engine-en.html"]
    assert page.title == "Steam engine" and "boiling the water" in page.text
    for boilerplate in ("Random article", "analytics", "Privacy", "Search", "other articles"):
        assert boilerplate not in page.text
    assert documents["reports/prime_number-el.pdf"].title == "Prime number"
    assert "πρώτος αριθμός" in documents["reports/prime_number-el.pdf"].text
    assert documents["notes/oxygen-ru.md"].title == "Oxygen" and "#" not in documents["notes/oxygen-ru.md"].text
    assert documents["amazon_rainforest-ar-0"].metadata == {"topic": "nature"}
    assert all(d.lang is None for d in documents.values())  # no tags anywhere: detected later


def test_unreadable_files_are_reported_and_skipped(tmp_path: Path) -> None:
    (tmp_path / "ok.md").write_text("# Fine\n\nA readable note.", encoding="utf-8")
    (tmp_path / "broken.pdf").write_bytes(b"%PDF-1.4 this is not really a PDF")
    (tmp_path / "latin1.txt").write_bytes("caf\xe9 cr\xe8me".encode("latin-1"))
    (tmp_path / "empty.html").write_text("<html><body><nav>menu</nav></body></html>", encoding="utf-8")
    (tmp_path / "slides.pptx").write_bytes(b"not a document type we read")
    report = ImportReport()
    documents = list(read_documents(tmp_path, report=report))
    assert [d.id for d in documents] == ["ok.md"]
    reasons = dict(report.skipped)
    assert set(reasons) == {str(tmp_path / n) for n in ("broken.pdf", "latin1.txt", "empty.html")}
    assert "not UTF-8" in reasons[str(tmp_path / "latin1.txt")]
    assert "no text" in reasons[str(tmp_path / "empty.html")]
    assert report.ignored_files == 1


def test_csv_columns_languages_and_metadata(tmp_path: Path) -> None:
    path = tmp_path / "docs.csv"
    path.write_text('key,body,language,price\nk1,"Hello, world",EN,3.5\nk2,Hallo Welt,de_DE,\n,,,\n', encoding="utf-8")
    documents = list(read_documents(path, Columns(id="key", text="body", lang="language")))
    assert [(d.id, d.text, d.lang, d.metadata) for d in documents] == [
        ("k1", "Hello, world", "en", {"price": "3.5"}),
        ("k2", "Hallo Welt", "de-de", {}),
    ]


def test_tsv_without_an_id_column_numbers_rows(tmp_path: Path) -> None:
    path = tmp_path / "docs.tsv"
    path.write_text("text\ttitle\nfirst text\tOne\nsecond text\tTwo\n", encoding="utf-8")
    assert [(d.id, d.title) for d in read_documents(path)] == [("docs.tsv#1", "One"), ("docs.tsv#2", "Two")]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("id,text,lang\na,x,english\n", "line 2: 'english' is not a language tag"),
        ("id,text,lang\na,x,xx\n", "line 2: 'xx' is not the tag of a known language"),
        ("id,body\na,x\n", "no column 'text' .*--text-column"),
        ("id,text\na,x\na,y\n", "duplicate id 'a'"),
        ("id,text\na,x,extra\n", "line 2: more cells than header columns"),
    ],
)
def test_record_errors_name_the_file_and_line(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "docs.csv"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(CorpusError, match=message):
        list(read_documents(path))


def test_parquet_values_become_json_metadata(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = [{"id": "p1", "text": "Ein Text", "published": dt.date(2024, 5, 1), "score": float("nan"), "n": 3}]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "docs.parquet")
    (document,) = read_documents(tmp_path / "docs.parquet")
    assert document.lang is None and document.metadata == {"published": "2024-05-01", "n": 3}


def test_jsonl_lang_is_optional_and_normalised(tmp_path: Path) -> None:
    path = tmp_path / "docs.jsonl"
    rows = [{"id": "a", "text": "x", "lang": "PT_br"}, {"id": "b", "text": "y", "title": "T", "metadata": {"k": 1}}]
    path.write_text("\n".join(json.dumps(r) for r in rows), encoding="utf-8")
    assert [(d.id, d.lang, d.title) for d in read_documents(path)] == [("a", "pt-br", None), ("b", None, "T")]


def test_long_documents_become_passages_that_point_back(maker: PassageMaker) -> None:
    passages = read_passages(SAMPLES, maker)
    by_document: dict[str, list] = {}
    for passage in passages:
        by_document.setdefault(passage.metadata.get("doc_id", passage.id), []).append(passage)
    article = by_document["web/steam_engine-en.html"]
    assert len(article) > 3
    text = next(d for d in read_documents(SAMPLES) if d.id == "web/steam_engine-en.html").text
    for chunk, passage in enumerate(article):
        meta = passage.metadata
        assert passage.id == f"web/steam_engine-en.html#{chunk}" and meta["chunk"] == chunk
        assert text[meta["start"] : meta["end"]] == passage.text and meta["title"] == "Steam engine"
        assert passage.lang == "en" and meta["lang_detected"] is True and meta["format"] == "html"
    detected = {p.metadata["path"].split("-")[-1].split(".")[0]: p.lang for p in passages if "path" in p.metadata}
    assert detected == {lang: lang for lang in ("en", "de", "es", "ru", "zh", "th", "hi", "el")}
    assert read_passages(SAMPLES, maker) == passages  # the same files give the same passages and ids


def test_a_short_document_keeps_its_id_and_spaces_in_file_names_are_encoded(
    tmp_path: Path, maker: PassageMaker
) -> None:
    (tmp_path / "my notes.txt").write_text("A short note about the Rhine.", encoding="utf-8")
    (only,) = read_passages(tmp_path, maker)
    assert only.id == "my%20notes.txt" and "doc_id" not in only.metadata and only.lang == "en"


def test_a_pdf_sent_as_bytes_reads_like_the_file() -> None:
    from app.ingest.files import document_text, read_document_file

    path = SAMPLES / "reports" / "prime_number-en.pdf"
    assert document_text(path.read_bytes(), ".pdf") == read_document_file(path)
