"""`python -m app.cli index` over an index that took writes through the documents API."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.cli import main
from app.corpus import Document
from app.encoder import OnnxEncoder
from app.stores.embedded.collection import Collection, wal_path
from app.stores.embedded.index import SearchIndex


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
    assert "api-1" not in rebuilt and rebuilt.size == 220 and rebuilt.manifest.wal_seq == 0
    assert wal_path(writable_index).stat().st_size == 0
    assert Collection(writable_index).size == 220  # nothing old is replayed onto the new index
