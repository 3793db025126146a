"""Static checks of the images and the compose file (no Docker engine needed), and the no-torch serving rule."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import yaml

from tests.tiny import ROOT

DOCKER = ROOT / "docker"


def instructions(dockerfile: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of the final stage, continuation lines joined."""
    text = re.sub(r"\\\n\s*", " ", dockerfile.read_text())
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    stages: list[list[tuple[str, str]]] = [[]]
    for line in lines:
        keyword, _, rest = line.partition(" ")
        if keyword.upper() == "FROM":
            stages.append([])
        stages[-1].append((keyword.upper(), rest.strip()))
    return stages[-1]


def values(dockerfile: Path, keyword: str) -> list[str]:
    return [rest for key, rest in instructions(dockerfile) if key == keyword]


def env_keys(dockerfile: Path) -> dict[str, str]:
    pairs = " ".join(values(dockerfile, "ENV"))
    return dict(re.findall(r"(\w+)=(\S+)", pairs))


def test_gpu_image_serves_like_the_cpu_image() -> None:
    cpu, gpu = DOCKER / "Dockerfile", DOCKER / "Dockerfile.gpu"
    for keyword in ("ENTRYPOINT", "CMD", "HEALTHCHECK", "USER", "EXPOSE", "VOLUME", "WORKDIR"):
        assert values(cpu, keyword) == values(gpu, keyword), keyword
    assert env_keys(cpu) == env_keys(gpu)
    assert "onnxruntime-gpu" in gpu.read_text() and "onnxruntime-gpu" not in cpu.read_text()


def test_images_follow_the_rules() -> None:
    for name in ("Dockerfile", "Dockerfile.gpu", "Dockerfile.train"):
        text = (DOCKER / name).read_text()
        assert text.splitlines()[0].startswith("#") and "syntax=" not in text  # a syntax line pulls a frontend
        assert "<<" not in text and "--mount" not in text  # no heredocs / RUN --mount (fail with plain build)
        assert re.search(r"^ARG BASE_IMAGE=", text, re.M) and "FROM ${BASE_IMAGE}" in text
        assert values(DOCKER / name, "USER") and values(DOCKER / name, "USER")[-1] != "root"
    cpu = DOCKER / "Dockerfile"
    assert "debian:bookworm-slim" in cpu.read_text()
    assert "/ready" in values(cpu, "HEALTHCHECK")[0]
    assert (
        env_keys(cpu)["SEARCH_MODEL_DIR"].startswith("/models/")
        and env_keys(cpu)["SEARCH_INDEX_DIR"] == "/indexes/demo"
    )
    assert "torch" not in " ".join(values(cpu, "RUN")).replace("find_spec('torch') is None", "")
    assert values(DOCKER / "Dockerfile.train", "ENTRYPOINT") == ['["python3", "training/train.py"]']


def test_compose_file() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    api = services["api"]
    assert api["build"]["dockerfile"] == "docker/Dockerfile" and "profiles" not in api
    # named volumes filled by the one-shot setup service: nothing needs building on the host; the index is writable
    assert api["volumes"] == [
        "${MODELS_VOLUME:-models}:/models:ro",
        "${INDEXES_VOLUME:-indexes}:/indexes:${INDEX_MODE:-rw}",
    ]
    assert {"models", "indexes"} <= set(compose["volumes"])
    setup = services["setup"]
    assert "profiles" not in setup and setup["build"]["dockerfile"] == "docker/Dockerfile.train"
    assert setup["entrypoint"] == ["bash", "docker/setup.sh"] and setup["restart"] == "no"
    assert setup["volumes"] == ["${MODELS_VOLUME:-models}:/models", "${INDEXES_VOLUME:-indexes}:/indexes"]
    for name in ("api", "api-gpu", "milvus-init"):
        assert services[name]["depends_on"]["setup"] == {"condition": "service_completed_successfully"}, name
    assert api["restart"] == "unless-stopped" and "/ready" in " ".join(api["healthcheck"]["test"])
    assert set(api["environment"]) >= {"SEARCH_MODEL_DIR", "SEARCH_INDEX_DIR", "SEARCH_RUNTIME"}
    gpu = services["api-gpu"]
    assert gpu["profiles"] == ["gpu"] and gpu["environment"] == api["environment"]
    assert gpu["deploy"]["resources"]["reservations"]["devices"][0]["capabilities"] == ["gpu"]
    train = services["train"]
    assert train["profiles"] == ["train"] and "./models:/work/models" in train["volumes"]
    from app.settings import Settings

    fields = {f"SEARCH_{name.upper()}" for name in Settings.model_fields}
    assert set(api["environment"]) <= fields  # compose only sets settings the service knows


