from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from app.build import build_index
from app.corpus import Document
from app.encoder import OnnxEncoder
from app.ingest.sources import CorpusError, read_corpus
from app.manifest import ManifestError, load_index_manifest, load_model_manifest
from app.stores.embedded.index import GraphTuning, SearchIndex


def write_lines(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("{not json", "invalid JSON"),
        ('["a list"]', "expected a JSON object"),
        ('{"id": "a", "text": "", "lang": "en"}', "'text' must be a non-empty string"),
        ('{"id": 3, "text": "x", "lang": "en"}', "'id' must be a non-empty string"),
        ('{"id": "a", "text": "x"}', "'lang' must be a non-empty string"),
        ('{"id": "a", "text": "x", "lang": "en", "metadata": 5}', "'metadata' must be an object"),
        ('{"id": "a", "text": "x", "lang": "en", "metadata": {"s": NaN}}', "JSON has no NaN or Infinity"),
        ('{"id": "a", "text": "x", "lang": "en", "metadata": {"k": ' + "[" * 40 + "]" * 40 + "}}", "than 32 levels"),
    ],
)
def test_corpus_errors_name_file_and_line(tmp_path: Path, line: str, message: str) -> None:
    path = write_lines(tmp_path / "c.jsonl", ['{"id": "ok", "text": "fine", "lang": "en"}', line])
    with pytest.raises(CorpusError, match=rf"c\.jsonl line 2: .*{message}"):
        list(read_corpus(path))


def test_duplicate_ids_are_refused(tmp_path: Path) -> None:
    row = '{"id": "same", "text": "x", "lang": "en"}'
    with pytest.raises(CorpusError, match="line 2: duplicate id 'same'"):
        list(read_corpus(write_lines(tmp_path / "c.jsonl", [row, row])))


def test_search_finds_a_passage_from_its_own_text(tiny_model: Path, tiny_corpus: Path, tiny_index: Path) -> None:
    encoder = OnnxEncoder(tiny_model, "fp32", runtime="cpu")
    index = SearchIndex.load(tiny_index)
    documents = list(read_corpus(tiny_corpus))
    probe = documents[37]
    hits = index.search(encoder.encode([probe.text], "query"), top_k=5)[0]
    assert hits[0].document.id == probe.id
    scores = [h.score for h in hits]
    assert scores == sorted(scores, reverse=True) and len(hits) == 5


def test_language_filter_is_exact(tiny_model: Path, tiny_index: Path) -> None:
    encoder = OnnxEncoder(tiny_model, "fp32", runtime="cpu")
    index = SearchIndex.load(tiny_index)
    query = encoder.encode(["Super Bowl"], "query")
    filtered = index.search(query, top_k=30, languages=["de", "zh"])[0]
    assert {h.document.lang for h in filtered} == {"de", "zh"} and len(filtered) == 30
    everything = index.search(query, top_k=index.size)[0]
    expected = [h.document.id for h in everything if h.document.lang in ("de", "zh")][:30]
    assert [h.document.id for h in filtered] == expected


def test_manifest_ties_index_to_model(tiny_model: Path, tiny_index: Path) -> None:
    manifest = load_index_manifest(tiny_index)
    assert manifest.model_fingerprint == load_model_manifest(tiny_model).fingerprint
    assert manifest.size == 220 and len(manifest.languages) == 11


def test_save_swaps_versions_atomically(tiny_model: Path, tmp_path: Path) -> None:
    encoder = OnnxEncoder(tiny_model, "fp32", runtime="cpu")
    target = tmp_path / "idx"
    first = build_index(encoder, [Document("a", "alpha text", "en")], progress=False)
    second = build_index(encoder, [Document("b", "beta text", "en"), Document("c", "gamma", "de")], progress=False)
    v1 = first.save(target)
    assert SearchIndex.load(target).size == 1
    v2 = second.save(target)
    assert target.is_symlink() and target.resolve() == v2.resolve()
    assert SearchIndex.load(target).size == 2
    assert v1.is_dir()  # the previous version survives one swap for readers that resolved it just before
    third = second.save(target)
    assert not v1.exists() and v2.is_dir() and third.is_dir()
    assert not list(tmp_path.glob(".*.tmp"))


def test_plain_folder_is_not_overwritten(tiny_model: Path, tmp_path: Path) -> None:
    target = tmp_path / "idx"
    target.mkdir()
    (target / "precious.txt").write_text("keep me")
    index = build_index(OnnxEncoder(tiny_model, "fp32", runtime="cpu"), [Document("a", "x", "en")], progress=False)
    with pytest.raises(ManifestError, match="plain folder"):
        index.save(target)
    assert (target / "precious.txt").read_text() == "keep me"


def test_hnsw_agrees_with_exact_search(tiny_model: Path, tiny_corpus: Path) -> None:
    encoder = OnnxEncoder(tiny_model, "fp32", runtime="cpu")
    documents = list(read_corpus(tiny_corpus))
    flat = build_index(encoder, documents, "flat", progress=False)
    hnsw = build_index(encoder, documents, "hnsw", progress=False)
    hnsw.tuning = GraphTuning(exact_below=0)  # the graph even over a tiny corpus
    queries = encoder.encode([d.text[:60] for d in documents[::11]], "query")
    agree = np.mean(
        [
            len({h.document.id for h in a} & {h.document.id for h in b}) / 10
            for a, b in zip(flat.search(queries, 10), hnsw.search(queries, 10), strict=True)
        ]
    )
    assert agree >= 0.95
    filtered = hnsw.search(queries, 10, languages=["en"])
    assert all(h.document.lang == "en" for hits in filtered for h in hits)


def test_corrupt_store_is_detected(tiny_index: Path, tmp_path: Path) -> None:
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(tiny_index.resolve(), copy)
    lines = (copy / "docs.jsonl").read_text(encoding="utf-8").splitlines()
    (copy / "docs.jsonl").write_text("\n".join(lines[:-1]) + "\n", encoding="utf-8")
    with pytest.raises(ManifestError, match=r"docs\.jsonl does not match its checksum"):
        SearchIndex.load(copy)
    (copy / "SHA256SUMS").unlink()  # as a folder written before checksums: the files must still agree
    manifest = json.loads((copy / "manifest.json").read_text())
    (copy / "manifest.json").write_text(json.dumps({**manifest, "format_version": 1}))
    with pytest.raises(ManifestError, match="220 vectors but 219 documents"):
        SearchIndex.load(copy)
    assert manifest["size"] == 220


def test_build_counts_truncated_passages(tiny_model: Path) -> None:
    encoder = OnnxEncoder(tiny_model, "fp32", runtime="cpu")
    documents = [Document("long", "word " * 300, "en"), Document("short", "a few words", "en")]
    index = build_index(encoder, documents, progress=False)
    assert index.manifest.model_extra["truncated_passages"] == 1
