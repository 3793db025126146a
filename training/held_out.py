"""The held-out part of a user's pairs, and the evaluation a training run ends with on it: the model it started
from against the one it made, with ``polyglot-search eval``'s figures (app/evaluation), per query language and with
bootstrap intervals."""

from __future__ import annotations

import json
import logging
import random
from pathlib import Path

from app.evaluation.data import EvalQuery, EvalSet
from app.evaluation.report import evaluate, markdown, write_outputs
from app.evaluation.runs import rank_with_model
from app.ingest.sources import SourceDocument
from training.data import ParallelData

log = logging.getLogger("training.held_out")


def split_held_out(data: ParallelData, fraction: float, seed: int) -> tuple[ParallelData, ParallelData]:
    """(kept, held out): a seeded ``fraction`` of the ids, with all their languages, so that no translation of a
    held-out pair is trained on. Ids whose pairs share a positive text (several questions on one paragraph) are held
    out together, so that no held-out passage is trained on either; the fraction counts such clusters."""
    clusters = sharing_a_positive(data)
    count = round(len(clusters) * fraction)
    if fraction and (count == 0 or count == len(clusters)):
        raise ValueError(
            f"held_out_fraction {fraction} of {len(clusters)} ids (ids that share a positive counted once) holds out "
            f"{count}: need at least one each"
        )
    chosen = random.Random(f"{seed}/held-out").sample(sorted(clusters), count)
    held = {pair_id for key in chosen for pair_id in clusters[key]}
    return (
        ParallelData({i: g for i, g in data.by_id.items() if i not in held}),
        ParallelData({i: g for i, g in data.by_id.items() if i in held}),
    )


def sharing_a_positive(data: ParallelData) -> dict[str, list[str]]:
    """The ids linked by a shared positive text, by their first id (each id alone when no positive repeats)."""
    parent: dict[str, str] = {}

    def root(pair_id: str) -> str:
        while parent[pair_id] != pair_id:
            parent[pair_id] = parent[parent[pair_id]]
            pair_id = parent[pair_id]
        return pair_id

    first_with: dict[str, str] = {}
    for pair_id in data.ids:
        parent[pair_id] = pair_id
        for example in data.by_id[pair_id].values():
            other = first_with.setdefault(example.positive, pair_id)
            parent[root(pair_id)] = root(other)
    clusters: dict[str, list[str]] = {}
    for pair_id in data.ids:
        clusters.setdefault(root(pair_id), []).append(pair_id)
    return {members[0]: members for members in clusters.values()}


def eval_set_of(data: ParallelData) -> EvalSet:
    """Each held-out query against every distinct held-out positive; its relevant documents are its pair's positives
    in every language (the translations, when ids link them)."""
    document_of: dict[str, str] = {}
    corpus = []
    for pair_id, group in sorted(data.by_id.items()):
        for lang, ex in sorted(group.items()):
            if ex.positive not in document_of:  # a paragraph several questions were written on is one document
                document_of[ex.positive] = f"{pair_id}/{lang}"
                corpus.append(SourceDocument(document_of[ex.positive], ex.positive, lang))
    queries, qrels = [], {}
    for pair_id, group in sorted(data.by_id.items()):
        for lang, ex in sorted(group.items()):
            query_id = f"{pair_id}/{lang}"
            queries.append(EvalQuery(query_id, ex.query, lang))
            qrels[query_id] = {document_of[other.positive]: 1 for other in group.values()}
    return EvalSet(queries, qrels, corpus)


def start_model_dir(model: str, run_dir: Path, query_prefix: str, passage_prefix: str) -> Path:
    """The starting model as the service would serve it: its folder when exported already, else an export of it
    into the run folder (made once)."""
    if (Path(model) / "manifest.json").is_file():
        return Path(model)
    out = run_dir / "start-model"
    if not (out / "manifest.json").is_file():
        from training.export import export_model

        export_model(model, out, query_prefix=query_prefix, passage_prefix=passage_prefix)
    return out


def evaluate_held_out(held_out: ParallelData, start_model: Path, result_model: Path, out_dir: Path) -> dict:
    """Rank the held-out queries with both exported models; print and write the table."""
    data = eval_set_of(held_out)
    depth = min(100, len(data.corpus))
    rankings = [rank_with_model(start_model, data, depth), rank_with_model(result_model, data, depth)]
    result = evaluate(rankings, data, depth)
    table = markdown(result)
    print(f"\nHeld-out pairs ({len(data.queries)} queries, {len(data.corpus)} passages): start vs result\n\n{table}\n")
    write_outputs(result, out_dir)
    (out_dir / "held_out_ids.json").write_text(json.dumps(held_out.ids), encoding="utf-8")
    log.info("held-out evaluation written to %s", out_dir)
    return result
