"""Where documents come from: a JSONL, CSV/TSV or Parquet file of records, or a folder of document files.

Every reader streams (memory independent of the corpus size) and yields ``SourceDocument``s; a record that breaks
the format is a ``CorpusError`` naming the file and line, while a document file that cannot be read is reported
and skipped (``ImportReport``), so one damaged PDF does not stop an import of thousands.
"""

from __future__ import annotations

import csv
import datetime as dt
import logging
import math
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

from app.corpus import Document, metadata_problem
from app.ingest.files import DOCUMENT_SUFFIXES, UnreadableFile, read_document_file
from app.ingest.languages import LanguageTagError, normalize_language
from app.jsonl import json_objects

log = logging.getLogger(__name__)
RECORD_SUFFIXES = (".jsonl", ".ndjson", ".csv", ".tsv", ".parquet")
_FORMAT_NAMES = {"htm": "html", "markdown": "md"}


class CorpusError(ValueError):
    """A corpus record is malformed; the message names the file and line."""


@dataclass(frozen=True)
class SourceDocument:
    """A document as read, before it is split into passages. ``lang`` is None when the source does not say."""

    id: str
    text: str
    lang: str | None = None
    title: str | None = None
    metadata: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Columns:
    """Which columns of a CSV/TSV/Parquet file hold what; every other column becomes metadata."""

    id: str = "id"
    text: str = "text"
    lang: str = "lang"
    title: str = "title"


@dataclass
class ImportReport:
    """What an import read and what it had to leave out."""

    documents: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (path, why)
    ignored_files: int = 0  # files in a folder that are no document type


def read_documents(
    path: Path, columns: Columns | None = None, report: ImportReport | None = None
) -> Iterator[SourceDocument]:
    """The documents of a file or of a folder tree, in a stable order; ``report`` collects what was skipped."""
    path = Path(path)
    columns = columns or Columns()
    report = report if report is not None else ImportReport()
    if path.is_dir():
        reader = read_folder(path, columns, report)
    elif not path.exists():
        raise FileNotFoundError(f"{path} does not exist")
    elif path.suffix.lower() in RECORD_SUFFIXES:
        reader = read_records(path, columns)
    elif path.suffix.lower() in DOCUMENT_SUFFIXES:
        reader = read_document_files(path.parent, [path], report)
    else:
        known = ", ".join(RECORD_SUFFIXES + DOCUMENT_SUFFIXES)
        raise CorpusError(f"{path}: unknown corpus type {path.suffix!r}; expected a folder or one of {known}")
    seen: set[str] = set()
    for document in reader:
        if document.id in seen:
            raise CorpusError(f"{path}: duplicate id {document.id!r}")
        seen.add(document.id)
        report.documents += 1
        yield document


def read_records(path: Path, columns: Columns) -> Iterator[SourceDocument]:
    """A file of records: JSONL, CSV, TSV or Parquet."""
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".ndjson"):
        return read_jsonl(path)
    if suffix == ".parquet":
        return read_parquet(path, columns)
    return read_delimited(path, columns, "\t" if suffix == ".tsv" else ",")


