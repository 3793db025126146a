"""`docker compose up` for real: build the CPU image, start it, search through the published port, tear down.

Needs a Docker engine with Compose v2 and a local debian:bookworm-slim image: `make test-docker` runs
docker/test-setup.sh first. Uses the default model and demo index that `make test` builds into models/, indexes/.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from app.manifest import load_index_manifest
from tests.conftest import DEMO_INDEX_DIR, free_port
from tests.tiny import ROOT

pytestmark = pytest.mark.docker
PROJECT = "polyglot-search-test"


def compose(*args: str, env: dict[str, str], timeout: int = 1200) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["docker", "compose", "-p", PROJECT, *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture(scope="module")
def stack(default_model: Path, demo_index: Path) -> Iterator[tuple[str, dict]]:
    if shutil.which("docker") is None or subprocess.run(["docker", "info"], capture_output=True).returncode != 0:
        pytest.fail("no Docker engine: run docker/test-setup.sh (make test-docker does)")
    port = free_port()
    env = {**os.environ, "PORT": str(port), "SEARCH_WRITE_API_KEYS": "docker-test-key"}
    facts: dict = {}
    started = time.perf_counter()
    build = compose("build", "api", env=env)
    assert build.returncode == 0, build.stderr[-4000:]
    facts["build_seconds"] = round(time.perf_counter() - started, 1)
    size = subprocess.run(
        ["docker", "image", "inspect", "polyglot-search:cpu", "--format", "{{.Size}}"],
        capture_output=True,
        text=True,
        check=True,
    )
    facts["image_mib"] = round(int(size.stdout.strip()) / 2**20, 1)
    up = compose("up", "-d", "api", env=env, timeout=300)
    assert up.returncode == 0, up.stderr[-4000:]
    try:
        container = compose("ps", "-q", "api", env=env).stdout.strip()
        deadline = time.monotonic() + 240
        status = ""
        while time.monotonic() < deadline:
            inspect = subprocess.run(["docker", "inspect", container], capture_output=True, text=True, check=True)
            state = json.loads(inspect.stdout)[0]["State"]
            status = state.get("Health", {}).get("Status", "")
            if status == "healthy" or not state["Running"]:
                break
            time.sleep(2)
        logs = compose("logs", "api", env=env).stdout[-3000:]
        assert status == "healthy", f"container is {status!r}:\n{logs}"
        facts["healthy_after_s"] = round(time.perf_counter() - started - facts["build_seconds"], 1)
        print(f"\ndocker facts: {facts}")
        yield f"http://127.0.0.1:{port}", facts
    finally:
        down = compose("down", "-v", "--remove-orphans", env=env, timeout=300)
        assert down.returncode == 0, down.stderr[-2000:]


def test_multilingual_search_through_the_published_port(stack: tuple[str, dict]) -> None:
    base, _ = stack
    ready = httpx.get(f"{base}/ready", timeout=10).json()
    built = load_index_manifest(DEMO_INDEX_DIR).size  # the host's demo index, mounted into the container
    assert ready["ready"] and ready["index_size"] == built and ready["model"] == "multilingual-e5-small-hybrid"
    answer = httpx.post(f"{base}/search", json={"query": "Wie viele Grammys gewann Lady Gaga?", "top_k": 5}, timeout=30)
    assert answer.status_code == 200, answer.text
    ids = [r["id"] for r in answer.json()["results"]]
    assert sum(i.startswith("xquad-p003-") for i in ids) >= 4, ids  # the paragraph in four or more languages
    bad = httpx.post(f"{base}/search", json={"query": "   "}, timeout=10)
    assert bad.status_code == 422
    page = httpx.get(f"{base}/", timeout=10)  # the search page ships in the serving image
    assert page.status_code == 200 and "Multilingual passage search" in page.text


def test_read_only_index_volume_refuses_writes_with_the_reason(stack: tuple[str, dict]) -> None:
    base, _ = stack
    assert httpx.get(f"{base}/ready", timeout=10).json()["writable"] is False
    document = {"id": "d1", "text": "Ein Text", "lang": "de"}
    answer = httpx.post(
        f"{base}/documents",
        json={"documents": [document]},
        headers={"Authorization": "Bearer docker-test-key"},
        timeout=10,
    )
    assert answer.status_code == 409 and "write-ahead log" in answer.json()["detail"], answer.text


def test_runs_as_non_root_without_torch(stack: tuple[str, dict]) -> None:
    env = {**os.environ}
    check = compose(
        "exec",
        "-T",
        "api",
        "python3",
        "-c",
        "import os, importlib.util as u; print(os.getuid(), u.find_spec('torch') is None)",
        env=env,
    )
    assert check.returncode == 0, check.stderr
    assert check.stdout.split() == ["10001", "True"]


def test_missing_model_volume_is_named(stack: tuple[str, dict]) -> None:
    result = subprocess.run(
        ["docker", "run", "--rm", "-e", "SEARCH_MODEL_DIR=/models/nope", "polyglot-search:cpu"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 0 and "model folder /models/nope does not exist" in result.stderr


def test_the_engine_accepts_every_profile() -> None:
    """`docker compose config` with the engine's own parser: the scale profile (whose images cannot be pulled here)
    resolves, with its two API replicas on Milvus behind the load balancer."""
    if shutil.which("docker") is None:
        pytest.fail("no Docker engine: run docker/test-setup.sh (make test-docker does)")
    for profile in ("gpu", "train", "scale"):
        checked = compose("--profile", profile, "config", "--quiet", env=dict(os.environ))
        assert checked.returncode == 0, checked.stderr[-2000:]
    resolved = compose("--profile", "scale", "config", "--format", "json", env=dict(os.environ))
    services = json.loads(resolved.stdout)["services"]
    assert services["api-scaled"]["deploy"]["replicas"] == 2
    assert services["api-scaled"]["environment"]["SEARCH_MILVUS_URI"] == "http://milvus:19530"
