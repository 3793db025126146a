"""Export an encoder (hub id or folder) to ONNX fp32 + int8, with parity gates and the model manifest.

    python -m training.export --model models/multilingual-e5-small

Writes into the model folder (``--out``, default: the source folder):
- ``onnx/model.onnx``: fp32 graph computing L2-normalised mean-pooled embeddings from input_ids + attention_mask;
  refused when its max abs diff to torch exceeds ``--max-abs-diff`` (1e-4).
- ``onnx/model.int8.onnx``: dynamic int8 (per-channel MatMul weights; the FFN down-projections of layers 3-5, where
  ORT's quantisation does most of its damage to cross-lingual alignment, stay fp32). It becomes the service default
  only if it keeps top-10 retrieval overlap >= ``--min-top10-overlap`` with fp32 on a multilingual sample.
- ``manifest.json``: dim, pooling, prefixes, max length, source, fingerprint and the parity figures; with
  ``--adapter``, the base model's weights checksum and the adapter's, and the scale it was merged at.

    python -m training.export --model models/multilingual-e5-small --adapter models/adapters/<name> \
        --out models/<served-name>
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import onnx
import torch

from app.encoder import OnnxEncoder
from app.jsonl import json_objects
from app.manifest import MODEL_MANIFEST, ModelManifest, sha256_file, write_json_atomic
from app.text import DEFAULT_PASSAGE_PREFIX, DEFAULT_QUERY_PREFIX
from training.lora import adapter_record, merge_adapter
from training.model import LoadedEncoder, load_encoder, save_hf_folder

log = logging.getLogger("training.export")

DEMO_DIR = Path(__file__).resolve().parent.parent / "data" / "demo"
OPSET = 17
GATE_QUERIES, GATE_PASSAGES = 100, 600  # the int8 gate's sample: English queries x passages in all languages


class ParityError(RuntimeError):
    """The exported graph does not compute what the torch model computes."""


@dataclass
class GateSample:
    """Queries in one language against passages in several: what the int8 gate and the fp32 check run on."""

    queries: list[str]
    passages: list[str]

    @classmethod
    def from_files(
        cls, queries_file: Path, corpus_file: Path, query_lang: str, n_queries: int, n_passages: int
    ) -> GateSample:
        records = json_objects(queries_file, ValueError, ("query", "lang"))
        queries = [r["query"] for _, r in records if r["lang"] == query_lang][:n_queries]
        passages = [r["text"] for _, r in json_objects(corpus_file, ValueError, ("text",))]
        # Take passages evenly across the file so every language of the corpus is in the sample.
        step = max(1, len(passages) // n_passages)
        passages = passages[::step][:n_passages]
        if not queries or not passages:
            raise ValueError(f"empty gate sample: {len(queries)} '{query_lang}' queries, {len(passages)} passages")
        return cls(queries, passages)


def export_fp32(loaded: LoadedEncoder, path: Path, opset: int = OPSET) -> None:
    loaded.encoder.eval()
    sample = loaded.tokenize(["query: a short example", "passage: a slightly longer example text"])
    tmp = path.with_name(path.name + ".tmp")
    path.parent.mkdir(parents=True, exist_ok=True)
    with torch.no_grad():
        torch.onnx.export(
            loaded.encoder,
            (sample["input_ids"], sample["attention_mask"]),
            str(tmp),
            input_names=["input_ids", "attention_mask"],
            output_names=["sentence_embedding"],
            dynamic_axes={
                "input_ids": {0: "batch", 1: "sequence"},
                "attention_mask": {0: "batch", 1: "sequence"},
                "sentence_embedding": {0: "batch"},
            },
            opset_version=opset,
            dynamo=False,
        )
    onnx.checker.check_model(str(tmp))
    tmp.replace(path)


# FFN down-projections kept fp32: chosen by a scan on the dev articles, most of fp32's quality at little cost in
# speed (docs/PERFORMANCE.md, int8 quality).
INT8_FP32_LAYERS = (3, 4, 5)


def int8_excluded_nodes(
    fp32_path: Path, layers: tuple[int, ...] = INT8_FP32_LAYERS, name_parts: tuple[str, ...] = ()
) -> list[str]:
    """The FFN down-projection MatMuls (``layer.N/output/dense``) of the given layers, and every MatMul whose node
    name contains one of ``name_parts`` (for diagnostics: experiments/int8_smoothing.py)."""
    graph = onnx.load(str(fp32_path), load_external_data=False).graph
    wanted = {f"layer.{n}/output/dense/" for n in layers}

    def kept_fp32(name: str) -> bool:
        ffn_down = "/attention/" not in name and any(w in name for w in wanted)
        return ffn_down or any(part in name for part in name_parts)

    return [node.name for node in graph.node if node.op_type == "MatMul" and kept_fp32(node.name)]


def export_int8(
    fp32_path: Path, path: Path, fp32_layers: tuple[int, ...] = INT8_FP32_LAYERS, fp32_name_parts: tuple[str, ...] = ()
) -> list[str]:
    """Dynamic int8 of the MatMuls but those int8_excluded_nodes names, which stay fp32. Returns those nodes."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    excluded = int8_excluded_nodes(fp32_path, fp32_layers, fp32_name_parts)
    tmp = path.with_name(path.name + ".tmp")
    quantize_dynamic(
        fp32_path,
        tmp,
        op_types_to_quantize=["MatMul"],
        per_channel=True,
        weight_type=QuantType.QInt8,
        nodes_to_exclude=excluded,
    )
    tmp.replace(path)
    return excluded


