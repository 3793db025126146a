"""Evaluate a model on a LAReQA-format dataset: mono / cross / multi mAP, R@1, R@10, rank distance.

    python -m training.evaluate --model models/hybrid --data data/xquad-r \
        --split-file data/splits/xquad-r-articles.json --split test --out runs/eval/hybrid

The candidate pool is every sentence of every paragraph (of the chosen articles) in every language, counted by
position. For a question with id q, the relevant candidate in language L is the sentence of q's paragraph in L
that contains the answer start. Settings: multi = all languages pooled (11 relevant), mono = the question's own
language, cross X->Y = only language Y != X, averaged over ordered pairs. A model folder with a manifest.json is
evaluated through the service's ONNX encoder (what is measured is what is served); a plain HF folder or hub id
through torch.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np

from app.text import DEFAULT_PASSAGE_PREFIX, DEFAULT_QUERY_PREFIX
from training.data import answer_sentence, lareqa_paragraphs, load_split_titles
from training.metrics import average_precision, rank_distance, ranks_of, recall_at
from training.plots import plot_matrix

log = logging.getLogger("training.evaluate")
SETTINGS = ("mono", "cross", "multi")


@dataclass
class RetrievalSet:
    languages: list[str]
    questions: dict[str, list[tuple[str, str]]] = field(default_factory=dict)  # lang -> [(qid, text)]
    candidates: list[str] = field(default_factory=list)
    candidate_lang: list[str] = field(default_factory=list)
    answer: dict[tuple[str, str], int] = field(default_factory=dict)  # (qid, lang) -> candidate index

    def translation_groups(self) -> np.ndarray:
        """A group id per candidate: the answer sentences of one question in every language form one group
        (merged when a sentence answers several questions); every other sentence is a group of its own, because
        XQuAD-R splits the translations of a paragraph into different numbers of sentences."""
        parent = list(range(len(self.candidates)))

        def root(i: int) -> int:
            while parent[i] != i:
                parent[i] = parent[parent[i]]
                i = parent[i]
            return i

        answers_by_question: dict[str, list[int]] = {}
        for (qid, _), index in self.answer.items():
            answers_by_question.setdefault(qid, []).append(index)
        for indices in answers_by_question.values():
            for index in indices[1:]:
                parent[root(index)] = root(indices[0])
        return np.array([root(i) for i in range(len(self.candidates))])

    @property
    def question_ids(self) -> list[str]:
        """Ids that have an answer sentence in every language (the parallel questions)."""
        ids = {qid for qid, _ in self.questions[self.languages[0]]}
        return sorted(i for i in ids if all((i, lang) in self.answer for lang in self.languages))


def load_retrieval_set(folder: Path, languages: list[str], titles: set[str] | None = None) -> RetrievalSet:
    data = RetrievalSet(languages)
    for lang in languages:
        data.questions[lang] = []
        for _, paragraph in lareqa_paragraphs(folder, lang, titles):
            first = len(data.candidates)
            data.candidates.extend(s.strip() for s in paragraph["sentences"])
            data.candidate_lang.extend([lang] * len(paragraph["sentences"]))
            for qa in paragraph["qas"]:
                data.questions[lang].append((qa["id"], qa["question"].strip()))
                data.answer[(qa["id"], lang)] = first + answer_sentence(paragraph, qa["answers"][0]["answer_start"])
    if not data.candidates:
        raise ValueError(f"{folder}: no paragraphs for languages {languages} in the chosen articles")
    return data


class Embedder(Protocol):
    name: str

    def encode(self, texts: list[str], kind: str) -> np.ndarray: ...


class OnnxEmbedder:
    """The service's own encoder (ONNX Runtime), prefixes and max length from the model's manifest."""

    def __init__(self, model_dir: Path, variant: str | None, batch_size: int = 64) -> None:
        from app.encoder import OnnxEncoder

        self.encoder = OnnxEncoder(model_dir, variant, runtime="auto")  # type: ignore[arg-type]
        self.name = f"{self.encoder.manifest.name} (onnx {self.encoder.variant})"
        self.batch_size = batch_size

    def encode(self, texts: list[str], kind: str) -> np.ndarray:
        return self.encoder.encode(texts, kind, self.batch_size, progress=True)  # type: ignore[arg-type]


class TorchEmbedder:
    """A torch model, on the GPU when there is one (evaluation during recipe sweeps)."""

    def __init__(self, model: str, query_prefix: str, passage_prefix: str, batch_size: int = 64) -> None:
        import torch

        from training.model import load_encoder

        self.loaded = load_encoder(model)
        if torch.cuda.is_available():
            self.loaded.encoder.to("cuda")
        self.name = f"{model} (torch)"
        self.prefixes = {"query": query_prefix, "passage": passage_prefix}
        self.batch_size = batch_size

    def encode(self, texts: list[str], kind: str) -> np.ndarray:
        label = {"query": "encoding queries", "passage": "encoding passages"}[kind]
        return self.loaded.embed(texts, self.prefixes[kind], self.batch_size, label).numpy()


def make_embedder(
    model: str,
    variant: str | None = None,
    query_prefix: str = DEFAULT_QUERY_PREFIX,
    passage_prefix: str = DEFAULT_PASSAGE_PREFIX,
) -> Embedder:
    if (Path(model) / "manifest.json").is_file():
        return OnnxEmbedder(Path(model), variant)
    return TorchEmbedder(model, query_prefix, passage_prefix)


GROUP_DEPTH = 500  # candidates looked at to find a query's first 10 translation groups


def first_hits(order: np.ndarray, relevant: np.ndarray, groups: np.ndarray) -> dict[str, np.ndarray]:
    """Per query (rows of ``order``, candidates best first): is any relevant candidate at rank 1 / in the top 10,
    and is the answer's translation group among the first 10 groups (one slot per group, as grouped results
    show it)?"""
    top10 = order[:, :10]
    hit = top10[:, :, None] == relevant[:, None, :]
    answer_group = groups[relevant[:, 0]]
    grouped = np.zeros(len(order), dtype=bool)
    for row, candidates in enumerate(groups[order]):
        _, first = np.unique(candidates, return_index=True)
        grouped[row] = answer_group[row] in candidates[np.sort(first)[:10]]
    return {"hit1": hit[:, 0].any(axis=1), "hit10": hit.any(axis=(1, 2)), "group_hit10": grouped}


def evaluate(embedder: Embedder, data: RetrievalSet, chunk: int = 256) -> dict:
    started = time.perf_counter()
    candidates = embedder.encode(data.candidates, "passage")
    candidate_lang = np.array(data.candidate_lang)
    lang_rows = {lang: np.flatnonzero(candidate_lang == lang) for lang in data.languages}
    ids = data.question_ids
    langs = data.languages
    # per query language: ranks of the 11 relevant candidates in the multilingual pool and within each language
    multi_ranks: list[np.ndarray] = []
    per_lang_ranks: dict[tuple[str, str], list[np.ndarray]] = {(x, y): [] for x in langs for y in langs}
    own_language_top10: list[float] = []
    hits: dict[str, list[np.ndarray]] = {"hit1": [], "hit10": [], "group_hit10": []}
    groups = data.translation_groups()
    for x in langs:
        text_by_id = dict(data.questions[x])
        queries = embedder.encode([text_by_id[i] for i in ids], "query")
        relevant = np.array([[data.answer[(i, y)] for y in langs] for i in ids])  # [n_ids, n_langs]
        for start in range(0, len(ids), chunk):
            scores = queries[start : start + chunk] @ candidates.T
            rel = relevant[start : start + chunk]
            rel_scores = np.take_along_axis(scores, rel, axis=1)
            multi_ranks.append(ranks_of(scores, rel_scores))
            for j, y in enumerate(langs):
                within = ranks_of(scores[:, lang_rows[y]], rel_scores[:, j : j + 1])
                per_lang_ranks[(x, y)].append(within)
            order = np.argsort(-scores, axis=1)[:, :GROUP_DEPTH]
            own_language_top10.extend((candidate_lang[order[:, :10]] == x).mean(axis=1))
            for key, values in first_hits(order, rel, groups).items():
                hits[key].append(values)
    multi = np.concatenate(multi_ranks)
    pair = {key: np.concatenate(value) for key, value in per_lang_ranks.items()}
    matrix = {x: {y: float(average_precision(pair[(x, y)]).mean()) for y in langs} for x in langs}

    def summary(ranks: list[np.ndarray]) -> dict[str, float]:
        return {
            "map": float(np.mean([average_precision(r).mean() for r in ranks])),
            "r1": float(np.mean([recall_at(r, 1).mean() for r in ranks])),
            "r10": float(np.mean([recall_at(r, 10).mean() for r in ranks])),
        }

    mono = summary([pair[(x, x)] for x in langs])
    cross = summary([pair[(x, y)] for x in langs for y in langs if x != y])
    multi_summary = summary([multi])
    result = {
        "model": embedder.name,
        "n_questions": len(ids),
        "n_queries": len(ids) * len(langs),
        "n_candidates": len(data.candidates),
        "languages": langs,
        "rank_distance": float(rank_distance(multi).mean()),
        "own_language_share_top10": float(np.mean(own_language_top10)),
        **{f"multi_{key}": float(np.concatenate(values).mean()) for key, values in hits.items()},
        "map_matrix": matrix,
        "seconds": round(time.perf_counter() - started, 1),
    }
    for setting, values in (("mono", mono), ("cross", cross), ("multi", multi_summary)):
        result[f"{setting}_map"] = values["map"]
        result[f"{setting}_r1"] = values["r1"]
        result[f"{setting}_r10"] = values["r10"]
    return result


METRIC_KEYS = [
    "mono_map",
    "cross_map",
    "multi_map",
    "mono_r1",
    "cross_r1",
    "multi_r1",
    "mono_r10",
    "cross_r10",
    "multi_r10",
    "rank_distance",
]


def markdown_table(results: dict[str, dict]) -> str:
    header = (
        "| model | mono mAP | cross mAP | multi mAP | mono R@1 | cross R@1 | multi R@1 | mono R@10 | cross R@10 "
        "| multi R@10 | rank distance |"
    )
    lines = [header, "|---" * 11 + "|"]
    for name, r in results.items():
        cells = [f"{r[k]:.3f}" for k in METRIC_KEYS[:-1]] + [f"{r['rank_distance']:.1f}"]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_outputs(result: dict, out_dir: Path) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "results.json").write_text(json.dumps(result, indent=2), encoding="utf-8")
    (out_dir / "results.md").write_text(markdown_table({result["model"]: result}) + "\n", encoding="utf-8")
    plot_matrix(result, out_dir / "map_matrix.png")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="LAReQA-style retrieval evaluation (mono / cross / multi).")
    parser.add_argument("--model", required=True, help="model folder (ONNX via its manifest) or HF id/folder")
    parser.add_argument("--data", type=Path, required=True, help="folder of <lang>.json LAReQA files")
    parser.add_argument("--languages", default="ar,de,el,en,es,hi,ru,th,tr,vi,zh")
    parser.add_argument("--split-file", type=Path, help="JSON of article titles per split")
    parser.add_argument("--split", help="which split of --split-file to use (default: all articles)")
    parser.add_argument("--variant", choices=["fp32", "int8"], help="ONNX variant (default: the manifest's)")
    parser.add_argument("--query-prefix", default=DEFAULT_QUERY_PREFIX, help="torch models only")
    parser.add_argument("--passage-prefix", default=DEFAULT_PASSAGE_PREFIX, help="torch models only")
    parser.add_argument("--out", type=Path, required=True, help="folder for results.json/.md and the heatmap")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    titles = load_split_titles(args.split_file, args.split) if args.split_file and args.split else None
    data = load_retrieval_set(args.data, args.languages.split(","), titles)
    result = evaluate(make_embedder(args.model, args.variant, args.query_prefix, args.passage_prefix), data)
    result["dataset"] = f"{args.data} ({args.split or 'all'} articles)"
    write_outputs(result, args.out)
    print(markdown_table({result["model"]: result}))


if __name__ == "__main__":
    main()
