"""Queries and relevance judgements in the formats people have.

- **BEIR**: a folder with ``corpus.jsonl`` (``_id``, ``text``, ``title``?), ``queries.jsonl`` (``_id``, ``text``)
  and ``qrels/<split>.tsv`` (``query-id``, ``corpus-id``, ``score``, with a header). A ``lang`` key, at the top or
  in ``metadata``, gives a query's or a document's language.
- **TREC**: a qrels file of ``query-id iteration doc-id relevance`` lines, with the queries in a JSONL file
  (``_id`` or ``id``, ``text``) or a TSV file (``id<TAB>text``).
- **Ours**: one JSONL file of ``{"query", "relevant", "id"?, "lang"?}`` where ``relevant`` is a list of document ids
  or an object of id -> grade.

The corpus is a BEIR ``corpus.jsonl`` or anything ``polyglot-search index`` reads; a query or document without a
language gets the detected one.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from app.ingest.languages import language_detector, normalize_language
from app.ingest.passages import safe_id
from app.ingest.sources import CorpusError, SourceDocument, read_documents
from app.jsonl import json_objects


class EvalDataError(ValueError):
    """Judgements that cannot be read; the message names the file and line."""


@dataclass(frozen=True)
class EvalQuery:
    id: str
    text: str
    lang: str
    lang_detected: bool = False


@dataclass
class EvalSet:
    queries: list[EvalQuery]
    qrels: dict[str, dict[str, int]]  # query id -> document id -> grade (> 0: relevant)
    corpus: list[SourceDocument] = field(default_factory=list)  # empty: the server's index is the corpus
    left_out: int = 0  # judged queries without a relevant document: no figure can be computed for them

    def queries_by_language(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for query in self.queries:
            counts[query.lang] = counts.get(query.lang, 0) + 1
        return dict(sorted(counts.items()))

    def relevant(self, query_id: str) -> dict[str, int]:
        return {doc: grade for doc, grade in self.qrels.get(query_id, {}).items() if grade > 0}


def load_eval_set(
    data: Path,
    split: str = "test",
    queries: Path | None = None,
    qrels: Path | None = None,
    corpus: Path | None = None,
    with_corpus: bool = True,
) -> EvalSet:
    """A BEIR folder (``data`` a folder), our JSONL (``data`` a file), or TREC qrels (``qrels``, with ``queries``).
    ``corpus`` overrides or supplies the corpus (not read without ``with_corpus``: a server's index is its
    corpus); queries without judgements are left out."""
    data = Path(data)
    if qrels is not None:
        if queries is None:
            raise EvalDataError("TREC qrels need --queries (a JSONL or TSV file of the queries' texts)")
        texts, langs = read_queries(queries)
        judged = read_trec_qrels(qrels)
    elif data.is_dir():
        split_file = data / "qrels" / f"{split}.tsv"
        for needed in (data / "queries.jsonl", split_file):
            if not needed.is_file():
                raise EvalDataError(f"{data} is not a BEIR folder: {needed} is missing")
        texts, langs = read_queries(data / "queries.jsonl")
        judged = read_beir_qrels(split_file)
        if corpus is None and (data / "corpus.jsonl").is_file():
            corpus = data / "corpus.jsonl"
    elif data.is_file():
        texts, langs, judged = read_our_jsonl(data)
    else:
        raise EvalDataError(f"{data} does not exist")
    missing = sorted(set(judged) - set(texts))
    if missing:
        raise EvalDataError(f"{len(missing)} judged queries have no text, e.g. {missing[:3]}")
    with_relevant = {query_id: docs for query_id, docs in judged.items() if any(grade > 0 for grade in docs.values())}
    without_relevant, judged = len(judged) - len(with_relevant), with_relevant
    if not judged:
        raise EvalDataError("no query has a relevant document (a grade above 0)")
    order = {query_id: i for i, query_id in enumerate(texts)}
    chosen = [_query(query_id, texts[query_id], langs.get(query_id)) for query_id in sorted(judged, key=order.get)]
    # the index holds documents under their safe ids (a space becomes %20), as the service does
    judged = {query_id: {safe_id(doc): grade for doc, grade in docs.items()} for query_id, docs in judged.items()}
    documents = list(read_corpus(corpus)) if corpus is not None and with_corpus else []
    return EvalSet(chosen, judged, documents, without_relevant)


def _query(query_id: str, text: str, lang: str | None) -> EvalQuery:
    if lang is not None:
        return EvalQuery(query_id, text, lang)
    return EvalQuery(query_id, text, language_detector().detect(text), lang_detected=True)


def read_queries(path: Path) -> tuple[dict[str, str], dict[str, str]]:
    """Query texts and, where given, languages: JSONL (``_id``/``id``, ``text``, ``lang``?) or TSV (id, text)."""
    texts: dict[str, str] = {}
    langs: dict[str, str] = {}
    if path.suffix.lower() == ".tsv":
        with open(path, encoding="utf-8", newline="") as handle:
            for number, row in enumerate(csv.reader(handle, delimiter="\t"), start=1):
                if len(row) < 2:
                    raise EvalDataError(f"{path} line {number}: expected <id><TAB><text>")
                texts[row[0]] = row[1]
        return texts, langs
    for where, record in json_objects(path, EvalDataError, ["text"]):
        query_id = _record_id(record, where)
        texts[query_id] = record["text"]
        if lang := _language(record, where):
            langs[query_id] = lang
    return texts, langs


def read_beir_qrels(path: Path) -> dict[str, dict[str, int]]:
    judged: dict[str, dict[str, int]] = {}
    with open(path, encoding="utf-8", newline="") as handle:
        rows = csv.reader(handle, delimiter="\t")
        for number, row in enumerate(rows, start=1):
            if number == 1 and row[:2] == ["query-id", "corpus-id"]:
                continue
            if len(row) != 3:
                raise EvalDataError(f"{path} line {number}: expected query-id<TAB>corpus-id<TAB>score")
            judged.setdefault(row[0], {})[row[1]] = _grade(row[2], f"{path} line {number}")
    return judged


def read_trec_qrels(path: Path) -> dict[str, dict[str, int]]:
    judged: dict[str, dict[str, int]] = {}
    for number, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        parts = line.split()
        if len(parts) != 4:
            raise EvalDataError(f"{path} line {number}: expected 'query-id iteration doc-id relevance'")
        judged.setdefault(parts[0], {})[parts[2]] = _grade(parts[3], f"{path} line {number}")
    return judged


def read_our_jsonl(path: Path) -> tuple[dict[str, str], dict[str, str], dict[str, dict[str, int]]]:
    texts: dict[str, str] = {}
    langs: dict[str, str] = {}
    judged: dict[str, dict[str, int]] = {}
    for number, (where, record) in enumerate(json_objects(path, EvalDataError, ["query"]), start=1):
        query_id = str(record.get("id", f"q{number}"))
        if query_id in texts:
            raise EvalDataError(f"{where}: duplicate query id {query_id!r}")
        relevant = record.get("relevant")
        if isinstance(relevant, list) and relevant and all(isinstance(d, str) for d in relevant):
            grades = dict.fromkeys(relevant, 1)
        elif isinstance(relevant, dict) and relevant:
            grades = {str(d): _grade(g, where) for d, g in relevant.items()}
        else:
            raise EvalDataError(f"{where}: 'relevant' must be a non-empty list of document ids or object of grades")
        texts[query_id], judged[query_id] = record["query"], grades
        if lang := _language(record, where):
            langs[query_id] = lang
    return texts, langs, judged


def read_corpus(path: Path) -> Iterator[SourceDocument]:
    """Any corpus ``polyglot-search index`` reads (a BEIR ``corpus.jsonl`` included)."""
    try:
        yield from read_documents(path)
    except CorpusError as exc:
        raise EvalDataError(str(exc)) from exc


def _record_id(record: dict, where: str) -> str:
    value = record.get("_id", record.get("id"))
    if not isinstance(value, str | int) or value == "":
        raise EvalDataError(f"{where}: needs an '_id' (or 'id')")
    return str(value)


def _language(record: dict, where: str) -> str | None:
    metadata = record.get("metadata")
    tag = record.get("lang") or (metadata.get("lang") if isinstance(metadata, dict) else None)
    if tag is None:
        return None
    try:
        return normalize_language(str(tag))
    except ValueError as exc:
        raise EvalDataError(f"{where}: {exc}") from exc


def _grade(raw: object, where: str) -> int:
    try:
        return int(raw)  # type: ignore[call-overload]
    except (TypeError, ValueError):
        raise EvalDataError(f"{where}: relevance {raw!r} is not an integer") from None
