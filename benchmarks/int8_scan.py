"""Which FFN down-projections should int8 keep in fp32? Quantise with each candidate set, then measure query
speed (batches of 32) and XQuAD-R mAP on the dev articles (tune on dev; report on test: benchmarks/serve_load.py).

    python benchmarks/int8_scan.py --sets "" "4" "3,4" "4,5" "3,4,5" "2,3,4,5"
Prints one JSON line per set (multi/cross/mono mAP, rank distance, queries/s, speed vs fp32); the chosen default
lives in training/export.py (INT8_FP32_LAYERS).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from app.encoder import OnnxEncoder  # noqa: E402
from app.manifest import load_model_manifest  # noqa: E402
from benchmarks.serve_load import SPLITS, XQUAD  # noqa: E402
from training.data import load_split_titles  # noqa: E402
from training.evaluate import evaluate, load_retrieval_set  # noqa: E402
from training.export import export_int8  # noqa: E402


class Embedder:
    def __init__(self, encoder: OnnxEncoder, name: str) -> None:
        self.encoder, self.name = encoder, name

    def encode(self, texts: list[str], kind: str) -> object:
        return self.encoder.encode(texts, kind, 64)  # type: ignore[arg-type]


def queries_per_second(encoder: OnnxEncoder, queries: list[str], seconds: float = 5) -> float:
    encoder.encode(queries[:32], "query", 32)
    started, calls = time.perf_counter(), 0
    while time.perf_counter() - started < seconds:
        start = (calls * 32) % (len(queries) - 32)
        encoder.encode(queries[start : start + 32], "query", 32)
        calls += 1
    return 32 * calls / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model-dir", type=Path, default=ROOT / "models/multilingual-e5-small")
    parser.add_argument("--sets", nargs="+", default=["", "4", "3,4,5"], help='comma-separated layers; "" = none')
    parser.add_argument("--split", default="dev")
    args = parser.parse_args()
    manifest = load_model_manifest(args.model_dir)
    languages = sorted(p.stem for p in XQUAD.glob("*.json"))
    data = load_retrieval_set(XQUAD, languages, load_split_titles(SPLITS, args.split))
    queries = [json.loads(line)["query"] for line in (ROOT / "data/demo/queries.jsonl").open(encoding="utf-8")]
    fp32 = OnnxEncoder(args.model_dir, "fp32", "cpu", manifest=manifest)
    reference = queries_per_second(fp32, queries)
    figures = evaluate(Embedder(fp32, "fp32"), data)
    print(json.dumps({"fp32_layers": "all (fp32 model)", "queries_per_s": round(reference),
                      "multi": round(figures["multi_map"], 4), "cross": round(figures["cross_map"], 4),
                      "mono": round(figures["mono_map"], 4), "rank_distance": round(figures["rank_distance"], 1)}),
          flush=True)  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        for layer_set in args.sets:
            layers = tuple(int(n) for n in layer_set.split(",") if n.strip())
            path = Path(tmp) / "onnx" / "model.int8.onnx"
            path.parent.mkdir(exist_ok=True)
            export_int8(manifest.onnx_path(args.model_dir, "fp32"), path, layers)
            folder_manifest = manifest.model_copy(update={"onnx_int8": str(path)})
            encoder = OnnxEncoder(args.model_dir, "int8", "cpu", manifest=folder_manifest)
            speed = queries_per_second(encoder, queries)
            figures = evaluate(Embedder(encoder, f"int8 {layers}"), data)
            print(json.dumps({"fp32_layers": list(layers), "queries_per_s": round(speed),
                              "speed_vs_fp32": round(speed / reference, 2), "multi": round(figures["multi_map"], 4),
                              "cross": round(figures["cross_map"], 4), "mono": round(figures["mono_map"], 4),
                              "rank_distance": round(figures["rank_distance"], 1)}),
                  flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
