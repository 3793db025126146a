"""Fine-tune a multilingual dual encoder with mono (X-X), cross (X-Y) or hybrid batches, then export it.

    python training/train.py --config configs/hybrid.yaml [--key value ...]
    python -m training.train --config configs/hybrid.yaml --max-steps 100 --batch-size 64 --grad-cache-chunk 16
    torchrun --nproc-per-node 2 training/train.py --config configs/hybrid.yaml

Every setting of training/config.py can be set in the YAML file and overridden on the command line.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import sys
from datetime import timedelta
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch
import torch.distributed as dist

from training.config import ConfigError, TrainConfig, build_config, parse_overrides, settings_help
from training.data import DataError, Example, ParallelData, add_extra_pairs, load_data
from training.held_out import evaluate_held_out, split_held_out, start_model_dir
from training.lora import ADAPTER_CONFIG, ADAPTER_WEIGHTS, merge_adapter
from training.model import load_encoder, save_hf_folder
from training.plots import plot_loss_curve
from training.trainer import Trainer

log = logging.getLogger("training")


def init_distributed() -> None:
    """Under torchrun (WORLD_SIZE > 1): gloo on CPU, nccl on GPU, one GPU per process."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        if backend == "nccl":
            local_rank, gpus = int(os.environ.get("LOCAL_RANK", 0)), torch.cuda.device_count()
            if local_rank >= gpus:  # checked before any CUDA call: otherwise "invalid device ordinal" mid-start
                raise ConfigError(
                    f"torchrun started {os.environ.get('LOCAL_WORLD_SIZE', local_rank + 1)} processes on this node "
                    f"but it has {gpus} GPU(s): one process per GPU (--nproc-per-node {gpus}), or "
                    "CUDA_VISIBLE_DEVICES= to run every process on the CPU"
                )
            torch.cuda.set_device(local_rank)
        dist.init_process_group(backend, timeout=timedelta(minutes=30))


