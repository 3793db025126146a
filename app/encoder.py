"""Text -> embedding with ONNX Runtime and a fast tokenizer (no torch): the encoder that serves and indexes."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import onnxruntime as ort
from tokenizers import Encoding, Tokenizer
from tqdm import tqdm

from app.manifest import ManifestError, ModelManifest, Variant, load_model_manifest
from app.text import model_input

log = logging.getLogger(__name__)

Runtime = Literal["auto", "cpu", "cuda"]
TextKind = Literal["query", "passage"]
Spin = Literal["never", "during_calls", "always"]  # when ONNX Runtime threads spin-wait for work
PLURAL: dict[str, str] = {"query": "queries", "passage": "passages"}
CUDA = "CUDAExecutionProvider"
CPU = "CPUExecutionProvider"


def choose_providers(runtime: Runtime) -> list[str]:
    """CUDA when asked for or when present (auto); CPU always as the fallback."""
    available = ort.get_available_providers()
    if runtime == "cuda" and CUDA not in available:
        raise RuntimeError(
            f"runtime=cuda but ONNX Runtime has no CUDA provider (available: {available}); "
            "install onnxruntime-gpu on a machine with a GPU, or use runtime=auto/cpu"
        )
    if runtime in ("cuda", "auto") and CUDA in available:
        return [CUDA, CPU]
    return [CPU]


def choose_variant(manifest: ModelManifest, use_int8: bool | None) -> Variant:
    """None means: the manifest's default, which export sets to int8 only when int8 passed its quality gate."""
    if use_int8 is None:
        return manifest.default_variant
    if use_int8 and not (manifest.onnx_int8 and manifest.int8_servable):
        raise ManifestError(
            f"int8 was requested but model '{manifest.name}' has no servable int8 export "
            f"(parity: {manifest.parity.get('int8', 'not measured')})"
        )
    return "int8" if use_int8 else "fp32"


@dataclass(frozen=True)
class Tokenized:
    input_ids: np.ndarray
    attention_mask: np.ndarray
    lengths: list[int]
    truncated: list[bool]


