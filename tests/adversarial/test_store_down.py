"""Milvus goes away under a running API process: searches, reads and writes get 503 with the reason within the
Milvus timeout (never a 500 or a hang), `/ready` says why, and `/health` still answers."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import httpx

from tests.conftest import start_server, stop_server, writable_server_env


def children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def test_a_vanished_milvus_is_a_503_with_the_reason(tiny_model: Path, tiny_index: Path, tmp_path: Path) -> None:
    env = writable_server_env(
        tiny_model, tiny_index, tmp_path, "milvus", SEARCH_WRITE_API_KEYS="k", SEARCH_MILVUS_TIMEOUT_S="2"
    )
    process, base = start_server(env)
    try:
        check_answers(base, process.pid)
    finally:
        stop_server(process)


def check_answers(base: str, server_pid: int) -> None:
    with httpx.Client(base_url=base, timeout=30) as client:
        assert client.post("/search", json={"query": "Warschau"}).status_code == 200
        milvus = [pid for pid in children(server_pid) if "milvus" in Path(f"/proc/{pid}/cmdline").read_text()]
        assert milvus, "Milvus Lite's process was not found under the server"
        for pid in milvus:
            os.kill(pid, signal.SIGKILL)
        time.sleep(0.5)
        document = {"id": "after", "text": "nach dem Ausfall", "lang": "de"}
        for method, path, body in (
            ("POST", "/search", {"query": "Warschau"}),
            ("GET", "/documents/xquad-p000-en", None),
            ("POST", "/documents", {"documents": [document]}),
            ("DELETE", "/documents/xquad-p000-en", None),
        ):
            started = time.monotonic()
            answer = client.request(method, path, json=body, headers={"Authorization": "Bearer k"})
            assert answer.status_code == 503, (path, answer.status_code, answer.text)
            assert "Milvus" in answer.json()["detail"] and time.monotonic() - started < 15, path
        ready = client.get("/ready")
        assert ready.status_code == 503 and "Milvus" in ready.json()["error"]
        assert client.get("/health").status_code == 200