def test_compose_scale_profile() -> None:
    """`docker compose --profile scale up`: Milvus Standalone as Milvus documents it (etcd, MinIO, milvus, each with
    a health check), the demo index copied in once, two stateless API replicas on it, nginx in front."""
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    assert "version" not in compose  # obsolete in the Compose specification; newer engines warn about it
    services = compose["services"]
    scale = {name for name, service in services.items() if "scale" in service.get("profiles", [])}
    assert scale == {"etcd", "minio", "milvus", "milvus-init", "api-scaled", "lb"}
    for name in scale:
        image = services[name]["image"]
        assert ":" in image and not image.endswith(":latest"), image  # pinned
        if name != "milvus-init":
            assert services[name]["healthcheck"]["test"][0] == "CMD" and services[name]["restart"] == "unless-stopped"
    assert services["milvus"]["image"].startswith("milvusdb/milvus:v2.5.")  # the server line of pymilvus 2.5
    assert services["milvus"]["command"] == ["milvus", "run", "standalone"]
    assert services["milvus"]["environment"]["ETCD_ENDPOINTS"] == "etcd:2379"
    assert services["milvus"]["depends_on"] == {
        "etcd": {"condition": "service_healthy"},
        "minio": {"condition": "service_healthy"},
    }
    init, api, lb = services["milvus-init"], services["api-scaled"], services["lb"]
    assert init["command"][:2] == ["copy", "--from"] and init["depends_on"]["milvus"]["condition"] == "service_healthy"
    assert api["depends_on"] == {"milvus-init": {"condition": "service_completed_successfully"}}
    assert api["deploy"]["replicas"] == 2 and "ports" not in api  # reached through the load balancer only
    assert not any(volume.startswith("./indexes") for volume in api["volumes"])  # no data in the API process
    settings = api["environment"]
    assert settings["SEARCH_STORE"] == "milvus" and settings["SEARCH_MILVUS_URI"] == "http://milvus:19530"
    assert settings["SEARCH_MODEL_DIR"] == services["api"]["environment"]["SEARCH_MODEL_DIR"]
    assert "/ready" in " ".join(api["healthcheck"]["test"])
    assert lb["depends_on"] == {"api-scaled": {"condition": "service_healthy"}}
    conf = (DOCKER / "nginx-scale.conf").read_text()
    assert re.search(r"server api-scaled:8000\b", conf) and "listen 8080;" in conf
    assert any(port.endswith(":8080") for port in lb["ports"])
    assert "./docker/nginx-scale.conf:/etc/nginx/conf.d/default.conf:ro" in lb["volumes"]
    from app.settings import Settings

    fields = {f"SEARCH_{name.upper()}" for name in Settings.model_fields}
    assert set(settings) <= fields


def test_serving_code_imports_without_torch() -> None:
    """The serving image has no torch: importing every app module must not need it."""
    code = (
        "import sys; sys.modules['torch'] = None; sys.modules['transformers'] = None\n"
        "import importlib, pkgutil, app\n"
        "for module in pkgutil.walk_packages(app.__path__, 'app.'): importlib.import_module(module.name)\n"
        "import app.main\n"
        "app.main.create_app()\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
