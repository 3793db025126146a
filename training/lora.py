"""LoRA adapters (through peft) on the encoder's attention and feed-forward projections: wrap, load, merge.

An adapter is saved in peft's own layout (``adapter_config.json`` + ``adapter_model.safetensors``), so
``peft.PeftModel.from_pretrained(AutoModel.from_pretrained(base), adapter_dir)`` loads it outside this project.
"""

from __future__ import annotations

import json
from pathlib import Path

from peft import LoraConfig, PeftModel, get_peft_model
from peft.tuners.lora import LoraLayer
from transformers import PreTrainedModel

from training.model import LoadedEncoder

ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
# BERT-type module names: attention.self.{query,key,value}, attention.output.dense, intermediate.dense and
# output.dense (peft matches name suffixes, so "output.dense" is both output projections). Not plain "dense": that
# would also match pooler.dense, which a peft user's AutoModel has and this project's encoder does not.
DEFAULT_TARGETS = ("query", "key", "value", "output.dense", "intermediate.dense")


def wrap_with_lora(
    backbone: PreTrainedModel, rank: int, alpha: float, dropout: float, targets: list[str] | tuple[str, ...]
) -> PeftModel:
    """Freeze the backbone and add trainable rank-``rank`` updates to every targeted Linear of every layer."""
    if rank <= 0:
        raise ValueError(f"LoRA rank must be positive, got {rank}")
    config = LoraConfig(r=rank, lora_alpha=alpha, lora_dropout=dropout, target_modules=list(targets), bias="none")
    wrapped = get_peft_model(backbone, config)
    if not any("lora_" in name for name, _ in wrapped.named_parameters()):
        raise ValueError(f"LoRA targets {list(targets)} match no module of {type(backbone).__name__}")
    return wrapped


def is_adapter_dir(path: str | Path) -> bool:
    return (Path(path) / ADAPTER_CONFIG).is_file() and (Path(path) / ADAPTER_WEIGHTS).is_file()


def merge_adapter(loaded: LoadedEncoder, adapter_dir: str | Path, scale: float = 1.0) -> LoadedEncoder:
    """Fold the adapter's low-rank updates into the base weights in place: a plain model, no peft at run time.

    ``scale`` interpolates between the base (0) and the trained adapter (1): W = W_base + scale * ΔW. Below 1 it
    trades part of the cross-language gain for the base's own behaviour within one language (docs/RESULTS.md).
    """
    adapter_dir = Path(adapter_dir)
    if not is_adapter_dir(adapter_dir):
        raise FileNotFoundError(f"{adapter_dir} is not a peft adapter folder ({ADAPTER_CONFIG} + {ADAPTER_WEIGHTS})")
    if not 0.0 <= scale <= 1.0:
        raise ValueError(f"merge scale must be within [0, 1], got {scale}")
    with_adapter = PeftModel.from_pretrained(loaded.encoder.backbone, str(adapter_dir), is_trainable=False)
    for module in with_adapter.modules():
        if isinstance(module, LoraLayer):
            for name in module.scaling:
                module.set_scale(name, scale)
    loaded.encoder.backbone = with_adapter.merge_and_unload()
    return loaded


def adapter_record(adapter_dir: str | Path, scale: float = 1.0) -> dict:
    """What a manifest records of an adapter: where it came from, its checksum, its shape and the merge scale."""
    from app.manifest import sha256_file  # pydantic: not needed to train (GPU machines may lack it)

    adapter_dir = Path(adapter_dir)
    config = json.loads((adapter_dir / ADAPTER_CONFIG).read_text(encoding="utf-8"))
    return {
        "path": str(adapter_dir),
        "sha256": sha256_file(adapter_dir / ADAPTER_WEIGHTS),
        "rank": config.get("r"),
        "alpha": config.get("lora_alpha"),
        "targets": sorted(config.get("target_modules") or []),
        "scale": scale,
    }
