"""A full disk. Before: on a small filesystem the write that triggered a snapshot got a plain-text 500 although it
was logged, every later write retried the snapshot, and the partial version folders used up the disk. Now, on a
real full tmpfs: every write is answered 200 (durable) or 507 (not made), no partial version is left behind, the
snapshot failure shows in /ready, and after kill -9 every acknowledged write is there."""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from app.stores.embedded.index import SearchIndex
from tests.conftest import start_server, stop_server

pytestmark = pytest.mark.e2e
WRITE = {"Authorization": "Bearer write-key"}


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mount = tmp_path / "small"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(mount)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_a_full_disk_loses_no_acknowledged_write_and_answers_no_500(
    tiny_model: Path, tiny_index: Path, small_disk: Path
) -> None:
    index_dir = small_disk / "indexes" / "writable"
    SearchIndex.load(tiny_index).save(index_dir)
    env = {
        "SEARCH_MODEL_DIR": str(tiny_model),
        "SEARCH_INDEX_DIR": str(index_dir),
        "SEARCH_WRITE_API_KEYS": "write-key",
        "SEARCH_SNAPSHOT_EVERY": "3",
        "SEARCH_MAX_DOCUMENT_CHARS": "20000",
    }
    process, base = start_server(env)
    acknowledged: list[str] = []
    statuses: set[int] = set()
    saw_snapshot_error = False
    try:
        with httpx.Client(base_url=base, timeout=60) as client:
            for batch in range(60):  # ~60 x 8 x 6 kB: about twice what the disk holds
                ids = [f"fill-{batch}-{i}" for i in range(8)]
                documents = [{"id": i, "text": f"{i} " + "Füllung " * 700, "lang": "de"} for i in ids]
                body = {"documents": documents, "split": False, "truncate": True}  # large records
                answer = client.post("/documents", json=body, headers=WRITE)
                statuses.add(answer.status_code)
                assert answer.status_code in (200, 507), answer.text
                assert answer.headers["content-type"] == "application/json"
                if answer.status_code == 200:
                    acknowledged += ids
                else:
                    assert "disk is full" in answer.json()["detail"]
                saw_snapshot_error |= client.get("/ready").json()["snapshot_error"] is not None
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
    assert statuses == {200, 507} and acknowledged and saw_snapshot_error
    leftovers = [p for p in index_dir.parent.glob(".writable.2*") if not (p / "manifest.json").is_file()]
    assert leftovers == []  # no half-written version folder uses up the disk
    process, base = start_server(env)  # restart on the still-full disk: the log replays
    try:
        with httpx.Client(base_url=base) as client:
            missing = [i for i in acknowledged if client.get(f"/documents/{i}").status_code != 200]
            assert missing == []
    finally:
        stop_server(process)
