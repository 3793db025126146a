from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import onnxruntime as ort
import pytest

from app.encoder import CPU, CUDA, OnnxEncoder, choose_providers, choose_variant, truncate_tokens
from app.manifest import ManifestError, load_model_manifest
from tests.conftest import TINY_MAX_LENGTH


def test_auto_runtime_uses_cuda_only_when_present() -> None:
    providers = choose_providers("auto")
    assert providers[-1] == CPU
    assert (CUDA in providers) == (CUDA in ort.get_available_providers())
    assert choose_providers("cpu") == [CPU]


@pytest.mark.skipif(CUDA in ort.get_available_providers(), reason="this machine has CUDA")
def test_cuda_runtime_without_cuda_is_a_clear_error() -> None:
    with pytest.raises(RuntimeError, match="no CUDA provider"):
        choose_providers("cuda")


def test_a_gpu_build_selects_cuda_first(monkeypatch: pytest.MonkeyPatch) -> None:
    """What the GPU image (onnxruntime-gpu) lists; auto and cuda put CUDA first with CPU as the fallback."""
    monkeypatch.setattr(ort, "get_available_providers", lambda: [CUDA, CPU])
    assert choose_providers("auto") == [CUDA, CPU] and choose_providers("cuda") == [CUDA, CPU]
    assert choose_providers("cpu") == [CPU]


@pytest.mark.skipif(CUDA in ort.get_available_providers(), reason="this machine has CUDA")
def test_cuda_listed_but_unusable_is_a_clear_error(tiny_model: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """onnxruntime-gpu lists CUDA even without a GPU; its session then falls back to the CPU. runtime=cuda refuses."""
    monkeypatch.setattr(ort, "get_available_providers", lambda: [CUDA, CPU])
    with pytest.raises(RuntimeError, match="could not start its CUDA provider"):
        OnnxEncoder(tiny_model, runtime="cuda")
    assert OnnxEncoder(tiny_model, runtime="auto").providers == [CPU]  # auto just runs on the CPU


def test_truncate_keeps_closing_special_tokens() -> None:
    long = SimpleNamespace(ids=[101, 5, 6, 7, 8, 102], special_tokens_mask=[1, 0, 0, 0, 0, 1])
    assert truncate_tokens(long, 4) == [101, 5, 6, 102]  # type: ignore[arg-type]
    short = SimpleNamespace(ids=[1, 2, 3], special_tokens_mask=[1, 0, 1])
    assert truncate_tokens(short, 5) == [1, 2, 3]  # type: ignore[arg-type]


def test_variant_follows_the_gate(tiny_model: Path) -> None:
    manifest = load_model_manifest(tiny_model)
    assert choose_variant(manifest, None) == manifest.default_variant
    assert choose_variant(manifest, False) == "fp32"
    blocked = manifest.model_copy(update={"int8_servable": False})
    with pytest.raises(ManifestError, match="no servable int8"):
        choose_variant(blocked, True)


def test_encode_is_normalised_and_order_preserving(tiny_model: Path) -> None:
    encoder = OnnxEncoder(tiny_model, "fp32", runtime="cpu")
    texts = ["short", "a much longer text " * 5, "medium length text here"]
    together = encoder.encode(texts, "passage", batch_size=2)
    alone = np.stack([encoder.encode([t], "passage")[0] for t in texts])
    np.testing.assert_allclose(np.linalg.norm(together, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(together, alone, atol=1e-5)  # fp32 does not depend on batch or padding


def test_tokenize_reports_full_length_and_truncates(tiny_model: Path) -> None:
    encoder = OnnxEncoder(tiny_model, "fp32", runtime="cpu")
    batch = encoder.tokenize(["word " * 200, "two words"], "query")
    assert batch.lengths[0] > TINY_MAX_LENGTH and batch.truncated == [True, False]
    assert batch.input_ids.shape == (2, TINY_MAX_LENGTH)
    assert batch.attention_mask[1].sum() == batch.lengths[1]


def test_missing_onnx_file_names_the_path(tiny_model: Path, tmp_path: Path) -> None:
    (tmp_path / "manifest.json").write_text((tiny_model / "manifest.json").read_text())
    with pytest.raises(ManifestError, match=r"missing model\.onnx"):
        OnnxEncoder(tmp_path, "fp32", runtime="cpu")


def test_threads_spin_during_a_call_and_stop_after_it(tiny_model: Path) -> None:
    """Spinning during a call makes a lone query faster; stopping after it keeps idle cores free for HTTP
    (docs/PERFORMANCE.md); `spin_threads` can keep them spinning between calls too, or never let them spin."""
    default = OnnxEncoder(tiny_model, runtime="cpu").session.get_session_options()
    assert default.get_session_config_entry("session.intra_op.allow_spinning") == "1"
    assert default.get_session_config_entry("session.force_spinning_stop") == "1"
    spinning = OnnxEncoder(tiny_model, runtime="cpu", spin_threads="always").session.get_session_options()
    with pytest.raises(RuntimeError, match="does not have configuration with key"):
        spinning.get_session_config_entry("session.force_spinning_stop")
    never = OnnxEncoder(tiny_model, runtime="cpu", spin_threads="never").session.get_session_options()
    assert never.get_session_config_entry("session.intra_op.allow_spinning") == "0"