def finish(config: TrainConfig, trainer: Trainer, summary: dict, held_out: ParallelData | None = None) -> Path:
    """Best checkpoint -> models/<run-name> as a HF folder, exported to ONNX with the parity gates; with held-out
    pairs, the starting model and the result evaluated on them.

    LoRA runs also keep the adapter itself (peft layout) in models/<run-name>/adapter (and in ``adapter_dir``
    when set); the HF folder and the ONNX graphs hold the base with the adapter merged in.
    """
    out = config.final_model_dir
    source = trainer.best_dir if trainer.best_dir.is_dir() else None
    if source is None:  # no dev data: the last weights are the result
        source = config.run_dir / "last"
        shutil.rmtree(source, ignore_errors=True)
        trainer.model.backbone.save_pretrained(source)
        trainer.loaded.tokenizer.save_pretrained(source)
    if config.uses_lora:
        shutil.rmtree(out, ignore_errors=True)
        adapter = copy_adapter(source, out / "adapter", config.adapter_base_name)
        if config.adapter_dir:
            copy_adapter(source, Path(config.adapter_dir), config.adapter_base_name)
            summary["adapter_dir"] = config.adapter_dir
        if not config.export_onnx:
            save_hf_folder(merge_adapter(load_encoder(config.model), adapter), out)
    else:
        adapter = None
        tmp = out.with_name(out.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.copytree(source, tmp)
        shutil.rmtree(out, ignore_errors=True)
        tmp.rename(out)
    if config.export_onnx:
        from training.export import export_model  # ONNX tooling (and the app's pydantic) only when exporting

        manifest = export_model(
            config.model if adapter else out,
            out,
            name=config.run_name,
            query_prefix=config.query_prefix,
            passage_prefix=config.passage_prefix,
            adapter=adapter,
        )
        summary["export"] = manifest.parity
    if held_out is not None:
        start = start_model_dir(config.model, config.run_dir, config.query_prefix, config.passage_prefix)
        figures = evaluate_held_out(held_out, start, out, config.run_dir / "held-out-eval")
        summary["held_out"] = {
            "ids": len(held_out.by_id),
            "models": {name: model["all"] for name, model in figures["models"].items()},
            "differences": figures["differences"],
        }
    plot = plot_loss_curve(trainer.metrics_path, config.run_dir / "loss.png", f"{config.run_name} ({config.strategy})")
    summary.update({"model_dir": str(out), "loss_plot": str(plot)})
    (config.run_dir / "summary.json").write_text(json.dumps(summary, indent=2), encoding="utf-8")
    return out


def copy_adapter(source: Path, dest: Path, base_name: str = "") -> Path:
    """The adapter files of a saved peft model folder -> ``dest`` (written beside it, then renamed into place);
    ``base_name``, when given, replaces the base model path recorded in the adapter's config."""
    tmp = dest.with_name(dest.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for name in (ADAPTER_CONFIG, ADAPTER_WEIGHTS):
        shutil.copyfile(source / name, tmp / name)
    if base_name:
        adapter_config = json.loads((tmp / ADAPTER_CONFIG).read_text(encoding="utf-8"))
        adapter_config["base_model_name_or_path"] = base_name
        (tmp / ADAPTER_CONFIG).write_text(json.dumps(adapter_config, indent=2, sort_keys=True), encoding="utf-8")
    shutil.rmtree(dest, ignore_errors=True)
    tmp.rename(dest)
    return dest


def mine_training_negatives(config: TrainConfig, train: ParallelData) -> ParallelData:
    """Hard negatives for the training pairs that have none of their own (those keep theirs), mined with the
    starting model among those pairs' positives (training/mining.py)."""
    from training.evaluate import make_embedder
    from training.mining import MiningConfig, mine_negatives

    mining = MiningConfig(
        skip_top=config.mine_skip_top,
        margin=config.mine_margin,
        per_query=max(5, config.hard_negatives_per_pair),
        seed=config.seed,
    )
    groups = {pair_id: without_negatives(group) for pair_id, group in train.by_id.items()}
    bare = ParallelData({pair_id: group for pair_id, group in groups.items() if group})
    if not bare.by_id:
        log.info("mine_negatives: every training pair has negatives of its own; nothing mined")
        return train
    embedder = make_embedder(config.model, query_prefix=config.query_prefix, passage_prefix=config.passage_prefix)
    mined, report = mine_negatives(bare, embedder, mining)
    log.info("mined hard negatives with %s: %s", config.model, report)
    kept = ParallelData({pair_id: dict(group) for pair_id, group in train.by_id.items()})
    for pair_id, group in mined.by_id.items():
        kept.by_id[pair_id].update(group)
    return kept


def without_negatives(group: dict[str, Example]) -> dict[str, Example]:
    return {lang: example for lang, example in group.items() if not example.negatives}


def run(config: TrainConfig, on_step=None) -> dict:  # type: ignore[no-untyped-def]
    if config.threads > 0:
        torch.set_num_threads(config.threads)
    torch.manual_seed(config.seed)
    languages = config.languages
    split_file = Path(config.split_file) if config.split_file else None
    train = load_data(config.data_format, Path(config.train_path), languages, split_file, config.train_split)
    held_out = None
    if config.held_out_fraction:
        if config.data_format != "jsonl":
            raise ConfigError("held_out_fraction holds out part of your own pairs: data_format jsonl")
        try:
            train, held_out = split_held_out(train, config.held_out_fraction, config.seed)
        except ValueError as exc:
            raise ConfigError(str(exc)) from exc
    if config.extra_train_paths:
        train = add_extra_pairs(train, config.extra_train_paths, languages)
    if config.mine_negatives:
        train = mine_training_negatives(config, train)
    dev = None
    # LAReQA data with a split file: dev = the dev articles of the same files; JSONL: only an explicit dev_path
    dev_path = config.dev_path or (config.train_path if config.data_format == "lareqa" and split_file else "")
    if dev_path:
        dev = load_data(config.data_format, Path(dev_path), languages, split_file, config.dev_split)
        overlap = set(train.by_id) & set(dev.by_id)
        if overlap:
            raise DataError(f"{len(overlap)} ids are in both train and dev data (e.g. {sorted(overlap)[:3]})")
    loaded = load_encoder(config.model, max_length=max(config.max_query_length, config.max_passage_length))
    trainer = Trainer(config, loaded, train, dev, on_step)
    summary = trainer.fit()
    if trainer.rank == 0:
        finish(config, trainer, summary, held_out)
    if dist.is_initialized():
        dist.barrier()
    return summary


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n")[0],
        epilog=settings_help(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--config", type=Path, help="YAML file of settings (see configs/)")
    args, rest = parser.parse_known_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("training").setLevel(logging.INFO)
    try:
        config = build_config(args.config, parse_overrides(rest))
    except (ConfigError, OSError) as exc:
        parser.error(str(exc))
    try:
        init_distributed()
    except ConfigError as exc:
        parser.error(str(exc))
    try:
        summary = run(config)
    except DataError as exc:
        raise SystemExit(f"data error: {exc}") from exc
    except ConfigError as exc:  # settings that do not fit the data (found once the data is read)
        parser.error(str(exc))
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
    if not dist.is_initialized() and int(os.environ.get("RANK", "0")) == 0:
        print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
