"""LoRA on the tiny model: wrapping, saving in peft's layout, loading with plain peft, merging, exporting."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from peft import PeftModel
from safetensors import safe_open
from transformers import AutoModel

from app.encoder import OnnxEncoder
from app.manifest import sha256_file
from tests.training.test_export import small_sample
from tests.training.test_trainer import make_trainer, tiny_config
from training.config import ConfigError, build_config
from training.export import export_model
from training.lora import ADAPTER_CONFIG, ADAPTER_WEIGHTS, DEFAULT_TARGETS, merge_adapter, wrap_with_lora
from training.model import load_encoder

TEXTS = ["Super Bowl 50 was an American football game.", "Die Normandie liegt in Frankreich.", "长城"]
TARGETS = list(DEFAULT_TARGETS)


def trained_adapter(tiny_model: Path, out: Path, seed: int = 0, targets: list[str] = TARGETS) -> Path:
    """A LoRA adapter with non-zero updates (peft starts B at zero, or an embedding's A, which would make every check
    trivial)."""
    loaded = load_encoder(tiny_model)
    wrapped = wrap_with_lora(loaded.encoder.backbone, rank=4, alpha=8, dropout=0.0, targets=targets)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, parameter in wrapped.named_parameters():
            if "lora_B" in name or "lora_embedding_A" in name:
                parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.05)
    wrapped.save_pretrained(out)
    return out


def embed(model_dir_or_loaded, texts: list[str] = TEXTS) -> np.ndarray:  # type: ignore[no-untyped-def]
    loaded = load_encoder(model_dir_or_loaded) if isinstance(model_dir_or_loaded, Path) else model_dir_or_loaded
    return loaded.embed(texts).numpy()


def test_wrapping_trains_only_the_low_rank_updates_of_every_projection(tiny_model: Path) -> None:
    loaded = load_encoder(tiny_model)
    wrapped = wrap_with_lora(loaded.encoder.backbone, rank=4, alpha=8, dropout=0.0, targets=TARGETS)
    trainable = [name for name, p in wrapped.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in name for name in trainable)
    for layer in range(2):  # the tiny BERT's two layers, six projections each
        for module in ("attention.self.query", "attention.self.key", "attention.self.value"):
            assert any(f"layer.{layer}.{module}.lora_A" in name for name in trainable), (layer, module)
        for module in ("attention.output.dense", "intermediate.dense", "output.dense"):
            assert any(f"layer.{layer}.{module}.lora_B" in name for name in trainable), (layer, module)
    # hidden 32, intermediate 64, rank 4: q/k/v/attention-out 4*(32+32) each, intermediate and output 4*(32+64)
    assert sum(p.numel() for p in wrapped.parameters() if p.requires_grad) == 2 * (4 * 256 + 2 * 384)


def test_targets_that_match_nothing_are_an_error(tiny_model: Path) -> None:
    with pytest.raises(ValueError, match=r"match no module|not found"):
        wrap_with_lora(load_encoder(tiny_model).encoder.backbone, 4, 8, 0.0, ["no_such_projection"])


@pytest.mark.parametrize("targets", [TARGETS, [*TARGETS, "word_embeddings"]], ids=["projections", "and-embeddings"])
def test_adapter_in_peft_layout_loads_with_plain_peft_and_merges_exactly(
    tiny_model: Path, tmp_path: Path, targets: list[str]
) -> None:
    adapter = trained_adapter(tiny_model, tmp_path / "adapter", targets=targets)
    assert (adapter / ADAPTER_CONFIG).is_file() and (adapter / ADAPTER_WEIGHTS).is_file()
    assert json.loads((adapter / ADAPTER_CONFIG).read_text())["r"] == 4
    with safe_open(adapter / ADAPTER_WEIGHTS, "pt") as weights:
        names = weights.keys()  # a safetensors file is not iterable
    assert any("lora_embedding_A" in name for name in names) == ("word_embeddings" in targets)

    # what a peft user does: base model + adapter, unmerged
    with_adapter = load_encoder(tiny_model)
    with_adapter.encoder.backbone = PeftModel.from_pretrained(AutoModel.from_pretrained(tiny_model), adapter)
    unmerged = embed(with_adapter)
    merged_loaded = merge_adapter(load_encoder(tiny_model), adapter)
    assert not isinstance(merged_loaded.encoder.backbone, PeftModel)
    merged = embed(merged_loaded)
    np.testing.assert_allclose(merged, unmerged, atol=1e-5)
    assert np.abs(merged - embed(tiny_model)).max() > 1e-3  # the adapter changes the model


def test_merge_scale_interpolates_between_the_base_and_the_adapter(tiny_model: Path, tmp_path: Path) -> None:
    adapter = trained_adapter(tiny_model, tmp_path / "adapter")
    base = load_encoder(tiny_model).encoder.backbone.state_dict()
    full = merge_adapter(load_encoder(tiny_model), adapter).encoder.backbone.state_dict()
    zero = merge_adapter(load_encoder(tiny_model), adapter, scale=0.0).encoder.backbone.state_dict()
    half = merge_adapter(load_encoder(tiny_model), adapter, scale=0.5).encoder.backbone.state_dict()
    changed = [name for name in base if not torch.equal(base[name], full[name])]
    assert changed  # the adapter touches every targeted projection
    for name in base:
        assert torch.equal(zero[name], base[name]), name
        torch.testing.assert_close(half[name], (base[name] + full[name]) / 2, atol=1e-6, rtol=0)
    with pytest.raises(ValueError, match="within"):
        merge_adapter(load_encoder(tiny_model), adapter, scale=1.5)


def test_merging_a_folder_without_an_adapter_is_an_error(tiny_model: Path, tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="not a peft adapter folder"):
        merge_adapter(load_encoder(tiny_model), tmp_path)


def test_export_merges_the_adapter_and_records_both_checksums(tiny_model: Path, tmp_path: Path) -> None:
    adapter = trained_adapter(tiny_model, tmp_path / "adapter")
    out = tmp_path / "merged"
    manifest = export_model(
        tiny_model,
        out,
        "tiny-lora",
        query_prefix="",
        passage_prefix="",
        sample=small_sample(),
        adapter=adapter,
    )
    assert manifest.adapter["sha256"] == sha256_file(adapter / ADAPTER_WEIGHTS) and manifest.adapter["rank"] == 4
    assert manifest.adapter["scale"] == 1.0
    assert manifest.base_model["sha256"] == sha256_file(tiny_model / "model.safetensors")
    onnx = OnnxEncoder(out, "fp32", runtime="cpu").encode(TEXTS, "passage")
    with_adapter = load_encoder(tiny_model)
    with_adapter.encoder.backbone = PeftModel.from_pretrained(with_adapter.encoder.backbone, adapter)
    np.testing.assert_allclose(onnx, embed(with_adapter), atol=1e-5)


def test_export_refuses_to_merge_into_the_base_folder(tiny_model: Path, tmp_path: Path) -> None:
    adapter = trained_adapter(tiny_model, tmp_path / "adapter")
    with pytest.raises(ValueError, match="overwrite the base"):
        export_model(tiny_model, tiny_model, sample=small_sample(), adapter=adapter)


def test_lora_run_writes_the_adapter_and_the_merged_model(
    tmp_path: Path, tiny_model: Path, parallel_jsonl: Path
) -> None:
    from training.train import finish

    adapter_dir = tmp_path / "shipped"
    config = tiny_config(
        tmp_path,
        tiny_model,
        parallel_jsonl,
        lora_rank=4,
        lora_alpha=8.0,
        lr=3e-3,
        adapter_dir=str(adapter_dir),
        adapter_base_name="org/tiny-bert",
    )
    trainer = make_trainer(config, parallel_jsonl)
    out = finish(config, trainer, trainer.fit())
    for folder in (out / "adapter", adapter_dir):
        assert sorted(p.name for p in folder.iterdir()) == [ADAPTER_CONFIG, ADAPTER_WEIGHTS]
        adapter_config = json.loads((folder / ADAPTER_CONFIG).read_text(encoding="utf-8"))
        assert adapter_config["base_model_name_or_path"] == "org/tiny-bert" and adapter_config["r"] == 4
    assert sha256_file(out / "adapter" / ADAPTER_WEIGHTS) == sha256_file(adapter_dir / ADAPTER_WEIGHTS)
    merged = embed(out)  # a plain HF folder: base + adapter folded in
    np.testing.assert_allclose(merged, embed(merge_adapter(load_encoder(tiny_model), adapter_dir)), atol=1e-6)


def test_lora_settings_that_do_not_fit_together_are_refused() -> None:
    with pytest.raises(ConfigError, match="freeze_embeddings true"):
        build_config(None, {"lora_rank": 8, "freeze_embeddings": False})
    with pytest.raises(ConfigError, match="only for LoRA runs"):
        build_config(None, {"adapter_dir": "models/adapters/x"})
    with pytest.raises(ConfigError, match="adapter_base_name is only for LoRA runs"):
        build_config(None, {"adapter_base_name": "org/model"})
    with pytest.raises(ConfigError, match="lora_rank must be"):
        build_config(None, {"lora_rank": -1})
    config = build_config(None, {"lora_rank": "16", "lora_targets": "query,value"})
    assert config.uses_lora and config.lora_targets == ["query", "value"]
