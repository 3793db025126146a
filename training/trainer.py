"""The training loop: InfoNCE over mono/cross/hybrid batches, GradCache, DDP, evaluation on dev, early stopping.
Batch composition is in training/collator.py, checkpoints with exact resume in training/checkpoint.py."""

from __future__ import annotations

import json
import logging
import math
import os
import resource
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm
from transformers import get_linear_schedule_with_warmup

from training.checkpoint import Checkpoints
from training.collator import BatchCollator, Collated, Inputs
from training.config import ConfigError, TrainConfig, save_config
from training.data import ParallelData
from training.grad_cache import embed_in_pieces, grad_cache_backward
from training.lora import wrap_with_lora
from training.loss import info_nce
from training.model import LoadedEncoder
from training.samplers import Batch, BatchSampler

log = logging.getLogger(__name__)


@dataclass
class TrainState:
    step: int = 0
    best_dev_loss: float = math.inf
    best_step: int = -1
    bad_evals: int = 0
    stopped_early: bool = False


class Trainer:
    def __init__(
        self,
        config: TrainConfig,
        loaded: LoadedEncoder,
        train: ParallelData,
        dev: ParallelData | None,
        on_step: Callable[[int, float], None] | None = None,
    ) -> None:
        self.config = config
        self.loaded = loaded
        self.train_data = train
        self.dev_data = dev
        self.on_step = on_step
        self.distributed = dist.is_available() and dist.is_initialized()
        self.rank = dist.get_rank() if self.distributed else 0
        self.world_size = dist.get_world_size() if self.distributed else 1
        self.device = (
            torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
            if torch.cuda.is_available()
            else (torch.device("cpu"))
        )
        if config.deterministic:
            use_deterministic_kernels()
        self.autocast_dtype = autocast_dtype(config.precision, self.device)
        self.piece_size = piece_size(config, self.device)
        self.model = loaded.encoder.to(self.device)
        if config.freeze_embeddings:
            self.model.backbone.get_input_embeddings().weight.requires_grad_(False)
        if config.uses_lora:
            self.model.backbone = wrap_with_lora(
                self.model.backbone, config.lora_rank, config.lora_alpha, config.lora_dropout, config.lora_targets
            )
        self.module: torch.nn.Module = (
            DistributedDataParallel(self.model, device_ids=[self.device.index] if self.device.type == "cuda" else None)
            if self.distributed
            else self.model
        )
        self.sampler = BatchSampler(
            {i: list(g) for i, g in train.by_id.items()},
            config.batch_size,
            config.strategy,  # type: ignore[arg-type]
            config.alpha,
            config.seed,
            self.rank,
        )
        self.optimizer = torch.optim.AdamW(self._parameter_groups(), lr=config.lr, betas=(0.9, 0.999), eps=1e-8)
        self.scheduler = get_linear_schedule_with_warmup(
            self.optimizer, int(config.warmup_ratio * config.max_steps), config.max_steps
        )
        self.state = TrainState()
        self.run_dir = config.run_dir
        self.metrics_path = self.run_dir / "metrics.jsonl"
        self.checkpoint_dir = self.run_dir / "checkpoint"
        self.best_dir = self.run_dir / "best"
        self.dev_batches = self._dev_batches()
        self.collator = BatchCollator(config, loaded.tokenize, train, self.rank)
        self.checkpoints = Checkpoints(
            self.checkpoint_dir, config, self.rank, self.world_size, self.device, self.distributed
        )

    # -- setup -----------------------------------------------------------------------------------------------
    def _parameter_groups(self) -> list[dict]:
        decay, no_decay = [], []
        for name, parameter in self.model.named_parameters():
            if not parameter.requires_grad:
                continue
            (no_decay if parameter.ndim < 2 or "LayerNorm" in name else decay).append(parameter)
        return [
            {"params": decay, "weight_decay": self.config.weight_decay},
            {"params": no_decay, "weight_decay": 0.0},
        ]

    def _dev_batches(self) -> list[Batch]:
        """Fixed hybrid (α = 0.5) batches of the dev data: the same yardstick whatever the training strategy."""
        if self.dev_data is None or not self.dev_data.by_id:
            return []
        size = min(self.config.batch_size, len(self.dev_data.by_id))
        sampler = BatchSampler(
            {i: list(g) for i, g in self.dev_data.by_id.items()}, size, "hybrid", 0.5, self.config.seed + 1
        )
        return [sampler.batch(step) for step in range(self.config.eval_batches)]

    # -- one step --------------------------------------------------------------------------------------------
    def _forward(self, inputs: Inputs, module: torch.nn.Module | None = None) -> torch.Tensor:
        """Embeddings in fp32 (under bf16 autocast the encoder runs in bf16; the loss must not)."""
        module = module or self.module
        dtype = self.autocast_dtype
        with torch.autocast(self.device.type, dtype=dtype, enabled=dtype is not None):
            out = module(inputs["input_ids"].to(self.device), inputs["attention_mask"].to(self.device))
        return out.float()

    def _embed(self, inputs: Inputs, forward: Callable[[Inputs], torch.Tensor]) -> torch.Tensor:
        return embed_in_pieces(inputs, forward, self.piece_size)

    def _loss(
        self, queries: torch.Tensor, passages: torch.Tensor, collated: Collated, training: bool = True
    ) -> torch.Tensor:
        n, k = collated.n_positives, collated.n_translation_positives
        negatives = passages[n + k :] if passages.shape[0] > n + k else None
        translations = passages[n : n + k] if k else None
        symmetric = training and self.config.symmetric_loss
        temperature, copies = self.config.temperature, collated.same_as_positive
        return info_nce(queries, passages[:n], negatives, temperature, translations, symmetric, copies)

    def backward(self, collated: Collated) -> float:
        """Loss + gradients for the whole batch; GradCache (training/grad_cache.py) when ``grad_cache_chunk`` > 0."""
        if self.config.grad_cache_chunk <= 0:
            queries = self._embed(collated.queries, self._forward)
            passages = self._embed(collated.passages, self._forward)
            loss = self._loss(queries, passages, collated)
            loss.backward()
            return float(loss.detach())
        loss = grad_cache_backward(
            collated.queries,
            collated.passages,
            self._forward,
            lambda queries, passages: self._loss(queries, passages, collated),
            self.config.grad_cache_chunk,
            self.device,
            self.module.no_sync if self.distributed else None,  # type: ignore[arg-type]
        )
        return float(loss)

    def train_step(self, step: int) -> tuple[float, str]:
        self.module.train()
        batch = self.sampler.batch(step)
        loss = self.backward(self.collator.collate(batch, self.train_data, step))
        if self.config.max_grad_norm > 0:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.config.max_grad_norm)
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        return loss, batch.kind

    @torch.no_grad()
    def dev_loss(self) -> float | None:
        if not self.dev_batches or self.dev_data is None:
            return None
        self.model.eval()

        def forward(piece: Inputs) -> torch.Tensor:  # the bare model: no DDP collectives for evaluation
            return self._forward(piece, self.model)

        losses = []
        for step, batch in enumerate(self.dev_batches):
            # one positive per query, one direction, whatever the training loss: every run is stopped on the same
            # yardstick
            collated = self.collator.collate(batch, self.dev_data, -1 - step, translations=False)
            queries = self._embed(collated.queries, forward)
            passages = self._embed(collated.passages, forward)
            losses.append(float(self._loss(queries, passages, collated, training=False)))
        return float(np.mean(losses))

    # -- checkpoints -----------------------------------------------------------------------------------------
    def save_checkpoint(self) -> None:
        self.checkpoints.save(self.model, self.optimizer, self.scheduler, self.state.__dict__)

    def load_checkpoint(self) -> bool:
        saved = self.checkpoints.load(self.model, self.optimizer, self.scheduler)
        if saved is None:
            return False
        self.state = TrainState(**saved)
        return True

    # -- the loop --------------------------------------------------------------------------------------------
    def _log(self, record: dict) -> None:
        if self.rank == 0:
            with open(self.metrics_path, "a", encoding="utf-8") as handle:
                handle.write(json.dumps(record) + "\n")

    def _trim_metrics(self) -> None:
        """After a resume, drop records of steps the checkpoint did not reach (they will be redone)."""
        if self.rank != 0 or not self.metrics_path.is_file():
            return
        lines = self.metrics_path.read_text(encoding="utf-8").splitlines()
        kept = [line for line in lines if json.loads(line)["step"] <= self.state.step]
        self.metrics_path.write_text("".join(line + "\n" for line in kept), encoding="utf-8")

    def _evaluate(self, step: int) -> None:
        loss = self.dev_loss()
        if loss is None:
            return
        self._log({"step": step, "dev_loss": loss})
        if loss < self.state.best_dev_loss:
            self.state.best_dev_loss, self.state.best_step, self.state.bad_evals = loss, step, 0
            if self.rank == 0:
                tmp = self.best_dir.with_name("best.tmp")
                shutil.rmtree(tmp, ignore_errors=True)
                self.model.backbone.save_pretrained(tmp)
                self.loaded.tokenizer.save_pretrained(tmp)
                shutil.rmtree(self.best_dir, ignore_errors=True)
                tmp.rename(self.best_dir)
        else:
            self.state.bad_evals += 1
        log.info("step %d: dev loss %.4f (best %.4f at %d)", step, loss, self.state.best_dev_loss, self.state.best_step)

    def fit(self) -> dict:
        config = self.config
        self.run_dir.mkdir(parents=True, exist_ok=True)
        if self.rank == 0:
            save_config(config, self.run_dir / "config.yaml")
        if config.resume and self.load_checkpoint():
            self._trim_metrics()
        elif self.rank == 0:
            self.metrics_path.unlink(missing_ok=True)
        if self.state.step == 0 and self.dev_batches:
            self._evaluate(0)
        started, start_step = time.perf_counter(), self.state.step
        bar = tqdm(
            total=config.max_steps, initial=self.state.step, desc=config.run_name, unit="step", disable=self.rank != 0
        )
        while self.state.step < config.max_steps and not self.state.stopped_early:
            step_started = time.perf_counter()
            loss, kind = self.train_step(self.state.step)
            self.state.step += 1
            seconds = time.perf_counter() - step_started
            pairs_per_s = config.batch_size * self.world_size / seconds
            self._log(
                {
                    "step": self.state.step,
                    "loss": loss,
                    "kind": kind,
                    "lr": self.scheduler.get_last_lr()[0],
                    "seconds": round(seconds, 4),
                    "pairs_per_s": round(pairs_per_s, 2),
                }
            )
            bar.set_postfix(loss=f"{loss:.4f}", kind=kind, pairs_s=f"{pairs_per_s:.1f}")
            bar.update(1)
            if self.state.step % config.eval_every == 0 or self.state.step == config.max_steps:
                self._evaluate(self.state.step)
                if config.patience and self.state.bad_evals >= config.patience:
                    self.state.stopped_early = True
                    log.info(
                        "early stop at step %d: no better dev loss in %d evaluations", self.state.step, config.patience
                    )
            if self.state.step % config.checkpoint_every == 0 or self.state.step == config.max_steps:
                self.save_checkpoint()
            if self.on_step is not None:
                self.on_step(self.state.step, loss)
        bar.close()
        agree = self.ranks_agree()
        elapsed = time.perf_counter() - started
        steps_done = self.state.step - start_step
        return {
            "steps": self.state.step,
            "steps_this_session": steps_done,
            "seconds": round(elapsed, 1),
            "steps_per_s": round(steps_done / elapsed, 4) if elapsed > 0 else None,
            "best_dev_loss": self.state.best_dev_loss if self.dev_batches else None,
            "best_step": self.state.best_step,
            "stopped_early": self.state.stopped_early,
            "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
            "world_size": self.world_size,
            "device": str(self.device),
            "precision": "bf16" if self.autocast_dtype is not None else "fp32",
            "piece_size": self.piece_size,
            "ranks_agree": agree,
        }

    def weights_checksum(self) -> float:
        return float(sum(p.detach().double().sum() for p in self.model.parameters()))

    def ranks_agree(self) -> bool:
        """DDP keeps replicas identical; check it rather than assume it (a mismatch is an error)."""
        if not self.distributed:
            return True
        mine = torch.tensor([self.weights_checksum()], dtype=torch.float64, device=self.device)
        gathered = [torch.zeros_like(mine) for _ in range(self.world_size)]
        dist.all_gather(gathered, mine)
        if any(not torch.equal(g, gathered[0]) for g in gathered):
            raise RuntimeError(f"DDP ranks disagree on the weights: {[float(g) for g in gathered]}")
        return True


CPU_PAD_BUCKET = 8  # pieces of 8 rows on a CPU: the padding saved outweighs the smaller matrix products


def piece_size(config: TrainConfig, device: torch.device) -> int:
    """Rows per forward pass: GradCache's chunk, else pad_bucket, else per device (pad_bucket 0)."""
    if config.grad_cache_chunk > 0:
        return config.grad_cache_chunk
    if config.pad_bucket > 0:
        return config.pad_bucket
    return CPU_PAD_BUCKET if device.type == "cpu" else 2**31 - 1  # a GPU: the whole batch at once


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """bf16 for autocast, or None for plain fp32."""
    if precision == "fp32":
        return None
    if precision == "bf16":
        if device.type == "cuda" and not torch.cuda.is_bf16_supported():
            raise ConfigError(f"precision bf16: {torch.cuda.get_device_name(device)} does not support bfloat16")
        return torch.bfloat16
    return torch.bfloat16 if device.type == "cuda" and torch.cuda.is_bf16_supported() else None


def use_deterministic_kernels() -> None:
    """cuBLAS needs a fixed workspace before its first call for deterministic results (CUDA docs: reproducibility)."""
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(True)
    torch.backends.cudnn.benchmark = False
