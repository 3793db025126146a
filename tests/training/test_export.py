from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from app.manifest import load_model_manifest
from tests.conftest import TINY_MAX_LENGTH
from tests.tiny import build_tiny_hf_model, demo_records
from training.export import GateSample, ParityError, export_model


def small_sample() -> GateSample:
    return GateSample([r["text"][:60] for r in demo_records(limit=10)], [r["text"] for r in demo_records()][::60])


def test_manifest_records_the_contract_and_parity(tiny_model: Path) -> None:
    manifest = load_model_manifest(tiny_model)
    assert manifest.name == "tiny-bert" and manifest.embedding_dim == 32
    assert manifest.pooling == "mean" and manifest.normalize
    assert manifest.max_length == TINY_MAX_LENGTH
    assert manifest.parity["fp32"]["max_abs_diff"] <= 1e-4
    gate = manifest.parity["int8"]
    assert 0 <= gate["top10_overlap"] <= 1 and gate["servable"] == (gate["top10_overlap"] >= 0.9)
    assert manifest.default_variant == ("int8" if gate["servable"] else "fp32")
    assert (tiny_model / "onnx" / "model.onnx").is_file() and (tiny_model / "onnx" / "model.int8.onnx").is_file()
    assert len(manifest.fingerprint) == 64
    assert "ORT_ENABLE_ALL" in " ".join(manifest.optimizations["fp32"])
    assert "quantize_dynamic" in manifest.optimizations["int8"][0] and manifest.optimizations["not_applied"]


def test_int8_below_the_bar_is_not_the_default(tmp_path: Path) -> None:
    folder = build_tiny_hf_model(tmp_path / "m")
    manifest = export_model(folder, max_length=32, sample=small_sample(), min_top10_overlap=1.01)
    assert not manifest.int8_servable and manifest.default_variant == "fp32"
    assert manifest.parity["int8"]["servable"] is False


def test_parity_failure_refuses_the_export(tmp_path: Path) -> None:
    folder = build_tiny_hf_model(tmp_path / "m")
    with pytest.raises(ParityError, match="differs from torch"):
        export_model(folder, max_length=32, sample=small_sample(), max_abs_diff=-1.0, int8=False)
    assert not (folder / "manifest.json").exists()


def test_export_to_a_new_folder_copies_a_complete_hf_model(tiny_model: Path, tmp_path: Path) -> None:
    source = tmp_path / "src"
    shutil.copytree(tiny_model, source, ignore=shutil.ignore_patterns("onnx", "manifest.json"))
    out = tmp_path / "exported"
    manifest = export_model(source, out, name="copy", max_length=32, sample=small_sample(), int8=False)
    assert manifest.source == str(source) and manifest.onnx_int8 is None
    for name in ("config.json", "model.safetensors", "tokenizer.json", "manifest.json", "onnx/model.onnx"):
        assert (out / name).is_file(), name


def test_int8_keeps_the_named_matmuls_in_fp32(tiny_model: Path, tmp_path: Path) -> None:
    import onnx

    from training.export import export_int8

    fp32_path = tiny_model / "onnx" / "model.onnx"
    nodes = onnx.load(str(fp32_path)).graph.node
    ffn_up = [n.name for n in nodes if "intermediate/" in n.name and n.op_type == "MatMul"]
    excluded = export_int8(fp32_path, tmp_path / "int8.onnx", fp32_layers=(), fp32_name_parts=("intermediate/",))
    assert ffn_up and sorted(excluded) == sorted(ffn_up)
    int8_graph = onnx.load(str(tmp_path / "int8.onnx")).graph
    still_fp32 = {n.name for n in int8_graph.node if n.op_type == "MatMul"}
    assert set(ffn_up) <= still_fp32  # kept as float MatMuls ...
    assert any(n.op_type == "MatMulInteger" for n in int8_graph.node)  # ... while the other projections are int8
