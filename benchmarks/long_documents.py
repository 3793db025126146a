"""Long documents: one passage cut at the model's limit against the splitter at several sizes, on the served model.

Each XQuAD-R test article in each language is one document (its ~5 paragraphs joined: 16 x 11 = 176 documents);
the questions of those articles are the queries. The passage size is chosen on the dev articles (``--articles
dev``) and reported on the test articles. Measured:
- document level (a document's score is its best passage's): mAP with the same article in all 11 languages as the
  relevant documents, Hit@1 and Hit@10;
- answer passage Hit@10: one of the 10 best passages holds the answer (in any language);
- the same with the paragraphs themselves as passages, the reference for the answer-passage figure.

    python -m benchmarks.long_documents [--model-dir models/multilingual-e5-small-hybrid]

Writes docs/results/long-documents.json and prints a markdown table.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from app.encoder import OnnxEncoder
from app.ingest.splitter import Passage, PassageSplitter
from app.settings import Settings
from training.merge_scale import LANGUAGES, SPLIT_FILE, XQUAD

OUT = Path("docs/results/long-documents.json")
SETTINGS = [(128, 0), (256, 0), (256, 32), (384, 0)]  # (passage tokens, overlap tokens)


@dataclass
class Corpus:
    documents: list[tuple[str, str, str]] = field(default_factory=list)  # (article, lang, text)
    paragraphs: list[tuple[int, int, int]] = field(default_factory=list)  # (document, start, end)
    queries: list[tuple[str, str, str]] = field(default_factory=list)  # (qa id, lang, question)
    answers: dict[str, list[tuple[int, int]]] = field(default_factory=dict)  # qa id -> (document, offset) per lang


def load_corpus(titles: set[str]) -> Corpus:
    corpus = Corpus()
    for lang in LANGUAGES:
        data = json.loads((XQUAD / f"{lang}.json").read_text(encoding="utf-8"))
        for article in data["data"]:
            if article["title"] not in titles:
                continue
            number = len(corpus.documents)
            parts, offset = [], 0
            for paragraph in article["paragraphs"]:
                context = paragraph["context"]
                corpus.paragraphs.append((number, offset, offset + len(context)))
                for qa in paragraph["qas"]:
                    corpus.queries.append((qa["id"], lang, qa["question"].strip()))
                    corpus.answers.setdefault(qa["id"], []).append((number, offset + qa["answers"][0]["answer_start"]))
                parts.append(context)
                offset += len(context) + 2
            corpus.documents.append((article["title"], lang, "\n\n".join(parts)))
    return corpus


def truncated_passages(encoder: OnnxEncoder, corpus: Corpus) -> list[tuple[int, Passage]]:
    """Today's behaviour: each document is one passage, embedded from its first max_length tokens."""
    limit = encoder.manifest.max_length - encoder.token_lengths([""], "passage")[0]
    passages = []
    for number, (_, _, text) in enumerate(corpus.documents):
        offsets = encoder.tokenizer.encode(text, add_special_tokens=False).offsets
        end = offsets[min(limit, len(offsets)) - 1][1]
        passages.append((number, Passage(text, 0, end)))  # the text is cut by the encoder; `end` is what it reads
    return passages


def split_passages(splitter: PassageSplitter, corpus: Corpus) -> list[tuple[int, Passage]]:
    return [(n, p) for n, (_, _, text) in enumerate(corpus.documents) for p in splitter.split(text)]


def paragraph_passages(corpus: Corpus) -> list[tuple[int, Passage]]:
    return [(n, Passage(corpus.documents[n][2][a:b], a, b)) for n, a, b in corpus.paragraphs]


def holds_answer(passage: tuple[int, Passage], answers: list[tuple[int, int]]) -> bool:
    document, span = passage
    return any(document == doc and span.start <= at < span.end for doc, at in answers)