def fp32_parity(loaded: LoadedEncoder, encoder: OnnxEncoder, texts: list[str]) -> float:
    """Max abs diff between torch and ORT embeddings of the same padded batches."""
    worst = 0.0
    with torch.no_grad():
        for start in range(0, len(texts), 16):
            batch = encoder.tokenize(texts[start : start + 16], "passage")
            reference = loaded.encoder(torch.from_numpy(batch.input_ids), torch.from_numpy(batch.attention_mask))
            worst = max(worst, float(np.abs(encoder.run(batch) - reference.numpy()).max()))
    return worst


def top10_overlap(fp32: OnnxEncoder, int8: OnnxEncoder, sample: GateSample) -> dict[str, float]:
    """Mean |top10(fp32) ∩ top10(int8)| / 10 over the sample queries, plus embedding agreement."""
    k = min(10, len(sample.passages))
    ref_q, ref_p = fp32.encode(sample.queries, "query"), fp32.encode(sample.passages, "passage")
    new_q, new_p = int8.encode(sample.queries, "query"), int8.encode(sample.passages, "passage")
    ref_top = np.argsort(-(ref_q @ ref_p.T), axis=1)[:, :k]
    new_top = np.argsort(-(new_q @ new_p.T), axis=1)[:, :k]
    overlap = np.mean([len(set(a) & set(b)) / k for a, b in zip(ref_top, new_top, strict=True)])
    return {
        "top10_overlap": round(float(overlap), 4),
        "top1_agreement": round(float(np.mean(ref_top[:, 0] == new_top[:, 0])), 4),
        "min_passage_cosine": round(float((ref_p * new_p).sum(axis=1).min()), 5),
        "n_queries": len(sample.queries),
        "n_passages": len(sample.passages),
    }


