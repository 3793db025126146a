"""Where does the served int8 graph lose quality, and does SmoothQuant-style input scaling win it back? (dev articles)

    python -m experiments.int8_smoothing --model-dir models/multilingual-e5-small-hybrid --alphas 0 0.5 \
        --keep "" "attention/self/" "attention/output/" "intermediate/" "ffn"

Every variant starts from the served recipe (training/export.py: dynamic per-channel int8 MatMuls, FFN
down-projections of layers 3-5 in fp32) and changes one thing:
- ``--alphas``: before quantising, divide each MatMul input channel j by s_j = max|x_j|^a / max|W_j|^(1-a) and
  multiply row j of the weights by s_j (SmoothQuant, Xiao et al. 2022): exact in fp32, and it flattens the outlier
  channels that set the per-tensor range of the dynamically quantised activations. max|x_j| is calibrated on 512
  texts of the *train* articles; a = 0 is the served graph.
- ``--keep``: keep every MatMul whose node name contains the string in fp32 as well ("ffn": every FFN
  down-projection), to see which group the int8 error comes from.
Prints one JSON line per variant (multi/cross/mono mAP, rank distance, Hit@1, Hit@10).
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import helper, numpy_helper

from app.encoder import OnnxEncoder
from app.manifest import load_model_manifest
from benchmarks.serve_load import SPLITS, XQUAD
from experiments.int8_scan import Embedder
from training.data import load_split_titles
from training.evaluate import evaluate, load_retrieval_set
from training.export import INT8_FP32_LAYERS, export_int8

ROOT = Path(__file__).resolve().parents[1]


N_LAYERS = 12


def projections(model: onnx.ModelProto) -> dict[str, list[str]]:
    """MatMuls with a 2-D weight initializer, grouped by their input (query, key and value share one)."""
    weights = {i.name for i in model.graph.initializer if len(i.dims) == 2}
    groups: dict[str, list[str]] = {}
    for node in model.graph.node:
        if node.op_type == "MatMul" and node.input[1] in weights:
            groups.setdefault(node.input[0], []).append(node.name)
    return groups


def input_absmax(fp32_path: Path, encoder: OnnxEncoder, texts: dict[str, list[str]]) -> dict[str, np.ndarray]:
    """Per-channel max |x| of every projection input over the calibration texts (padding excluded)."""
    probe = onnx.load(str(fp32_path))
    names = list(projections(probe))
    for name in names:
        probe.graph.output.append(helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None))
    session = ort.InferenceSession(probe.SerializeToString(), providers=["CPUExecutionProvider"])
    absmax: dict[str, np.ndarray] = {}
    for kind, batch_texts in texts.items():
        for start in range(0, len(batch_texts), 32):
            batch = encoder.tokenize(batch_texts[start : start + 32], kind)  # type: ignore[arg-type]
            feeds = {"input_ids": batch.input_ids, "attention_mask": batch.attention_mask}
            real = batch.attention_mask.astype(bool)
            for name, value in zip(names, session.run(names, feeds), strict=True):
                channel_max = np.abs(value[real]).max(axis=0)
                absmax[name] = np.maximum(absmax.get(name, channel_max), channel_max)
    return absmax


def smoothed(fp32_path: Path, absmax: dict[str, np.ndarray], alpha: float) -> onnx.ModelProto:
    """The fp32 graph with each projection input divided by s and the weights' rows multiplied by s."""
    model = onnx.load(str(fp32_path))
    initializers = {i.name: i for i in model.graph.initializer}
    nodes = {n.name: n for n in model.graph.node}
    for input_name, node_names in projections(model).items():
        weights = [numpy_helper.to_array(initializers[nodes[n].input[1]]) for n in node_names]
        weight_max = np.max([np.abs(w).max(axis=1) for w in weights], axis=0)
        scale = (np.maximum(absmax[input_name], 1e-5) ** alpha / np.maximum(weight_max, 1e-5) ** (1 - alpha)).astype(
            np.float32
        )
        inverse = numpy_helper.from_array(1 / scale, f"{input_name}/smooth_inverse")
        model.graph.initializer.append(inverse)
        smooth_out = f"{input_name}/smoothed"
        first = min(list(model.graph.node).index(nodes[n]) for n in node_names)
        model.graph.node.insert(first, helper.make_node("Mul", [input_name, inverse.name], [smooth_out]))
        for name, weight in zip(node_names, weights, strict=True):
            node = nodes[name]
            node.input[0] = smooth_out
            initializers[node.input[1]].CopyFrom(numpy_helper.from_array(weight * scale[:, None], node.input[1]))
    return model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model-dir", type=Path, default=ROOT / "models/multilingual-e5-small-hybrid")
    parser.add_argument("--alphas", type=float, nargs="+", default=[0.0, 0.5])
    parser.add_argument("--keep", nargs="+", default=[""], help='node-name substrings kept fp32; "" = served set')
    parser.add_argument("--calibration-texts", type=int, default=512)
    args = parser.parse_args()
    manifest = load_model_manifest(args.model_dir)
    fp32_path = manifest.onnx_path(args.model_dir, "fp32")
    languages = sorted(p.stem for p in XQUAD.glob("*.json"))
    dev = load_retrieval_set(XQUAD, languages, load_split_titles(SPLITS, "dev"))
    train = load_retrieval_set(XQUAD, languages, load_split_titles(SPLITS, "train"))
    rng = np.random.default_rng(0)
    half = args.calibration_texts // 2
    questions = [text for lang in languages for _, text in train.questions[lang]]
    calibration = {
        "passage": [train.candidates[i] for i in rng.choice(len(train.candidates), half, replace=False)],
        "query": [questions[i] for i in rng.choice(len(questions), half, replace=False)],
    }
    fp32 = OnnxEncoder(args.model_dir, "fp32", "cpu", manifest=manifest)
    absmax = input_absmax(fp32_path, fp32, calibration) if any(a > 0 for a in args.alphas) else {}
    with tempfile.TemporaryDirectory() as tmp:
        for alpha in args.alphas:
            source = fp32_path
            if alpha > 0:
                source = Path(tmp) / f"smoothed-{alpha}.onnx"
                onnx.save(smoothed(fp32_path, absmax, alpha), str(source))
            for index, keep in enumerate(args.keep):
                int8_path = Path(tmp) / f"int8-{alpha}-{index}.onnx"
                layers = tuple(range(N_LAYERS)) if keep == "ffn" else INT8_FP32_LAYERS
                export_int8(source, int8_path, layers, (keep,) if keep and keep != "ffn" else ())
                variant = manifest.model_copy(update={"onnx_int8": str(int8_path)})
                label = f"alpha {alpha}, fp32 also: {keep or '-'}"
                figures = evaluate(Embedder(OnnxEncoder(args.model_dir, "int8", "cpu", manifest=variant), label), dev)
                keys = ("multi_map", "cross_map", "mono_map", "rank_distance", "multi_hit1", "multi_hit10")
                print(json.dumps({"alpha": alpha, "fp32_also": keep} | {k: round(figures[k], 4) for k in keys}))


if __name__ == "__main__":
    main()
