"""GradCache and length bucketing as plain functions, on a toy encoder (no trainer, no tokenizer)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from training.grad_cache import embed_in_pieces, grad_cache_backward, length_sorted_pieces
from training.loss import info_nce


def toy_inputs(rows: int, seed: int) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    lengths = torch.randint(2, 9, (rows,), generator=generator)
    ids = torch.randint(1, 50, (rows, 8), generator=generator)
    mask = (torch.arange(8)[None, :] < lengths[:, None]).long()
    return {"input_ids": ids * mask, "attention_mask": mask}


class ToyEncoder(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embedding = torch.nn.Embedding(50, 16)
        self.dropout = torch.nn.Dropout(0.3)  # GradCache must replay the same dropout masks

    def forward(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        mask = inputs["attention_mask"].unsqueeze(-1).float()
        pooled = (self.dropout(self.embedding(inputs["input_ids"])) * mask).sum(1) / mask.sum(1)
        return F.normalize(pooled, dim=-1)


def test_pieces_are_length_sorted_trimmed_and_come_back_in_input_order() -> None:
    inputs = toy_inputs(10, 0)
    pieces, _ = length_sorted_pieces(inputs, 3)
    assert [p["input_ids"].shape[0] for p in pieces] == [3, 3, 3, 1]
    assert all(p["attention_mask"][:, -1].any() for p in pieces)  # trimmed to each piece's own longest row
    model = ToyEncoder().eval()
    with torch.no_grad():
        torch.testing.assert_close(embed_in_pieces(inputs, model, 3), model(inputs))


def test_grad_cache_gives_the_full_batch_gradient_with_dropout() -> None:
    queries, passages = toy_inputs(12, 1), toy_inputs(12, 2)
    gradients = []
    for chunk in (None, 4):
        torch.manual_seed(0)
        model = ToyEncoder().train()
        torch.manual_seed(1)
        if chunk is None:
            info_nce(embed_in_pieces(queries, model, 4), embed_in_pieces(passages, model, 4)).backward()
        else:
            grad_cache_backward(queries, passages, model, info_nce, chunk, torch.device("cpu"))
        gradients.append(model.embedding.weight.grad.clone())
    torch.testing.assert_close(gradients[1], gradients[0], rtol=1e-4, atol=1e-6)
