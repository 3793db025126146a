"""An interrupted index build resumes from the shards it had encoded, and never reuses a shard of other input."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from app import build
from app.encoder import OnnxEncoder, TextKind
from app.ingest.sources import read_corpus


class Interrupted(Exception):
    pass


class CountingEncoder(OnnxEncoder):
    """The real encoder, counting its calls, that can be told to fail (a crash) on one of them."""

    def __init__(self, model_dir: Path, fail_on_call: int | None = None) -> None:
        super().__init__(model_dir, "fp32", runtime="cpu")
        self.calls, self.fail_on_call = 0, fail_on_call

    def encode(self, texts: Sequence[str], kind: TextKind, batch_size: int = 32, progress: bool = False) -> np.ndarray:
        self.calls += 1
        if self.calls == self.fail_on_call:
            raise Interrupted
        return super().encode(texts, kind, batch_size, progress)


def test_a_build_resumes_from_its_encoded_shards(
    tiny_model: Path, tiny_corpus: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(build, "SHARD_PASSAGES", 50)  # 220 passages: 5 shards
    documents = list(read_corpus(tiny_corpus))
    expected = OnnxEncoder(tiny_model, "fp32", runtime="cpu").encode([d.text for d in documents], "passage")
    shards = tmp_path / "shards"
    crashing = CountingEncoder(tiny_model, fail_on_call=4)
    with pytest.raises(Interrupted):
        build.encode_in_shards(crashing, documents, shards, progress=False)
    assert len(list(shards.glob("*.npy"))) == 3 and not list(shards.glob(".*.tmp"))
    resumed = CountingEncoder(tiny_model)
    vectors = build.encode_in_shards(resumed, documents, shards, progress=False)
    assert resumed.calls == 2  # only the two shards the first run had not finished
    assert np.allclose(vectors, expected, atol=1e-5)
    changed = [*documents[:-1], documents[-1].__class__("new-id", documents[-1].text, "en")]
    again = CountingEncoder(tiny_model)
    build.encode_in_shards(again, changed, shards, progress=False)
    assert again.calls == 1  # the last shard's passages changed: that shard only is encoded again