def export_model(
    source: str | Path,
    out: Path | None = None,
    name: str | None = None,
    query_prefix: str = DEFAULT_QUERY_PREFIX,
    passage_prefix: str = DEFAULT_PASSAGE_PREFIX,
    max_length: int | None = None,
    sample: GateSample | None = None,
    max_abs_diff: float = 1e-4,
    min_top10_overlap: float = 0.9,
    int8: bool = True,
    int8_fp32_layers: tuple[int, ...] = INT8_FP32_LAYERS,
    adapter: Path | None = None,
    adapter_scale: float = 1.0,
    int8_by_default: bool = True,
) -> ModelManifest:
    """Export ``source`` (or, with ``adapter``, ``source`` with that LoRA adapter merged in at ``adapter_scale``)
    into ``out``. The int8 graph is served by default when it passes its gate, unless ``int8_by_default`` is False
    (then fp32 is, and int8 stays one setting away when it passed)."""
    started = time.perf_counter()
    out = Path(out or source)
    loaded = load_encoder(source, max_length=max_length)
    base_record = adapter_info = None
    if adapter is not None:
        if Path(source).resolve() == out.resolve():
            raise ValueError(f"merging an adapter would overwrite the base model in {out}; choose another --out")
        base_weights = Path(source) / "model.safetensors"
        base_record = {"source": str(source), "sha256": sha256_file(base_weights) if base_weights.is_file() else None}
        adapter_info = adapter_record(adapter, adapter_scale)
        merge_adapter(loaded, adapter, adapter_scale)
        log.info(
            "merged adapter %s (sha256 %s) into %s at scale %g",
            adapter,
            adapter_info["sha256"][:12],
            source,
            adapter_scale,
        )
    save_hf_folder(loaded, out)
    sample = sample or GateSample.from_files(
        DEMO_DIR / "queries.jsonl", DEMO_DIR / "corpus.jsonl", "en", GATE_QUERIES, GATE_PASSAGES
    )

    fp32_path = out / "onnx" / "model.onnx"
    log.info("exporting fp32 ONNX to %s", fp32_path)
    export_fp32(loaded, fp32_path)
    manifest = ModelManifest(
        name=name or out.name,
        source=loaded.source,
        fingerprint=sha256_file(fp32_path),
        embedding_dim=int(loaded.encoder.backbone.config.hidden_size),
        normalize=loaded.encoder.normalize,
        query_prefix=query_prefix,
        passage_prefix=passage_prefix,
        max_length=loaded.max_length,
        onnx_int8=None,
        created_at=datetime.now(UTC).isoformat(timespec="seconds"),
        base_model=base_record,
        adapter=adapter_info,
    )
    fp32 = OnnxEncoder(out, "fp32", runtime="cpu", manifest=manifest)
    parity_texts = sample.queries[:16] + sample.passages[:: max(1, len(sample.passages) // 48)]
    diff = fp32_parity(loaded, fp32, parity_texts)
    manifest.parity["fp32"] = {"max_abs_diff": diff, "threshold": max_abs_diff, "n_texts": len(parity_texts)}
    log.info("fp32 parity: max abs diff %.3g (threshold %.0e)", diff, max_abs_diff)
    if not diff <= max_abs_diff:
        raise ParityError(f"ONNX fp32 differs from torch by {diff:.3g} > {max_abs_diff:.0e}; export refused")

    if int8:
        int8_path = out / "onnx" / "model.int8.onnx"
        log.info("quantising to int8: %s", int8_path)
        excluded = export_int8(fp32_path, int8_path, int8_fp32_layers)
        manifest.onnx_int8 = str(int8_path.relative_to(out))
        figures = top10_overlap(fp32, OnnxEncoder(out, "int8", runtime="cpu", manifest=manifest), sample)
        manifest.int8_servable = figures["top10_overlap"] >= min_top10_overlap
        manifest.parity["int8"] = {
            **figures,
            "threshold": min_top10_overlap,
            "servable": manifest.int8_servable,
            "fp32_nodes": len(excluded),
            "method": "quantize_dynamic, MatMul only, per-channel QInt8",
            "fp32_ffn_down_projection_layers": list(int8_fp32_layers),
        }
        log.info("int8 gate: %s -> %s", figures, "servable" if manifest.int8_servable else "NOT servable")
    manifest.optimizations = {
        "fp32": [f"torch.onnx.export, opset {OPSET}", "ONNX Runtime ORT_ENABLE_ALL when a session opens"],
        "not_applied": {
            "onnxruntime.transformers BERT fusions (Attention, SkipLayerNormalization, BiasGelu)": "measured slower "
            "on CPU in fp32 and as the base of int8 (docs/PERFORMANCE.md)",
        },
    }
    if manifest.onnx_int8 is not None:
        manifest.optimizations["int8"] = [
            "quantize_dynamic from the fp32 graph: MatMul, per-channel QInt8",
            "ONNX Runtime ORT_ENABLE_ALL when a session opens",
        ]
    manifest.default_variant = "int8" if manifest.int8_servable and int8_by_default else "fp32"
    manifest.parity["export_seconds"] = round(time.perf_counter() - started, 1)
    write_json_atomic(out / MODEL_MANIFEST, manifest)
    log.info("wrote %s (default variant %s)", out / MODEL_MANIFEST, manifest.default_variant)
    return manifest


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Export an encoder to ONNX fp32 + int8 with parity gates.")
    parser.add_argument("--model", required=True, help="hub id or local HF folder (the base, with --adapter)")
    parser.add_argument("--adapter", type=Path, help="peft LoRA adapter folder to merge into --model before export")
    parser.add_argument(
        "--adapter-scale",
        type=float,
        default=1.0,
        help="merge W_base + scale * ΔW (0 = the base, 1 = the adapter as trained)",
    )
    parser.add_argument("--out", type=Path, help="model folder to write (default: --model when it is a folder)")
    parser.add_argument("--name", help="model name in the manifest (default: folder name)")
    parser.add_argument("--query-prefix", default=DEFAULT_QUERY_PREFIX)
    parser.add_argument("--passage-prefix", default=DEFAULT_PASSAGE_PREFIX)
    parser.add_argument("--max-length", type=int)
    parser.add_argument("--max-abs-diff", type=float, default=1e-4)
    parser.add_argument("--min-top10-overlap", type=float, default=0.9)
    parser.add_argument("--no-int8", action="store_true", help="skip the int8 export")
    parser.add_argument(
        "--fp32-by-default", action="store_true", help="serve fp32 by default even when int8 passes its gate"
    )
    parser.add_argument(
        "--int8-fp32-layers",
        type=int,
        nargs="*",
        default=list(INT8_FP32_LAYERS),
        help="layers whose FFN down-projection stays fp32 in the int8 model",
    )
    parser.add_argument("--gate-queries", type=Path, default=DEMO_DIR / "queries.jsonl")
    parser.add_argument("--gate-corpus", type=Path, default=DEMO_DIR / "corpus.jsonl")
    parser.add_argument("--gate-query-lang", default="en")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    for name in ("training", "app"):  # onnxruntime.quantization logs every node at INFO on the root logger
        logging.getLogger(name).setLevel(logging.INFO)
    if args.out is None and not Path(args.model).is_dir():
        parser.error("--out is required when --model is a hub id")
    if args.adapter is not None and args.out is None:
        parser.error("--out is required with --adapter (the merged model must not overwrite its base)")
    sample = GateSample.from_files(
        args.gate_queries, args.gate_corpus, args.gate_query_lang, GATE_QUERIES, GATE_PASSAGES
    )
    try:
        manifest = export_model(
            args.model,
            args.out,
            args.name,
            args.query_prefix,
            args.passage_prefix,
            args.max_length,
            sample,
            args.max_abs_diff,
            args.min_top10_overlap,
            not args.no_int8,
            tuple(args.int8_fp32_layers),
            args.adapter,
            args.adapter_scale,
            not args.fp32_by_default,
        )
    except (ParityError, FileNotFoundError, ValueError) as exc:
        raise SystemExit(f"export failed: {exc}") from exc
    print(json.dumps(manifest.parity, indent=2))


if __name__ == "__main__":
    main()
