"""The shared dual encoder in torch: any Hugging Face encoder (hub id or local folder) + mean pooling + L2 norm.

This is the one loader of the project: the default model, fine-tuning and export all go through it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm import tqdm
from transformers import AutoModel, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from app.text import model_input


def mean_pool(hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)


class SentenceEncoder(torch.nn.Module):
    """input_ids + attention_mask -> L2-normalised mean-pooled embeddings (what the ONNX graph computes too)."""

    def __init__(self, backbone: PreTrainedModel, normalize: bool = True) -> None:
        super().__init__()
        self.backbone = backbone
        self.normalize = normalize

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        hidden = self.backbone(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        pooled = mean_pool(hidden, attention_mask)
        return F.normalize(pooled, p=2, dim=-1) if self.normalize else pooled


@dataclass
class LoadedEncoder:
    encoder: SentenceEncoder
    tokenizer: PreTrainedTokenizerBase
    source: str
    max_length: int

    def tokenize(
        self, texts: Sequence[str], prefix: str = "", max_length: int | None = None
    ) -> dict[str, torch.Tensor]:
        # Strip: a trailing space would become a lone "▁" token in some tokenizers.
        return self.tokenizer(
            [model_input(prefix, text) for text in texts],
            padding=True,
            truncation=True,
            max_length=min(max_length or self.max_length, self.max_length),
            return_tensors="pt",
        )

    @torch.no_grad()
    def embed(
        self, texts: Sequence[str], prefix: str = "", batch_size: int = 32, progress: str | None = None
    ) -> torch.Tensor:
        """Embeddings in input order; batches hold texts of similar length so little time goes on padding."""
        self.encoder.eval()
        out = torch.empty(len(texts), self.encoder.backbone.config.hidden_size)
        device = next(self.encoder.parameters()).device
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]), reverse=True)
        starts = range(0, len(texts), batch_size)
        for start in tqdm(starts, desc=progress, disable=progress is None):
            rows = order[start : start + batch_size]
            batch = self.tokenize([texts[i] for i in rows], prefix)
            out[rows] = self.encoder(batch["input_ids"].to(device), batch["attention_mask"].to(device)).cpu()
        return out


def load_encoder(name_or_path: str | Path, max_length: int | None = None, normalize: bool = True) -> LoadedEncoder:
    """Load a hub id or a local folder. Eager attention keeps ONNX export and training numerics identical."""
    source = str(name_or_path)
    tokenizer = AutoTokenizer.from_pretrained(source)
    backbone = AutoModel.from_pretrained(source, attn_implementation="eager", add_pooling_layer=False)
    limit = max_length or min(
        int(getattr(tokenizer, "model_max_length", 512) or 512),
        int(getattr(backbone.config, "max_position_embeddings", 512)),
    )
    return LoadedEncoder(SentenceEncoder(backbone, normalize), tokenizer, source, limit)


def save_hf_folder(loaded: LoadedEncoder, out: Path) -> None:
    """Make ``out`` a complete HF folder (weights + fast tokenizer) unless it already is the source."""
    out.mkdir(parents=True, exist_ok=True)
    if Path(loaded.source).resolve() != out.resolve():
        loaded.encoder.backbone.save_pretrained(out)
        loaded.tokenizer.save_pretrained(out)
    if not (out / "tokenizer.json").is_file():
        raise ValueError(f"{loaded.source} has no fast tokenizer (tokenizer.json); the service needs one")
