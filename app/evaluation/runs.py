"""Rankings to evaluate: documents ranked for every query, by a model folder (the corpus indexed as the service
indexes it: split into passages, a document scored by its best passage) or by a running server (over HTTP, so
that a Milvus deployment is measured as it serves)."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from app.build import build_index
from app.corpus import Document, Group, Hit
from app.encoder import OnnxEncoder, choose_variant
from app.evaluation.data import EvalDataError, EvalSet
from app.ingest.passages import passage_maker
from app.manifest import load_model_manifest
from app.settings import Settings

QUERY_BATCH = 32  # queries per model call or /search/batch request


@dataclass
class Ranking:
    """Each query's documents, best first, down to the depth; and the language of every document seen."""

    name: str
    ranked: dict[str, list[str]]
    doc_lang: dict[str, str]
    seconds: float


def document_of(passage: Document) -> str:
    """The document a passage belongs to: ``doc_id`` for a passage split from a longer text, else its own id."""
    return str(passage.metadata.get("doc_id", passage.id))


def rank_with_model(model_dir: Path, data: EvalSet, depth: int = 100, settings: Settings | None = None) -> Ranking:
    """Index ``data.corpus`` with the model in memory and rank every query's documents by their best passage."""
    if not data.corpus:
        raise EvalDataError("evaluating a model folder needs the corpus (corpus.jsonl, or --corpus)")
    started = time.perf_counter()
    settings = settings or Settings()
    manifest = load_model_manifest(model_dir)
    encoder = OnnxEncoder(model_dir, choose_variant(manifest, settings.int8), manifest=manifest)  # as served
    maker = passage_maker(encoder, settings)
    passages = [p for d in tqdm(data.corpus, desc="splitting documents", unit="doc") for p in maker.passages(d)]
    doc_lang: dict[str, str] = {}
    for passage in passages:
        doc_lang.setdefault(document_of(passage), passage.lang)
    index = build_index(encoder, passages, progress=True)
    vectors = encoder.encode([q.text for q in data.queries], "query", QUERY_BATCH, progress=True)
    split = any("doc_id" in p.metadata for p in passages)
    ranked: dict[str, list[str]] = {}
    for start in tqdm(range(0, len(data.queries), QUERY_BATCH), desc="ranking", unit="batch"):
        rows = vectors[start : start + QUERY_BATCH]
        found: list[list[Group]] | list[list[Hit]]
        found = index.search_grouped(rows, depth, "doc_id") if split else index.search(rows, depth)
        for query, items in zip(data.queries[start : start + QUERY_BATCH], found, strict=True):
            ranked[query.id] = [document_of(_top(item).document) for item in items]
    name = encoder.manifest.name
    return Ranking(name, ranked, doc_lang, time.perf_counter() - started)


def _top(item: Group | Hit) -> Hit:
    return item.members[0] if isinstance(item, Group) else item


def rank_with_server(url: str, data: EvalSet, depth: int = 100, api_key: str | None = None) -> Ranking:
    """Rank with ``POST /search/batch`` of a running server (grouped by document when its index splits them)."""
    started = time.perf_counter()
    base = url.rstrip("/")
    ready = _call(base, "/ready", None, api_key)
    if not ready.get("ready"):
        raise EvalDataError(f"{base} is not ready: {ready.get('error')}")
    split = "doc_id" in ready.get("group_fields", [])
    ranked: dict[str, list[str]] = {}
    doc_lang: dict[str, str] = {}
    for start in tqdm(range(0, len(data.queries), QUERY_BATCH), desc="searching", unit="batch"):
        batch = data.queries[start : start + QUERY_BATCH]
        body: dict = {"queries": [q.text for q in batch], "top_k": depth, "truncate": True}
        if split:
            body |= {"group_by": "doc_id", "group_size": 1}
        answer = _call(base, "/search/batch", body, api_key)
        for query, found in zip(batch, answer["results"], strict=True):
            documents = [str(r["metadata"].get("doc_id", r["id"])) for r in found["results"]]
            ranked[query.id] = documents
            for document, result in zip(documents, found["results"], strict=True):
                doc_lang.setdefault(document, result["lang"])
    unseen = sorted({doc for q in data.queries for doc in data.relevant(q.id)} - set(doc_lang))
    for document in tqdm(unseen, desc="languages of unretrieved relevant documents", unit="doc", disable=not unseen):
        for passage_id in (document, f"{document}#0"):
            found_document = _call(base, f"/documents/{urllib.parse.quote(passage_id, safe='')}", None, api_key, 404)
            if found_document:
                doc_lang[document] = found_document["lang"]
                break
    return Ranking(f"{ready.get('model')} at {base}", ranked, doc_lang, time.perf_counter() - started)


def _call(base: str, path: str, body: dict | None, api_key: str | None, allowed: int | None = None) -> dict:
    headers = {"Content-Type": "application/json"} | ({"Authorization": f"Bearer {api_key}"} if api_key else {})
    request = urllib.request.Request(
        base + path, data=json.dumps(body).encode() if body is not None else None, headers=headers
    )
    try:
        with urllib.request.urlopen(request, timeout=300) as answer:
            return json.loads(answer.read())
    except urllib.error.HTTPError as exc:
        if exc.code == allowed:
            return {}
        detail = exc.read().decode(errors="replace")[:500]
        raise EvalDataError(f"{base}{path} answered {exc.code}: {detail}") from exc
    except (urllib.error.URLError, OSError) as exc:
        raise EvalDataError(f"cannot reach {base}: {exc}") from exc