def measure(
    encoder: OnnxEncoder, corpus: Corpus, passages: list[tuple[int, Passage]], query_vectors: np.ndarray
) -> dict:
    started = time.perf_counter()
    vectors = encoder.encode([p.text for _, p in passages], "passage", batch_size=16, progress=True)
    encode_s = time.perf_counter() - started
    owner = np.array([n for n, _ in passages])
    scores = query_vectors @ vectors.T  # queries x passages
    n_docs = len(corpus.documents)
    doc_scores = np.full((len(corpus.queries), n_docs), -np.inf, dtype=np.float32)
    for doc in range(n_docs):
        doc_scores[:, doc] = scores[:, owner == doc].max(axis=1)
    articles = np.array([title for title, _, _ in corpus.documents])
    ap, hit1, hit10, answer10 = [], [], [], []
    top_passages = np.argsort(-scores, axis=1)[:, :10]
    for q, (qa_id, _, _) in enumerate(corpus.queries):
        article = corpus.documents[corpus.answers[qa_id][0][0]][0]
        order = np.argsort(-doc_scores[q])
        relevant = articles[order] == article
        ranks = np.flatnonzero(relevant) + 1
        ap.append(float(np.mean(np.arange(1, len(ranks) + 1) / ranks)))
        hit1.append(bool(relevant[0]))
        hit10.append(bool(relevant[:10].any()))
        answers = corpus.answers[qa_id]
        answer10.append(any(holds_answer(passages[i], answers) for i in top_passages[q]))
    return {
        "passages": len(passages),
        "encode_seconds": round(encode_s, 1),
        "doc_map": round(float(np.mean(ap)), 4),
        "doc_hit1": round(float(np.mean(hit1)), 4),
        "doc_hit10": round(float(np.mean(hit10)), 4),
        "answer_passage_hit10": round(float(np.mean(answer10)), 4),
    }


def markdown(results: dict) -> str:
    rows = [
        "| passages | count | doc mAP | doc Hit@1 | doc Hit@10 | answer passage Hit@10 |",
        "|---|---|---|---|---|---|",
    ]
    for name, r in results["configs"].items():
        rows.append(
            f"| {name} | {r['passages']} | {r['doc_map']:.3f} | {r['doc_hit1']:.3f} | {r['doc_hit10']:.3f} | "
            f"{r['answer_passage_hit10']:.3f} |"
        )
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model-dir", type=Path, default=Settings().model_dir)
    parser.add_argument(
        "--articles",
        choices=["dev", "test"],
        default="test",
        help="dev: to choose the passage size; test: to report it (never chosen on)",
    )
    parser.add_argument("--out", type=Path, help=f"default: {OUT} (test), long-documents-dev.json (dev)")
    args = parser.parse_args(argv)
    out = args.out or (OUT if args.articles == "test" else OUT.with_name("long-documents-dev.json"))
    titles = set(json.loads(SPLIT_FILE.read_text())[args.articles])
    corpus = load_corpus(titles)
    encoder = OnnxEncoder(args.model_dir)
    print(f"{len(corpus.documents)} documents, {len(corpus.queries)} queries, model {encoder.manifest.name}")
    query_vectors = encoder.encode([q for _, _, q in corpus.queries], "query", batch_size=64, progress=True)
    configs = {f"one per document, cut at {encoder.manifest.max_length} tokens": truncated_passages(encoder, corpus)}
    for size, overlap in SETTINGS:
        splitter = PassageSplitter(encoder.tokenizer, encoder.prefix("passage"), size, overlap)
        configs[f"split, {size} tokens, overlap {overlap}"] = split_passages(splitter, corpus)
    configs["paragraphs (reference)"] = paragraph_passages(corpus)
    results = {
        "model": encoder.manifest.name,
        "variant": encoder.variant,
        "articles": args.articles,
        "documents": len(corpus.documents),
        "queries": len(corpus.queries),
        "configs": {},
    }
    for name, passages in configs.items():
        results["configs"][name] = measure(encoder, corpus, passages, query_vectors)
        print(name, results["configs"][name], flush=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")
    print(markdown(results))


if __name__ == "__main__":
    main()
