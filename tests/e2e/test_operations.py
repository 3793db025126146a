"""What an operator needs around the API: request ids in answers and logs, JSON logs, CORS by setting, a command."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import running_server, start_server, stop_server

pytestmark = pytest.mark.e2e
PREFLIGHT = {"Origin": "https://example.org", "Access-Control-Request-Method": "POST"}


def test_request_ids_are_echoed_and_on_every_log_line(tiny_model: Path, tiny_index: Path) -> None:
    env = {"SEARCH_MODEL_DIR": str(tiny_model), "SEARCH_INDEX_DIR": str(tiny_index), "SEARCH_LOG_FORMAT": "json"}
    process, base = start_server(env)
    try:
        given = httpx.post(f"{base}/search", json={"query": "Warschau"}, headers={"X-Request-ID": "trace-42"})
        assert given.status_code == 200 and given.headers["x-request-id"] == "trace-42"
        made = httpx.get(f"{base}/health").headers["x-request-id"]
        assert len(made) == 32 and int(made, 16) >= 0  # a new id when the client sends none
        for unsafe in ("two words; and=more", "a" * 200):  # never echoed into headers and logs as sent
            replaced = httpx.get(f"{base}/health", headers={"X-Request-ID": unsafe}).headers["x-request-id"]
            assert replaced != unsafe and len(replaced) == 32
        refused = httpx.post(f"{base}/v1/embeddings", json={"input": "x"}, headers={"X-Request-ID": "bad-1"})
        assert refused.status_code == 422 and refused.headers["x-request-id"] == "bad-1"  # errors carry it too
        time.sleep(0.5)  # the access log line is written after the answer
    finally:
        stop_server(process)
    process.log_file.seek(0)  # type: ignore[attr-defined]
    lines = [json.loads(line) for line in process.log_file.read().splitlines() if line.startswith("{")]  # type: ignore[attr-defined]
    assert lines and all({"time", "level", "logger", "message", "request_id"} <= line.keys() for line in lines)
    traced = [line for line in lines if line["request_id"] == "trace-42"]
    assert any(line["logger"] == "uvicorn.access" and "/search" in line["message"] for line in traced)


def test_cors_is_off_by_default_and_on_for_named_origins(tiny_model: Path, tiny_index: Path) -> None:
    env = {"SEARCH_MODEL_DIR": str(tiny_model), "SEARCH_INDEX_DIR": str(tiny_index)}
    with running_server(env) as base:
        closed = httpx.options(f"{base}/search", headers=PREFLIGHT)
        assert closed.status_code == 405 and "access-control-allow-origin" not in closed.headers
    with running_server({**env, "SEARCH_CORS_ORIGINS": "https://example.org,https://other.example"}) as base:
        preflight = httpx.options(f"{base}/search", headers=PREFLIGHT)
        assert preflight.status_code == 200
        assert preflight.headers["access-control-allow-origin"] == "https://example.org"
        answer = httpx.post(f"{base}/search", json={"query": "Warschau"}, headers={"Origin": "https://example.org"})
        assert answer.headers["access-control-allow-origin"] == "https://example.org"
        elsewhere = httpx.options(f"{base}/search", headers={**PREFLIGHT, "Origin": "https://evil.example"})
        assert "access-control-allow-origin" not in elsewhere.headers


def test_the_installed_command() -> None:
    command = Path(sys.executable).with_name("polyglot-search")
    done = subprocess.run([str(command), "--help"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and "usage: polyglot-search" in done.stdout and "serve" in done.stdout
