"""Backups a user can restore: taken from a live server during writes, restored exactly to the acknowledged state at
their log sequence, refused for a server of another model, checked offline; a Milvus collection rebuilt from one."""

from __future__ import annotations

import json
import tarfile
import threading
from pathlib import Path

import httpx
import pytest

from app.cli import main
from tests.conftest import running_server, writable_server_env

pytestmark = pytest.mark.e2e
KEY = {"Authorization": "Bearer k"}


class Writer(threading.Thread):
    """Upserts (new ids and new versions of earlier ones) until told to stop; records each write's log sequence."""

    def __init__(self, base: str, tag: str) -> None:
        super().__init__(daemon=True)
        self.base, self.tag = base, tag
        self.writes: list[tuple[int, str, str]] = []  # (log sequence, id, text), acknowledged
        self.stop = threading.Event()

    def run(self) -> None:
        with httpx.Client(base_url=self.base, headers=KEY, timeout=60) as client:
            n = 0
            while not self.stop.is_set():
                doc_id = f"{self.tag}-{n % 25}"  # from the 26th write on, new versions of earlier documents
                text = f"{self.tag} version {n // 25} of document {n % 25}"
                document = {"id": doc_id, "text": text, "lang": "en", "metadata": {"key": doc_id}}
                answer = client.post("/documents", json={"documents": [document]})
                assert answer.status_code == 200, answer.text
                self.writes.append((answer.json()["log_seq"], doc_id, text))
                n += 1


def state_at(writers: list[Writer], seq: int) -> dict[str, str]:
    """Each written id's text as of log sequence ``seq``."""
    texts: dict[str, str] = {}
    for written, doc_id, text in sorted(w for writer in writers for w in writer.writes):
        if written <= seq:
            texts[doc_id] = text
    return texts


def test_a_backup_during_writes_restores_exactly_its_sequence(
    tiny_model: Path, tiny_index: Path, second_model: Path, tmp_path: Path
) -> None:
    env = writable_server_env(tiny_model, tiny_index, tmp_path, SEARCH_WRITE_API_KEYS="k", SEARCH_SNAPSHOT_EVERY="7")
    archive = tmp_path / "backup.tar"
    with running_server(env) as base:
        base_size = httpx.get(f"{base}/ready").json()["index_size"]
        writers = [Writer(base, f"w{i}") for i in range(3)]
        for writer in writers:
            writer.start()
        while sum(len(w.writes) for w in writers) < 30:
            threading.Event().wait(0.05)
        with pytest.raises(SystemExit, match="--server"):  # its log is in use: the server takes the backup
            main(["backup", "--index-dir", env["SEARCH_INDEX_DIR"], "--out", str(archive)])
        main(["backup", "--server", base, "--key", "k", "--out", str(archive)])
        during = sum(len(w.writes) for w in writers)
        threading.Event().wait(0.5)
        for writer in writers:
            writer.stop.set()
            writer.join(timeout=60)
        assert httpx.post(f"{base}/backup").status_code == 401  # a backup holds every document: write key only
    after = sum(len(w.writes) for w in writers)
    assert after > during, "no write was acknowledged after the backup started"

    with tarfile.open(archive) as tar:
        assert tar.getnames() == ["manifest.json", "SHA256SUMS", "docs.jsonl", "index.faiss"]
        manifest = json.load(tar.extractfile("manifest.json"))
    seq = manifest["wal_seq"]
    expected = state_at(writers, seq)
    assert 30 <= seq < after and expected != state_at(writers, after)

    restored = tmp_path / "restored" / "index"
    with pytest.raises(SystemExit, match="encoded by model 'tiny-bert'"):  # a server of another model
        main(["restore", str(archive), "--index-dir", str(restored), "--model-dir", str(second_model)])
    assert not restored.exists() and not list(restored.parent.glob(".index.2*"))  # nothing left behind
    main(["restore", str(archive), "--index-dir", str(restored), "--model-dir", str(tiny_model)])
    restored_env = {**env, "SEARCH_INDEX_DIR": str(restored)}
    with running_server(restored_env) as base, httpx.Client(base_url=base, headers=KEY) as client:
        ready = client.get("/ready").json()
        assert ready["index_size"] == base_size + len(expected) and ready["recovered_from"] is None
        for writer in writers:
            for _, doc_id, _ in writer.writes:
                answer = client.get(f"/documents/{doc_id}")
                if doc_id in expected:
                    assert answer.json()["text"] == expected[doc_id]
                else:
                    assert answer.status_code == 404, f"{doc_id} was written after the backup's sequence"
        document = {"id": "after-restore", "text": "a write after the restore", "lang": "en"}
        assert client.post("/documents", json={"documents": [document]}).json()["log_seq"] == seq + 1


