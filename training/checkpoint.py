"""Checkpoints with exact resume: the trainable weights (only the adapter's with LoRA), optimiser, scheduler and
loop state, and every rank's RNG state, written to a temporary folder and swapped in whole, so an interrupted run
resumes from the last complete checkpoint and ends with the same weights as an uninterrupted one."""

from __future__ import annotations

import logging
import random
import shutil
from pathlib import Path

import torch
import torch.distributed as dist

from training.config import TrainConfig, config_digest
from training.grad_cache import rng_state

log = logging.getLogger(__name__)


class Checkpoints:
    def __init__(
        self,
        folder: Path,
        config: TrainConfig,
        rank: int,
        world_size: int,
        device: torch.device,
        distributed: bool,
    ) -> None:
        self.folder = folder
        self.config = config
        self.rank = rank
        self.world_size = world_size
        self.device = device
        self.distributed = distributed

    def _barrier(self) -> None:
        if self.distributed:
            dist.barrier()

    def save(
        self,
        model: torch.nn.Module,
        optimizer: torch.optim.Optimizer,
        scheduler: torch.optim.lr_scheduler.LRScheduler,
        state: dict,
    ) -> None:
        self._barrier()
        tmp = self.folder.with_name("checkpoint.tmp")
        if self.rank == 0:
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir(parents=True)
            torch.save(
                {
                    "model": trainable_state(model, self.config.uses_lora),
                    "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(),
                    "state": state,
                    "config_digest": config_digest(self.config),
                    "world_size": self.world_size,
                },
                tmp / "state.pt",
            )
        self._barrier()
        cpu, cuda = rng_state(self.device)  # CUDA's too: dropout on a GPU draws from it
        torch.save({"cpu": cpu, "cuda": cuda, "python": random.getstate()}, tmp / f"rng-rank{self.rank}.pt")
        self._barrier()
        if self.rank == 0:
            old = self.folder.with_name("checkpoint.old")
            shutil.rmtree(old, ignore_errors=True)
            if self.folder.exists():
                self.folder.rename(old)
            tmp.rename(self.folder)
            shutil.rmtree(old, ignore_errors=True)
        self._barrier()

    def load(
        self,
        model: torch.nn.Module,
        optimizer: torch.optim.Optimizer,
        scheduler: torch.optim.lr_scheduler.LRScheduler,
    ) -> dict | None:
        """Restore weights, optimiser, scheduler and RNG in place; the loop state saved, or None without a
        checkpoint."""
        path = self.folder / "state.pt"
        if not path.is_file():
            return None
        saved = torch.load(path, map_location=self.device, weights_only=False)
        if saved["config_digest"] != config_digest(self.config) or saved["world_size"] != self.world_size:
            raise RuntimeError(
                f"checkpoint in {self.folder} was made with other settings; use another run_name, "
                "delete the run folder, or set --resume false"
            )
        load_trainable_state(model, saved["model"], self.config.uses_lora)
        optimizer.load_state_dict(saved["optimizer"])
        scheduler.load_state_dict(saved["scheduler"])
        rng = torch.load(self.folder / f"rng-rank{self.rank}.pt", weights_only=False)
        torch.set_rng_state(rng["cpu"])
        if rng.get("cuda") is not None and self.device.type == "cuda":
            torch.cuda.set_rng_state(rng["cuda"].cpu(), self.device)
        random.setstate(rng["python"])
        log.info("resumed %s at step %d", self.folder, saved["state"]["step"])
        return saved["state"]


def trainable_state(model: torch.nn.Module, uses_lora: bool) -> dict[str, torch.Tensor]:
    """What a checkpoint must hold: everything for full fine-tuning, only the adapter's weights for LoRA."""
    state = model.state_dict()
    if not uses_lora:
        return state
    trainable = {name for name, parameter in model.named_parameters() if parameter.requires_grad}
    return {name: value for name, value in state.items() if name in trainable}


def load_trainable_state(model: torch.nn.Module, state: dict[str, torch.Tensor], uses_lora: bool) -> None:
    result = model.load_state_dict(state, strict=not uses_lora)
    if uses_lora:
        trainable = {name for name, parameter in model.named_parameters() if parameter.requires_grad}
        missing = trainable & set(result.missing_keys)
        if missing or result.unexpected_keys:
            raise RuntimeError(
                f"checkpoint does not fit the LoRA model: missing {sorted(missing)[:3]}, "
                f"unexpected {sorted(result.unexpected_keys)[:3]}"
            )
