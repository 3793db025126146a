"""`docker compose up` for real, on a clean copy of the repository with nothing built on the host: the setup service
builds the models and the demo index into named volumes, the API becomes healthy, answers searches, takes a write
that survives `down` / `up`, and indexes a user's folder through `docker compose run`.

Needs a Docker engine with Compose v2 and a local debian:bookworm-slim image: `make test-docker` runs
docker/test-setup.sh first. The first start builds the models and encodes the demo corpus in containers: about 12
minutes on 2 cores.
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

from tests.conftest import free_port
from tests.tiny import ROOT

pytestmark = pytest.mark.docker
PROJECT = "polyglot-search-test"
KEY = {"Authorization": "Bearer docker-test-key"}
# what a clean checkout does not have: built artifacts and local environments
NOT_IN_A_CHECKOUT = {".git", ".venv", ".venv-infinity", "indexes", "runs"} | {
    "__pycache__",
    ".pytest_cache",
    ".ruff_cache",
    ".hypothesis",
}


def compose(folder: Path, *args: str, env: dict[str, str], timeout: int = 1200) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["docker", "compose", "-p", PROJECT, *args],
        cwd=folder,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def clean_copy(target: Path) -> Path:
    """The repository as a fresh clone has it: sources and the committed adapter, no models or indexes built."""

    def ignore(directory: str, names: list[str]) -> set[str]:
        skipped = {n for n in names if n in NOT_IN_A_CHECKOUT}
        if Path(directory).resolve() == ROOT / "models":
            skipped |= {n for n in names if n not in ("adapters", "README.md")}
        return skipped

    shutil.copytree(ROOT, target, ignore=ignore, symlinks=True)
    assert not (target / "indexes").exists() and not (target / "models" / "multilingual-e5-small").exists()
    return target


def wait_healthy(folder: Path, env: dict[str, str], timeout: float) -> float:
    """Seconds until the api container is healthy (fails with its logs otherwise)."""
    started = time.monotonic()
    status = ""
    while time.monotonic() - started < timeout:
        container = compose(folder, "ps", "-q", "api", env=env).stdout.strip()
        if container:
            inspect = subprocess.run(["docker", "inspect", container], capture_output=True, text=True, check=True)
            state = json.loads(inspect.stdout)[0]["State"]
            status = state.get("Health", {}).get("Status", "")
            if status == "healthy":
                return time.monotonic() - started
        setup = compose(folder, "ps", "-a", "--format", "json", "setup", env=env).stdout
        if '"exited"' in setup.lower() and '"exitcode":0' not in setup.replace(" ", "").lower():
            break  # the setup failed: the api will never start
        time.sleep(5)
    logs = compose(folder, "logs", "setup", "api", env=env).stdout[-5000:]
    raise AssertionError(f"api is {status!r} after {time.monotonic() - started:.0f} s:\n{logs}")


def image_mib(image: str) -> float:
    size = subprocess.run(
        ["docker", "image", "inspect", image, "--format", "{{.Size}}"], capture_output=True, text=True, check=True
    )
    return round(int(size.stdout.strip()) / 2**20, 1)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path, dict, dict]]:
    if shutil.which("docker") is None or subprocess.run(["docker", "info"], capture_output=True).returncode != 0:
        pytest.fail("no Docker engine: run docker/test-setup.sh (make test-docker does)")
    folder = clean_copy(tmp_path_factory.mktemp("fresh") / "polyglot-search")
    port = free_port()
    env = {**os.environ, "PORT": str(port), "SEARCH_WRITE_API_KEYS": "docker-test-key"}
    compose(folder, "down", "-v", "--remove-orphans", env=env, timeout=300)  # a cold start: no volumes left over
    facts: dict = {}
    started = time.perf_counter()
    build = compose(folder, "build", "setup", "api", env=env, timeout=2400)
    assert build.returncode == 0, build.stderr[-4000:]
    facts["build_seconds"] = round(time.perf_counter() - started, 1)
    facts["image_mib"] = {image: image_mib(image) for image in ("polyglot-search:cpu", "polyglot-search:train")}
    up = compose(folder, "up", "-d", env=env, timeout=3000)  # returns once setup has run and the api has started
    assert up.returncode == 0, up.stderr[-4000:] + compose(folder, "logs", "setup", env=env).stdout[-4000:]
    try:
        facts["cold_up_to_healthy_s"] = round(time.perf_counter() - started - facts["build_seconds"], 1)
        facts["cold_up_to_healthy_s"] += round(wait_healthy(folder, env, timeout=300), 1)
        yield f"http://127.0.0.1:{port}", folder, env, facts
    finally:
        print(f"\ndocker facts: {facts}")
        down = compose(folder, "down", "-v", "--remove-orphans", env=env, timeout=300)
        assert down.returncode == 0, down.stderr[-2000:]


def test_multilingual_search_through_the_published_port(stack: tuple[str, Path, dict, dict]) -> None:
    base = stack[0]
    ready = httpx.get(f"{base}/ready", timeout=10).json()
    assert ready["ready"] and ready["index_size"] == 2680 and ready["model"] == "multilingual-e5-small-hybrid"
    assert ready["writable"] is True
    answer = httpx.post(f"{base}/search", json={"query": "Wie viele Grammys gewann Lady Gaga?", "top_k": 5}, timeout=30)
    assert answer.status_code == 200, answer.text
    ids = [r["id"] for r in answer.json()["results"]]
    assert sum(i.startswith("xquad-p003-") for i in ids) >= 4, ids  # the paragraph in four or more languages
    assert httpx.post(f"{base}/search", json={"query": "   "}, timeout=10).status_code == 422
    page = httpx.get(f"{base}/", timeout=10)  # the search page ships in the serving image
    assert page.status_code == 200 and "Multilingual passage search" in page.text


def test_runs_as_non_root_without_torch(stack: tuple[str, Path, dict, dict]) -> None:
    _, folder, env, _ = stack
    code = "import os, importlib.util as u; print(os.getuid(), u.find_spec('torch') is None)"
    check = compose(folder, "exec", "-T", "api", "python3", "-c", code, env=env)
    assert check.returncode == 0, check.stderr
    assert check.stdout.split() == ["10001", "True"]


def test_missing_model_volume_is_named(stack: tuple[str, Path, dict, dict]) -> None:
    result = subprocess.run(
        ["docker", "run", "--rm", "-e", "SEARCH_MODEL_DIR=/models/nope", "polyglot-search:cpu"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 0 and "model folder /models/nope does not exist" in result.stderr


def test_your_own_folder_is_indexed_through_compose_run(stack: tuple[str, Path, dict, dict]) -> None:
    _, folder, env, _ = stack
    samples = folder / "data" / "samples"
    run = compose(
        folder, "run", "--rm", "--no-deps", "-v", f"{samples}:/corpus:ro", "api",
        "index", "--corpus", "/corpus", "--out", "/indexes/mine",
        env=env, timeout=900,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    assert "indexed" in run.stdout and "-> /indexes/mine" in run.stdout, run.stdout[-2000:]
    verify = compose(folder, "run", "--rm", "--no-deps", "api", "verify", "/indexes/mine", env=env, timeout=300)
    assert verify.returncode == 0 and "checksums and vectors verified" in verify.stdout, verify.stderr[-2000:]


def test_a_write_survives_down_and_up(stack: tuple[str, Path, dict, dict]) -> None:
    base, folder, env, facts = stack
    document = {"id": "kept-1", "text": "Die Brücke über den Rhein wurde 1879 eröffnet.", "lang": "de"}
    written = httpx.post(f"{base}/documents", json={"documents": [document]}, headers=KEY, timeout=30)
    assert written.status_code == 200, written.text
    assert httpx.post(f"{base}/documents", json={"documents": [document]}, timeout=30).status_code == 401
    down = compose(folder, "down", env=env, timeout=300)  # not -v: the volumes stay
    assert down.returncode == 0, down.stderr[-2000:]
    started = time.perf_counter()
    up = compose(folder, "up", "-d", env=env, timeout=600)
    assert up.returncode == 0, up.stderr[-3000:]
    facts["warm_up_to_healthy_s"] = round(time.perf_counter() - started + wait_healthy(folder, env, 300), 1)
    kept = httpx.get(f"{base}/documents/kept-1", timeout=10)
    assert kept.status_code == 200 and kept.json()["text"] == document["text"]
    hits = httpx.post(f"{base}/search", json={"query": "Wann wurde die Rheinbrücke eröffnet?", "top_k": 3}, timeout=30)
    assert "kept-1" in [h["id"] for h in hits.json()["results"]]
    assert httpx.get(f"{base}/ready", timeout=10).json()["index_size"] == 2681


def test_the_engine_accepts_every_profile() -> None:
    """`docker compose config` with the engine's own parser: the scale profile (whose images cannot be pulled here)
    resolves, with its two API replicas on Milvus behind the load balancer."""
    if shutil.which("docker") is None:
        pytest.fail("no Docker engine: run docker/test-setup.sh (make test-docker does)")
    env = dict(os.environ)
    for profile in ("gpu", "train", "scale"):
        checked = compose(ROOT, "--profile", profile, "config", "--quiet", env=env)
        assert checked.returncode == 0, checked.stderr[-2000:]
    resolved = compose(ROOT, "--profile", "scale", "config", "--format", "json", env=env)
    services = json.loads(resolved.stdout)["services"]
    assert services["api-scaled"]["deploy"]["replicas"] == 2
    assert services["api-scaled"]["environment"]["SEARCH_MILVUS_URI"] == "http://milvus:19530"
    assert services["milvus-init"]["depends_on"]["setup"]["condition"] == "service_completed_successfully"
