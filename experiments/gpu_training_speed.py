"""Training throughput on a GPU: pairs per second, fp32 vs bf16, batch 128 whole and 512 through GradCache.

    python -m experiments.gpu_training_speed --pack .gpu --out "$OUT"    # on a lent GPU machine

The model is the default base as ``experiments/adapter_sweep.py pack`` carries it (pruned vocabulary: the same
encoder, a smaller frozen embedding table). Each setting runs ``training/train.py`` (hybrid batches, full
fine-tuning, frozen embeddings, no dev evaluation after step 0, no checkpoints) for a fixed number of steps; the
figure is the steps after the first few (CUDA start-up, autotuning) times the batch size, divided by their time.
Writes ``gpu-training-speed.json`` to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tarfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

SETTINGS = {  # name: overrides of configs/hybrid.yaml
    "fp32, batch 128": {"precision": "fp32", "batch_size": 128},
    "bf16, batch 128": {"precision": "bf16", "batch_size": 128},
    "fp32, batch 512, GradCache 128": {"precision": "fp32", "batch_size": 512, "grad_cache_chunk": 128},
    "bf16, batch 512, GradCache 128": {"precision": "bf16", "batch_size": 512, "grad_cache_chunk": 128},
}
WARMUP_STEPS = 3


def run_setting(name: str, overrides: dict, model: Path, data: Path, work: Path, steps: int) -> dict:
    run = name.replace(", ", "-").replace(" ", "")
    command = [sys.executable, "training/train.py", "--config", "configs/hybrid.yaml", "--run-name", run]
    command += ["--model", str(model), "--train-path", str(data / "xquad-r"), "--export-onnx", "false"]
    command += ["--split-file", str(data / "splits" / "xquad-r-articles.json"), "--max-steps", str(steps)]
    command += ["--eval-every", str(10 * steps), "--checkpoint-every", str(10 * steps), "--resume", "false"]
    command += ["--output-dir", str(work / "models"), "--runs-dir", str(work / "runs")]
    for key, value in overrides.items():
        command += [f"--{key.replace('_', '-')}", str(value)]
    started = time.perf_counter()
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    if done.returncode != 0:
        return {"error": done.stderr[-1500:]}
    metrics = [json.loads(line) for line in (work / "runs" / run / "metrics.jsonl").read_text().splitlines()]
    step_seconds = [m["seconds"] for m in metrics if "loss" in m][WARMUP_STEPS:]  # each ends on the loss's sync
    summary = json.loads((work / "runs" / run / "summary.json").read_text())
    timed, seconds = len(step_seconds), sum(step_seconds)
    return {
        "pairs_per_s": round(timed * overrides["batch_size"] / seconds, 1),
        "s_per_step": round(seconds / timed, 4),
        "steps_timed": timed,
        "precision": summary["precision"],
        "piece_size": summary["piece_size"],
        "wall_s": round(time.perf_counter() - started, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pack", type=Path, default=ROOT / ".gpu")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--steps", type=int, default=20)
    args = parser.parse_args()
    import torch

    from experiments.adapter_sweep import unpack

    work = Path("/tmp/gpu-speed")
    model, data = work / "model", work / "data"
    if not (model / "model.safetensors").is_file():
        unpack(args.pack, model)
    if not data.is_dir():
        with tarfile.open(args.pack / "xquad-r.tar.xz") as tar:
            tar.extractall(data, filter="data")
    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "CPU"
    results = {"device": device, "torch": torch.__version__, "steps": args.steps, "settings": {}}
    for name, overrides in SETTINGS.items():
        results["settings"][name] = run_setting(name, overrides, model, data, work, args.steps)
        print(name, results["settings"][name], flush=True)
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "gpu-training-speed.json").write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
