"""The shipped adapter, merged at the shipped scale and exported again, must still give the figures recorded for the
served default (slow)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from app.manifest import load_model_manifest, sha256_file
from tests.conftest import DEFAULT_ADAPTER_DIR
from tests.training.test_default_model import TEXTS
from training.default_model import DEFAULT_MERGE_SCALE

pytestmark = pytest.mark.slow

REFERENCE = DEFAULT_ADAPTER_DIR / "reference_slice.json"
# Recorded and re-measured on this 2-core machine the figures are equal to the 4th decimal (same code, same
# floats). 0.005 leaves room for another CPU's float rounding (near-ties can swap ranks) and is far below what a
# broken merge or export does: without the adapter the slice's multi mAP falls by ~0.3, and the three seeds of the
# recipe differ from each other by up to ~0.005 on the full test set.
TOLERANCE = {"mono_map": 0.005, "cross_map": 0.005, "multi_map": 0.005, "rank_distance": 5.0}


def test_the_served_default_is_the_shipped_adapter_on_the_rebuilt_base(default_model: Path, base_model: Path) -> None:
    manifest = load_model_manifest(default_model)
    assert manifest.adapter["sha256"] == sha256_file(DEFAULT_ADAPTER_DIR / "adapter_model.safetensors")
    assert manifest.base_model["sha256"] == sha256_file(base_model / "model.safetensors")
    assert manifest.adapter["rank"] == 16 and manifest.adapter["scale"] == DEFAULT_MERGE_SCALE
    # at scale 0.5 the int8 graph loses dev multi mAP to fp32 whatever its gate says: fp32 is served
    assert manifest.default_variant == "fp32" and manifest.onnx_int8 is not None
    assert manifest.parity["fp32"]["max_abs_diff"] <= 1e-4


def test_merged_export_reproduces_the_recorded_slice_figures(base_model: Path, tmp_path: Path) -> None:
    from experiments.default_model_report import slice_figures
    from training.evaluate import OnnxEmbedder
    from training.export import export_model

    export_model(
        base_model,
        tmp_path / "merged",
        name="merged-again",
        adapter=DEFAULT_ADAPTER_DIR,
        adapter_scale=DEFAULT_MERGE_SCALE,
        int8=False,
    )
    reference = json.loads(REFERENCE.read_text(encoding="utf-8"))
    got = slice_figures(OnnxEmbedder(tmp_path / "merged", "fp32"))
    assert got["articles"] == reference["articles"] and got["n_queries"] == reference["n_queries"]
    for key, tolerance in TOLERANCE.items():
        assert abs(got[key] - reference[key]) <= tolerance, (key, got[key], reference[key])


def test_merged_onnx_matches_the_adapter_in_torch(default_model: Path, base_model: Path) -> None:
    """What peft users get (base + adapter, unmerged, in torch, each LoRA layer at the shipped scale) is what the
    service computes."""
    from peft import PeftModel
    from peft.tuners.lora import LoraLayer

    from app.encoder import OnnxEncoder
    from training.model import load_encoder

    loaded = load_encoder(base_model)
    loaded.encoder.backbone = PeftModel.from_pretrained(loaded.encoder.backbone, str(DEFAULT_ADAPTER_DIR))
    for module in loaded.encoder.backbone.modules():
        if isinstance(module, LoraLayer):
            module.set_scale("default", DEFAULT_MERGE_SCALE)
    for kind in ("query", "passage"):
        torch_embeddings = loaded.embed(TEXTS, prefix=f"{kind}: ").numpy()
        onnx_embeddings = OnnxEncoder(default_model, "fp32", runtime="cpu").encode(TEXTS, kind)
        assert np.abs(onnx_embeddings - torch_embeddings).max() <= 1e-4, kind