class OnnxEncoder:
    def __init__(
        self,
        model_dir: Path,
        variant: Variant | None = None,
        runtime: Runtime = "auto",
        intra_op_threads: int = 0,
        manifest: ModelManifest | None = None,
        spin_threads: Spin = "during_calls",
    ) -> None:
        self.model_dir = Path(model_dir)
        self.manifest = manifest or load_model_manifest(self.model_dir)
        self.variant: Variant = variant or self.manifest.default_variant
        onnx_path = self.manifest.onnx_path(self.model_dir, self.variant)
        tokenizer_path = self.model_dir / self.manifest.tokenizer_file
        for path in (onnx_path, tokenizer_path):
            if not path.is_file():
                raise ManifestError(f"model folder {self.model_dir} is missing {path.name} (expected {path})")
        self.tokenizer = Tokenizer.from_file(str(tokenizer_path))
        self.tokenizer.no_padding()
        self.tokenizer.no_truncation()
        self.pad_id = self._pad_id()
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # One model call at a time uses every core (intra-op); inter-op parallelism only adds contention for a
        # BERT graph. By default threads spin while a call needs them (a lone query 5.3 vs 6.4 ms) and stop when
        # it ends (force_spinning_stop), so no core burns between calls that the HTTP event loop and tokenizer
        # need (measured in docs/PERFORMANCE.md).
        options.intra_op_num_threads = intra_op_threads if intra_op_threads > 0 else (os.cpu_count() or 1)
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.add_session_config_entry("session.intra_op.allow_spinning", "0" if spin_threads == "never" else "1")
        if spin_threads == "during_calls":
            options.add_session_config_entry("session.force_spinning_stop", "1")
        self.session = ort.InferenceSession(str(onnx_path), options, providers=choose_providers(runtime))
        self.providers = self.session.get_providers()
        if runtime == "cuda" and CUDA not in self.providers:  # listed by onnxruntime-gpu, but no usable GPU/driver
            raise RuntimeError(
                f"runtime=cuda but ONNX Runtime could not start its CUDA provider (session runs on {self.providers}): "
                "check the GPU driver and CUDA/cuDNN libraries, or use runtime=auto/cpu"
            )
        log.info("loaded %s (%s) on %s", onnx_path, self.variant, self.providers)

    @property
    def dim(self) -> int:
        return self.manifest.embedding_dim

    def _pad_id(self) -> int:
        for token in ("<pad>", "[PAD]"):
            token_id = self.tokenizer.token_to_id(token)
            if token_id is not None:
                return token_id
        return 0

    def prefix(self, kind: TextKind) -> str:
        return self.manifest.query_prefix if kind == "query" else self.manifest.passage_prefix

    def tokenize(self, texts: Sequence[str], kind: TextKind) -> Tokenized:
        """Pad to the longest text; texts over max_length keep their first tokens and their closing specials.

        ``lengths`` are the full token counts before truncation, so callers can refuse or count long inputs.
        """
        encodings = self.encodings(texts, kind)
        limit = self.manifest.max_length
        ids, mask = self.pad([truncate_tokens(e, limit) for e in encodings])
        lengths = [len(e.ids) for e in encodings]
        return Tokenized(ids, mask, lengths, [n > limit for n in lengths])

    def pad(self, rows: Sequence[Sequence[int]]) -> tuple[np.ndarray, np.ndarray]:
        """Model inputs for token-id rows: right-padded ids and the attention mask."""
        width = max((len(r) for r in rows), default=0)
        ids = np.full((len(rows), width), self.pad_id, dtype=np.int64)
        mask = np.zeros((len(rows), width), dtype=np.int64)
        for row, token_ids in enumerate(rows):
            ids[row, : len(token_ids)] = token_ids
            mask[row, : len(token_ids)] = 1
        return ids, mask

    def token_lengths(self, texts: Sequence[str], kind: TextKind) -> list[int]:
        """Full token counts (prefix and special tokens included), without building model inputs."""
        return [len(e.ids) for e in self.encodings(texts, kind)]

    def encodings(self, texts: Sequence[str], kind: TextKind) -> list[Encoding]:
        """Untruncated tokenizer output for prefixed texts."""
        prefix = self.prefix(kind)
        # Strip: trailing whitespace changes some tokenizers' output (a lone "▁"), never the meaning.
        return self.tokenizer.encode_batch([model_input(prefix, text) for text in texts])

    def run(self, batch: Tokenized) -> np.ndarray:
        return self.run_padded(batch.input_ids, batch.attention_mask)

    def run_padded(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        (embeddings,) = self.session.run(None, {"input_ids": input_ids, "attention_mask": attention_mask})
        return np.ascontiguousarray(embeddings, dtype=np.float32)

    def encode(
        self,
        texts: Sequence[str],
        kind: TextKind,
        batch_size: int = 32,
        progress: bool = False,
    ) -> np.ndarray:
        """Embed texts; long inputs are sorted into batches of similar length so little time goes on padding."""
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        if not texts:
            return out
        order = np.argsort([len(text) for text in texts], kind="stable")[::-1]
        bar = tqdm(total=len(texts), desc=f"encoding {PLURAL[kind]}", unit="text", disable=not progress)
        for start in range(0, len(texts), batch_size):
            rows = order[start : start + batch_size]
            out[rows] = self.run(self.tokenize([texts[i] for i in rows], kind))
            bar.update(len(rows))
        bar.close()
        return out


def truncate_tokens(encoding: Encoding, limit: int) -> list[int]:
    """The first tokens of an over-long text, keeping its closing special tokens (e.g. ``</s>``)."""
    ids, special_mask = encoding.ids, encoding.special_tokens_mask
    if len(ids) <= limit:
        return ids
    tail = 0
    while tail < len(ids) and special_mask[len(ids) - 1 - tail]:
        tail += 1
    return ids[: limit - tail] + ids[len(ids) - tail :]
