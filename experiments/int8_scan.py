"""Which FFN down-projections should int8 keep in fp32? Quantise with each candidate set, then measure query and
passage speed (batches of 32, interleaved rounds) and XQuAD-R mAP on the dev articles (tune on dev; report on test:
benchmarks/serve_load.py).

    python -m experiments.int8_scan --sets "" "4" "3,4" "4,5" "3,4,5" "2,3,4,5"
    python -m experiments.int8_scan --sets "3,4,5" --weight-only 8:32 8:128 4:128   # + MatMulNBits graphs
Prints one JSON line per graph (queries/s and passages/s with their ratio to fp32; multi/cross/mono mAP, rank
distance and multi Hit@1/Hit@10 unless --skip-quality; with --fp32-passages the same figures for the set's queries
against an fp32-encoded corpus); the chosen default lives in training/export.py (INT8_FP32_LAYERS).
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from app.encoder import OnnxEncoder
from app.manifest import load_model_manifest
from benchmarks.serve_load import SPLITS, XQUAD, interleaved_rates, sixty_word_passages
from training.data import load_split_titles
from training.evaluate import evaluate, load_retrieval_set
from training.export import export_int8

ROOT = Path(__file__).resolve().parents[1]


class Embedder:
    """Queries through one graph, passages through another (the same one unless an index is built in fp32)."""

    def __init__(self, name: str, queries: OnnxEncoder, passages: OnnxEncoder | None = None) -> None:
        self.name, self.queries, self.passages = name, queries, passages or queries

    def encode(self, texts: list[str], kind: str) -> object:
        encoder = self.queries if kind == "query" else self.passages
        return encoder.encode(texts, kind, 64)  # type: ignore[arg-type]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model-dir", type=Path, default=ROOT / "models/multilingual-e5-small")
    parser.add_argument("--sets", nargs="+", default=["", "4", "3,4,5"], help='comma-separated layers; "" = none')
    parser.add_argument("--split", default="dev")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved speed rounds")
    parser.add_argument("--skip-quality", action="store_true", help="speed only")
    parser.add_argument(
        "--fp32-passages",
        action="store_true",
        help="also measure each int8 graph's queries against passages encoded by the fp32 graph (an fp32 index)",
    )
    parser.add_argument(
        "--weight-only",
        nargs="*",
        default=[],
        metavar="BITS:BLOCK",
        help="also ONNX Runtime's weight-only MatMulNBits graphs (symmetric blocks, int8 compute: accuracy level 4)",
    )
    args = parser.parse_args()
    manifest = load_model_manifest(args.model_dir)
    queries = [json.loads(line)["query"] for line in (ROOT / "data/demo/queries.jsonl").open(encoding="utf-8")]
    queries, passages = queries[:512], sixty_word_passages()
    encoders = {"fp32": OnnxEncoder(args.model_dir, "fp32", "cpu", manifest=manifest)}
    fp32_path = manifest.onnx_path(args.model_dir, "fp32")

    def quantised(path: Path) -> OnnxEncoder:
        """A session on a quantised graph, through the int8 slot of the model's manifest."""
        return OnnxEncoder(args.model_dir, "int8", "cpu", manifest=manifest.model_copy(update={"onnx_int8": str(path)}))

    with tempfile.TemporaryDirectory() as tmp:
        for index, layer_set in enumerate(args.sets):
            layers = tuple(int(n) for n in layer_set.split(",") if n.strip())
            path = Path(tmp) / f"model.int8.{index}.onnx"
            export_int8(fp32_path, path, layers)
            encoders[f"int8, FFN down-projections kept fp32: {','.join(map(str, layers)) or 'none'}"] = quantised(path)
        for spec in args.weight_only:
            bits, block = (int(n) for n in spec.split(":"))
            path = Path(tmp) / f"model.nbits{bits}-{block}.onnx"
            export_weight_only(fp32_path, path, bits, block)
            encoders[f"weight-only {bits} bits, blocks of {block}"] = quantised(path)
        runners = {
            name: (lambda texts, kind, e=encoder: e.encode(texts, kind, 32)) for name, encoder in encoders.items()
        }
        rates: dict[str, dict[str, float]] = {}
        for kind, texts in (("query", queries), ("passage", passages)):
            for run in runners.values():
                run(texts[:32], kind)  # warm-up: the first call of a session pays for allocations
            rates[kind] = interleaved_rates(runners, texts, kind, args.rounds)
        if not args.skip_quality:
            languages = sorted(p.stem for p in XQUAD.glob("*.json"))
            data = load_retrieval_set(XQUAD, languages, load_split_titles(SPLITS, args.split))
        for name, encoder in encoders.items():
            row: dict = {"graph": name}
            for kind, by_name in rates.items():
                row[f"{kind}_per_s"] = round(by_name[name], 1)
                row[f"{kind}_speed_vs_fp32"] = round(by_name[name] / by_name["fp32"], 2)
            if not args.skip_quality:
                row |= quality(evaluate(Embedder(name, encoder), data))
                if args.fp32_passages and name != "fp32":
                    mixed = evaluate(Embedder(f"{name} / fp32 passages", encoder, encoders["fp32"]), data)
                    row |= {f"fp32_passages_{k}": v for k, v in quality(mixed).items()}
            print(json.dumps(row), flush=True)


def export_weight_only(fp32_path: Path, path: Path, bits: int, block: int) -> None:
    """Every constant-weight MatMul as MatMulNBits: weights in ``bits`` per value with one scale per ``block``
    inputs; at accuracy level 4 the kernel quantises each row of activations per block too (not per tensor, as
    dynamic int8 does), which is what keeps outlier channels from costing the other values their precision."""
    import onnx
    from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer

    quantizer = MatMulNBitsQuantizer(
        onnx.load(str(fp32_path)), bits=bits, block_size=block, is_symmetric=True, accuracy_level=4
    )
    quantizer.process()
    quantizer.model.save_model_to_file(str(path), False)


def quality(figures: dict) -> dict[str, float]:
    keys = ("multi_map", "cross_map", "mono_map", "rank_distance", "multi_hit1", "multi_hit10")
    return {k: round(figures[k], 4) for k in keys}


if __name__ == "__main__":
    main()
