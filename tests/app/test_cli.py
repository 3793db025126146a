"""`python -m app.cli index` over an index that took writes through the documents API."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.cli import main
from app.corpus import Document
from app.encoder import OnnxEncoder
from app.ingest.passages import PassageMaker, read_passages
from app.ingest.splitter import PassageSplitter
from app.stores.embedded.collection import Collection
from app.stores.embedded.index import SearchIndex
from app.stores.embedded.wal import wal_path


def passages_of(corpus: Path, encoder: OnnxEncoder) -> list[Document]:
    """What the index command makes of a corpus with this model at its own limit."""
    splitter = PassageSplitter(encoder.tokenizer, encoder.prefix("passage"), encoder.manifest.max_length)
    return read_passages(corpus, PassageMaker(splitter))


def write_one(index_dir: Path, encoder: OnnxEncoder) -> Collection:
    collection = Collection(index_dir)
    collection.upsert([Document("api-1", "written through the API", "en")], encoder.encode(["x"], "passage"))
    return collection


def test_rebuild_refuses_to_drop_api_writes_unless_asked(
    tiny_model: Path, tiny_corpus: Path, writable_index: Path
) -> None:
    encoder = OnnxEncoder(tiny_model, "fp32", runtime="cpu")
    rebuild = ["index", "--corpus", str(tiny_corpus), "--out", str(writable_index), "--model-dir", str(tiny_model)]
    running = write_one(writable_index, encoder)
    with pytest.raises(SystemExit, match="stop the server that writes to"):
        main(rebuild)
    running.close()  # snapshot: the write now lives in the index, the log is empty
    with pytest.raises(SystemExit, match="has taken 1 write requests through the documents API"):
        main(rebuild)
    main([*rebuild, "--discard-writes"])
    rebuilt = SearchIndex.load(writable_index)
    passages = len(passages_of(tiny_corpus, encoder))
    assert "api-1" not in rebuilt and rebuilt.size == passages and rebuilt.manifest.wal_seq == 0
    assert not writable_index.with_name(f".{writable_index.name}.shards").exists()  # removed once saved
    assert wal_path(writable_index).stat().st_size == 0
    assert Collection(writable_index).size == passages  # nothing old is replayed onto the new index


def test_milvus_index_resumes_and_copy_takes_logged_writes(
    tiny_model: Path, tiny_corpus: Path, writable_index: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    from app.stores.milvus import MilvusStore

    uri = str(tmp_path / "milvus.db")
    half = tmp_path / "half.jsonl"
    half.write_text("".join(tiny_corpus.read_text(encoding="utf-8").splitlines(keepends=True)[:100]), encoding="utf-8")
    to_milvus = ["--model-dir", str(tiny_model), "--store", "milvus", "--milvus-uri", uri, "--collection", "built"]
    encoder = OnnxEncoder(tiny_model, "fp32", runtime="cpu")
    first, passages = len(passages_of(half, encoder)), len(passages_of(tiny_corpus, encoder))
    main(["index", "--corpus", str(half), *to_milvus])  # an interrupted build: the first 100 documents
    main(["index", "--corpus", str(tiny_corpus), *to_milvus])
    assert f"indexed {passages - first} new passages ({first} already there)" in capsys.readouterr().out
    main(["index", "--corpus", str(tiny_corpus), "--model-dir", str(tiny_model), "--out", str(tmp_path / "same")])

    write_one(writable_index, encoder).stop_snapshots()  # the write is in the log only, as after a crash
    main(["copy", "--from", str(writable_index), "--milvus-uri", uri, "--collection", "copied"])
    assert "copied 221 documents (0 already there)" in capsys.readouterr().out
    main(["copy", "--from", str(writable_index), "--milvus-uri", uri, "--collection", "copied"])
    assert "copied 0 documents (221 already there)" in capsys.readouterr().out
    built, copied = MilvusStore(uri, "built"), MilvusStore(uri, "copied")
    try:
        for store in (built, copied):
            store.open(store.read_identity())
        assert built.size == passages and copied.size == 221 and copied.get("api-1").text == "written through the API"
        index = SearchIndex.load(tmp_path / "same")  # the same passages, in the embedded store
        query = encoder.encode(["Warschau"], "query")
        assert [h.document.id for h in built.search(query, 5)[0]] == [h.document.id for h in index.search(query, 5)[0]]
    finally:
        built.close()


def test_strict_refuses_a_folder_with_an_unreadable_file(tiny_model: Path, tmp_path: Path) -> None:
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "a.md").write_text("# A\n\nA readable note about the Rhine.", encoding="utf-8")
    (folder / "b.pdf").write_bytes(b"%PDF-1.4 damaged")
    (folder / "c.txt").write_text("Another readable note.", encoding="utf-8")
    common = ["index", "--corpus", str(folder), "--model-dir", str(tiny_model), "--strict"]
    with pytest.raises(SystemExit, match=r"1 files could not be read \(--strict\); nothing was indexed"):
        main([*common, "--out", str(tmp_path / "index")])
    assert not (tmp_path / "index").exists()
    to_milvus = ["--store", "milvus", "--milvus-uri", str(tmp_path / "milvus.db"), "--collection", "strict"]
    with pytest.raises(SystemExit, match=r"b\.pdf could not be read \(--strict\): stopped there"):
        main([*common, *to_milvus])
    main([*common[:-1], *to_milvus])  # without --strict: the two readable files, the damaged one reported