def language_or_error(value: object, where: str) -> str | None:
    """A normalised tag, or None for a missing one (it will be detected); ``CorpusError`` naming ``where`` else."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if not isinstance(value, str):
        raise CorpusError(f"{where}: 'lang' must be a string, got {type(value).__name__}")
    try:
        return normalize_language(value)
    except LanguageTagError as exc:
        raise CorpusError(f"{where}: {exc}") from exc


def _checked_metadata(metadata: object, where: str) -> dict:
    if not isinstance(metadata, dict):
        raise CorpusError(f"{where}: 'metadata' must be an object")
    if problem := metadata_problem(metadata):
        raise CorpusError(f"{where}: {problem}")
    return metadata


def read_jsonl(path: Path, required: tuple[str, ...] = ("text",)) -> Iterator[SourceDocument]:
    """``{"id", "text", "lang"?, "title"?, "metadata"?}`` per line (BEIR's ``_id`` is read as the id)."""
    seen: set[str] = set()
    for where, record in json_objects(path, CorpusError, required):
        doc_id = record.get("id", record.get("_id"))
        if not isinstance(doc_id, str) or not doc_id:
            raise CorpusError(f"{where}: 'id' must be a non-empty string")
        if doc_id in seen:
            raise CorpusError(f"{where}: duplicate id {doc_id!r}")
        seen.add(doc_id)
        metadata = _checked_metadata(record.get("metadata", {}), where)
        title = record.get("title", metadata.get("title"))
        yield SourceDocument(
            doc_id,
            record["text"],
            language_or_error(record.get("lang"), where),
            title if isinstance(title, str) else None,
            metadata,
        )


def read_corpus(path: Path) -> Iterator[Document]:
    """Ready-made passages: JSONL records that all carry their language (the demo corpus, test corpora)."""
    for document in read_jsonl(path, ("text", "lang")):
        yield Document(document.id, document.text, document.lang or "", document.metadata)


def _record(row: dict, columns: Columns, where: str, fallback_id: str) -> SourceDocument | None:
    text = row.get(columns.text)
    if text is None or (isinstance(text, str) and not text.strip()):
        return None  # an empty row or cell: nothing to search
    if not isinstance(text, str):
        raise CorpusError(f"{where}: column {columns.text!r} must hold text, got {type(text).__name__}")
    raw_id = row.get(columns.id)
    doc_id = fallback_id if raw_id is None or raw_id == "" else str(raw_id)
    title = row.get(columns.title)
    taken = {columns.id, columns.text, columns.lang, columns.title}
    cells = ((key, _jsonable(value)) for key, value in row.items() if key not in taken)
    metadata = {key: value for key, value in cells if value not in (None, "")}  # an empty cell is no value
    return SourceDocument(
        doc_id,
        text,
        language_or_error(row.get(columns.lang), where),
        str(title) if title not in (None, "") else None,
        _checked_metadata(metadata, where),
    )


def _require_text_column(names: list[str], columns: Columns, path: Path) -> None:
    if columns.text not in names:
        found = ", ".join(names)
        raise CorpusError(f"{path}: no column {columns.text!r} (columns: {found}); name it with --text-column")
    if columns.id not in names:
        log.info("%s has no column %r: documents are numbered by row (<file>#<row>)", path, columns.id)


def read_delimited(path: Path, columns: Columns, delimiter: str) -> Iterator[SourceDocument]:
    """CSV or TSV with a header row."""
    csv.field_size_limit(sys.maxsize)  # a long document is one cell
    with open(path, encoding="utf-8-sig", newline="") as handle:
        reader = csv.DictReader(handle, delimiter=delimiter)
        _require_text_column(list(reader.fieldnames or []), columns, path)
        try:
            for number, row in enumerate(reader, start=1):
                if None in row:
                    raise CorpusError(f"{path} line {reader.line_num}: more cells than header columns")
                if document := _record(row, columns, f"{path} line {reader.line_num}", f"{path.name}#{number}"):
                    yield document
        except (csv.Error, UnicodeDecodeError) as exc:
            raise CorpusError(f"{path} line {reader.line_num}: {exc}") from exc


def read_parquet(path: Path, columns: Columns, batch_rows: int = 1024) -> Iterator[SourceDocument]:
    try:
        import pyarrow.parquet as pq
    except ImportError as exc:
        raise CorpusError(f"{path}: reading Parquet needs pyarrow: pip install 'polyglot-search[parquet]'") from exc
    try:
        table = pq.ParquetFile(path)
    except Exception as exc:  # pyarrow raises its own error types for a damaged file
        raise CorpusError(f"{path}: not a readable Parquet file ({exc})") from exc
    _require_text_column(table.schema_arrow.names, columns, path)
    number = 0
    for batch in table.iter_batches(batch_size=batch_rows):
        for row in batch.to_pylist():
            number += 1
            if document := _record(row, columns, f"{path} row {number}", f"{path.name}#{number}"):
                yield document


def _jsonable(value: object) -> object:
    """A cell as a JSON value: dates as ISO-8601, decimals as numbers, NaN as absent."""
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return value


def read_folder(root: Path, columns: Columns, report: ImportReport) -> Iterator[SourceDocument]:
    """Every document file under ``root`` (``.txt``, ``.md``, ``.html``/``.htm``, ``.pdf``; the id is the path
    relative to ``root``) and the records of every record file (``.jsonl``, ``.csv``, ``.tsv``, ``.parquet``)."""
    for path in sorted(root.rglob("*")):
        if not path.is_file() or any(part.startswith(".") for part in path.relative_to(root).parts):
            continue
        suffix = path.suffix.lower()
        if suffix in DOCUMENT_SUFFIXES:
            yield from read_document_files(root, [path], report)
        elif suffix in RECORD_SUFFIXES:
            yield from read_records(path, columns)
        else:
            report.ignored_files += 1


def read_document_files(root: Path, files: list[Path], report: ImportReport) -> Iterator[SourceDocument]:
    for path in files:
        relative = path.relative_to(root).as_posix()
        try:
            extracted = read_document_file(path)
        except UnreadableFile as exc:
            log.warning("skipped %s: %s", path, exc)
            report.skipped.append((str(path), str(exc)))
            continue
        suffix = path.suffix.lower().lstrip(".")
        metadata = {"path": relative, "format": _FORMAT_NAMES.get(suffix, suffix)}
        yield SourceDocument(relative, extracted.text, None, extracted.title, metadata)


def describe(report: ImportReport) -> str:
    parts = [f"{report.documents} documents read"]
    if report.skipped:
        parts.append(f"{len(report.skipped)} files skipped (unreadable; see the warnings above)")
    if report.ignored_files:
        parts.append(f"{report.ignored_files} other files ignored")
    return ", ".join(parts)
