"""Batching beside the loss, as plain functions (the trainer keeps the loop, checkpoints and DDP):

- ``length_sorted_pieces`` / ``embed_in_pieces``: rows sorted by length, cut into pieces, each trimmed to its own
  longest row (padding to a batch's longest sentence would triple the work on XQuAD: median 48 tokens, batch
  maximum ~160), embeddings returned in input order;
- ``grad_cache_backward``: GradCache (Gao et al. 2021) for any loss over two sets of embeddings: embed every chunk
  without a graph, take the loss over the full batch of embeddings, then re-run each chunk with a graph (the same
  dropout RNG) and back-propagate the cached embedding gradients. Memory is one chunk's activations; the gradient
  equals the full-batch one.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext

import torch

Inputs = dict[str, torch.Tensor]
Forward = Callable[[Inputs], torch.Tensor]


def length_sorted_pieces(inputs: Inputs, size: int) -> tuple[list[Inputs], torch.Tensor]:
    """The pieces and the sorting order (``unsort`` puts rows computed in that order back in input order)."""
    lengths = inputs["attention_mask"].sum(dim=1)
    order = torch.argsort(lengths, descending=True, stable=True)
    pieces = []
    for start in range(0, len(order), size):
        rows = order[start : start + size]
        width = int(lengths[rows].max())
        pieces.append({key: value[rows, :width] for key, value in inputs.items()})
    return pieces, order


def unsort(rows_in_order: torch.Tensor, order: torch.Tensor) -> torch.Tensor:
    """Rows computed in ``order`` back to input order (differentiable)."""
    return rows_in_order[torch.argsort(order)]


def embed_in_pieces(inputs: Inputs, forward: Forward, size: int) -> torch.Tensor:
    pieces, order = length_sorted_pieces(inputs, size)
    return unsort(torch.cat([forward(piece) for piece in pieces]), order)


def grad_cache_backward(
    queries: Inputs,
    passages: Inputs,
    forward: Forward,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    chunk: int,
    device: torch.device,
    no_sync: Callable[[], AbstractContextManager] | None = None,
) -> torch.Tensor:
    """Gradients of ``loss_fn(query embeddings, passage embeddings)`` for the whole batch, chunk by chunk; returns
    the (detached) loss. ``no_sync`` (DDP) wraps every backward but the last, so gradients are reduced once."""
    (query_pieces, query_order), (passage_pieces, passage_order) = (
        length_sorted_pieces(queries, chunk),
        length_sorted_pieces(passages, chunk),
    )
    pieces = query_pieces + passage_pieces
    states, embeddings = [], []
    with torch.no_grad():
        for piece in pieces:
            states.append(rng_state(device))
            embeddings.append(forward(piece))
    sorted_queries = torch.cat(embeddings[: len(query_pieces)]).requires_grad_()
    sorted_passages = torch.cat(embeddings[len(query_pieces) :]).requires_grad_()
    loss = loss_fn(unsort(sorted_queries, query_order), unsort(sorted_passages, passage_order))
    loss.backward()
    sizes = [piece["input_ids"].shape[0] for piece in pieces]
    gradients = torch.cat([sorted_queries.grad, sorted_passages.grad]).split(sizes)  # type: ignore[list-item]
    devices = [device] if device.type == "cuda" else []
    for index, (piece, (cpu_state, cuda_state), gradient) in enumerate(zip(pieces, states, gradients, strict=True)):
        last = index == len(pieces) - 1
        sync = nullcontext() if last or no_sync is None else no_sync()
        with sync, torch.random.fork_rng(devices=devices):
            torch.set_rng_state(cpu_state)
            if cuda_state is not None:
                torch.cuda.set_rng_state(cuda_state, device)
            (forward(piece) * gradient).sum().backward()
    return loss.detach()


def rng_state(device: torch.device) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The CPU RNG state and, on a GPU, the device's (dropout there draws from it)."""
    cuda = torch.cuda.get_rng_state(device) if device.type == "cuda" else None
    return torch.get_rng_state(), cuda
