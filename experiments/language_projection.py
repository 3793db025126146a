"""Training-free language-bias removal on top of a model, measured on the XQuAD-R dev articles.

    python -m experiments.language_projection --model models/multilingual-e5-small-hybrid

LIR (linear language-identity removal): fit the per-language mean passage embeddings on the *train* articles
(all 11 languages), take the orthonormal basis of their span after removing the overall mean (rank n_languages - 1),
project it out of queries and passages alike, re-normalise. No query language is needed at search time, so it
could be baked into the exported graph. Centring: subtract the mean query embedding of the query's language from
queries and the mean passage embedding of the passage's language from passages (both fitted on the train
articles), re-normalise; here with the true language labels, i.e. the best a language identifier could do. Printed
and written to ``docs/results/language-projection-dev.json``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from experiments.default_model_report import LANGUAGES, SPLIT_FILE, XQUAD
from training.data import load_split_titles
from training.evaluate import Embedder, OnnxEmbedder, evaluate, load_retrieval_set

ROOT = Path(__file__).resolve().parent.parent


def language_subspace(embeddings: np.ndarray, languages: list[str]) -> np.ndarray:
    """Orthonormal basis [dim, n_languages - 1] of the span of the centred per-language means."""
    labels = np.array(languages)
    means = np.stack([embeddings[labels == lang].mean(axis=0) for lang in sorted(set(languages))])
    centred = means - means.mean(axis=0)
    u, _, _ = np.linalg.svd(centred.T, full_matrices=False)
    return u[:, : len(means) - 1]


class Cached:
    """Each list of texts is encoded once, however many variants are evaluated on it."""

    def __init__(self, inner: Embedder) -> None:
        self.inner, self.name, self.memo = inner, inner.name, {}

    def encode(self, texts: list[str], kind: str) -> np.ndarray:
        key = (kind, tuple(texts))
        if key not in self.memo:
            self.memo[key] = self.inner.encode(texts, kind)
        return self.memo[key]


class Projected:
    def __init__(self, inner: Embedder, basis: np.ndarray) -> None:
        self.inner, self.basis = inner, basis
        self.name = f"{inner.name} + LIR"

    def encode(self, texts: list[str], kind: str) -> np.ndarray:
        vectors = self.inner.encode(texts, kind)
        vectors = vectors - (vectors @ self.basis) @ self.basis.T
        return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


class Centred:
    """Per-language mean-centring with the true language of every text (``language_of``: text -> language)."""

    def __init__(self, inner: Embedder, means: dict[str, dict[str, np.ndarray]], language_of: dict) -> None:
        self.inner, self.means, self.language_of = inner, means, language_of
        self.name = f"{inner.name} + centring"

    def encode(self, texts: list[str], kind: str) -> np.ndarray:
        vectors = self.inner.encode(texts, kind)
        vectors = vectors - np.stack([self.means[kind][self.language_of[kind][text]] for text in texts])
        return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def language_means(embeddings: np.ndarray, languages: list[str]) -> dict[str, np.ndarray]:
    labels = np.array(languages)
    return {lang: embeddings[labels == lang].mean(axis=0) for lang in sorted(set(languages))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "results" / "language-projection-dev.json")
    args = parser.parse_args()
    embedder = Cached(OnnxEmbedder(args.model, "fp32"))
    train = load_retrieval_set(XQUAD, LANGUAGES, load_split_titles(SPLIT_FILE, "train"))
    sample = slice(None, None, 4)  # a quarter of the train sentences is plenty for 11 means
    passages = embedder.encode(train.candidates[sample], "passage")
    basis = language_subspace(passages, train.candidate_lang[sample])
    questions = [(lang, text) for lang in LANGUAGES for _, text in train.questions[lang][sample]]
    means = {
        "passage": language_means(passages, train.candidate_lang[sample]),
        "query": language_means(embedder.encode([t for _, t in questions], "query"), [lang for lang, _ in questions]),
    }
    dev = load_retrieval_set(XQUAD, LANGUAGES, load_split_titles(SPLIT_FILE, "dev"))
    language_of = {  # a text written alike in two languages (a name, a number) takes the later one's mean
        "passage": dict(zip(dev.candidates, dev.candidate_lang, strict=True)),
        "query": {text: lang for lang in LANGUAGES for _, text in dev.questions[lang]},
    }
    keys = ("mono_map", "cross_map", "multi_map", "rank_distance", "own_language_share_top10", "multi_hit1")
    keys += ("multi_hit10", "multi_group_hit10")
    rows = {}
    variants = {
        "as is": embedder,
        "LIR": Projected(embedder, basis),
        "centring (true languages)": Centred(embedder, means, language_of),
    }
    for name, model in variants.items():
        result = evaluate(model, dev)
        rows[name] = {key: round(result[key], 4) for key in keys}
        print(name, json.dumps(rows[name]))
    args.out.write_text(json.dumps({"model": str(args.model), "dev_articles": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