def test_restore_replaces_only_when_asked_and_keeps_the_old_index(
    tiny_model: Path, tiny_index: Path, writable_index: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    archive = tmp_path / "tiny.tar"
    main(["backup", "--index-dir", str(tiny_index), "--out", str(archive)])
    main(["verify", str(archive)])
    main(["verify", str(writable_index)])
    assert capsys.readouterr().out.count("checksums and vectors verified") == 2
    before = writable_index.resolve()
    with pytest.raises(SystemExit, match="--replace"):
        main(["restore", str(archive), "--index-dir", str(writable_index), "--model-dir", str(tiny_model)])
    assert writable_index.resolve() == before
    main(["restore", str(archive), "--index-dir", str(writable_index), "--model-dir", str(tiny_model), "--replace"])
    assert writable_index.resolve() != before
    (aside,) = writable_index.parent.glob("writable.before-restore-*")
    assert (aside / before.name / "index.faiss").is_file()  # moved aside, not deleted


def test_a_damaged_archive_is_refused(tiny_model: Path, tiny_index: Path, tmp_path: Path) -> None:
    archive = tmp_path / "tiny.tar"
    main(["backup", "--index-dir", str(tiny_index), "--out", str(archive)])
    data = bytearray(archive.read_bytes())
    data[-4096] ^= 0xFF  # inside index.faiss, the last member
    archive.write_bytes(bytes(data))
    with pytest.raises(SystemExit, match="does not match its checksum"):
        main(["verify", str(archive)])
    target = tmp_path / "restored"
    with pytest.raises(SystemExit, match="does not match its checksum"):
        main(["restore", str(archive), "--index-dir", str(target), "--model-dir", str(tiny_model)])
    assert not target.exists()


def test_a_milvus_collection_is_rebuilt_from_an_embedded_backup(
    tiny_model: Path, tiny_index: Path, tmp_path: Path
) -> None:
    archive, restored, uri = tmp_path / "tiny.tar", tmp_path / "restored", tmp_path / "milvus.db"
    main(["backup", "--index-dir", str(tiny_index), "--out", str(archive)])
    main(["restore", str(archive), "--index-dir", str(restored), "--model-dir", str(tiny_model)])
    main(["copy", "--from", str(restored), "--milvus-uri", str(uri), "--collection", "passages"])
    env = {
        "SEARCH_MODEL_DIR": str(tiny_model),
        "SEARCH_STORE": "milvus",
        "SEARCH_MILVUS_URI": str(uri),
        "SEARCH_MILVUS_COLLECTION": "passages",
        "SEARCH_WRITE_API_KEYS": "k",
    }
    with running_server(env) as base, httpx.Client(base_url=base) as client:
        assert client.get("/ready").json()["index_size"] == len(
            (tiny_index / "docs.jsonl").read_text(encoding="utf-8").splitlines()
        )
        hits = client.post("/search", json={"query": "Warschau", "top_k": 3}).json()["results"]
        assert len(hits) == 3
        refused = client.post("/backup", headers=KEY)
        assert refused.status_code == 409 and "own tools" in refused.json()["detail"]
