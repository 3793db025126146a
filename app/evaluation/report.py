"""Figures per model and per query language, differences between models with bootstrap intervals, and the files
``eval`` writes (JSON, a markdown table, a PNG of per-language bars)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from app.evaluation.data import EvalSet
from app.evaluation.metrics import METRICS, own_language_share, paired_bootstrap, query_figures, rank_distance
from app.evaluation.runs import Ranking

LANGUAGE_FIGURES = ("own_language@10", "rank_distance")


def evaluate(rankings: list[Ranking], data: EvalSet, depth: int) -> dict:
    """Every model's figures over all queries and per query language; each model after the first compared with the
    first, query by query (mean difference and 95 % bootstrap interval)."""
    per_query: dict[str, dict[str, list[float | None]]] = {}
    for ranking in rankings:
        columns: dict[str, list[float | None]] = {key: [] for key in (*METRICS, *LANGUAGE_FIGURES)}
        for query in data.queries:
            ranked = ranking.ranked.get(query.id, [])
            grades = data.relevant(query.id)
            for key, value in query_figures(ranked, grades).items():
                columns[key].append(value)
            langs = [ranking.doc_lang.get(doc, "") for doc in ranked]
            columns["own_language@10"].append(own_language_share(langs, query.lang))
            columns["rank_distance"].append(rank_distance(ranked, grades, ranking.doc_lang, depth))
        per_query[ranking.name] = columns
    languages = sorted({q.lang for q in data.queries})
    query_langs = np.array([q.lang for q in data.queries])
    models = {}
    for ranking in rankings:
        columns = per_query[ranking.name]
        models[ranking.name] = {
            "all": _means(columns, np.ones(len(data.queries), dtype=bool)),
            "by_language": {lang: _means(columns, query_langs == lang) for lang in languages},
            "seconds": round(ranking.seconds, 1),
        }
    baseline = rankings[0].name
    differences = {}
    for ranking in rankings[1:]:
        differences[ranking.name] = {
            key: _difference(per_query[baseline][key], per_query[ranking.name][key])
            for key in (*METRICS, *LANGUAGE_FIGURES)
        }
    return {
        "queries": len(data.queries),
        "queries_by_language": {lang: int((query_langs == lang).sum()) for lang in languages},
        "languages_detected": sum(q.lang_detected for q in data.queries),
        "documents": len(data.corpus) or None,
        "depth": depth,
        "baseline": baseline,
        "models": models,
        "differences": differences,
    }


def _means(columns: dict[str, list[float | None]], rows: np.ndarray) -> dict[str, float | None]:
    means: dict[str, float | None] = {"queries": int(rows.sum())}
    for key, values in columns.items():
        kept = [v for v, keep in zip(values, rows, strict=True) if keep and v is not None]
        means[key] = round(float(np.mean(kept)), 4) if kept else None
    return means


def _difference(baseline: list[float | None], other: list[float | None]) -> dict[str, float] | None:
    pairs = [(a, b) for a, b in zip(baseline, other, strict=True) if a is not None and b is not None]
    if len(pairs) < 2:
        return None
    mean, low, high = paired_bootstrap(np.array([a for a, _ in pairs]), np.array([b for _, b in pairs]))
    return {"mean": round(mean, 4), "low": round(low, 4), "high": round(high, 4), "queries": len(pairs)}


HEADLINE = ("ndcg@10", "mrr@10", "recall@10", "recall@100", "map", "hit@1", "hit@10", *LANGUAGE_FIGURES)


def markdown(result: dict) -> str:
    """The table ``eval`` prints: one row per model (all queries), then per query language; the differences."""
    lines = ["| model | queries | " + " | ".join(HEADLINE) + " |", "|---|---|" + "---|" * len(HEADLINE)]
    for name, figures in result["models"].items():
        lines.append(_row(name, figures["all"]))
    for name, figures in result["models"].items():
        for lang, row in figures["by_language"].items():
            lines.append(_row(f"{name} · {lang}", row))
    if result["differences"]:
        lines += ["", f"Differences from {result['baseline']} (mean, 95 % bootstrap interval over queries):", ""]
        lines += ["| model | " + " | ".join(HEADLINE) + " |", "|---|" + "---|" * len(HEADLINE)]
        for name, diffs in result["differences"].items():
            lines.append(f"| {name} | " + " | ".join(_interval(diffs[key]) for key in HEADLINE) + " |")
    return "\n".join(lines)


def _interval(diff: dict | None) -> str:
    return "n/a" if diff is None else f"{diff['mean']:+.3f} [{diff['low']:+.3f}, {diff['high']:+.3f}]"


def _row(name: str, figures: dict) -> str:
    cells = [
        "–" if figures[key] is None else (f"{figures[key]:.1f}" if key == "rank_distance" else f"{figures[key]:.3f}")
        for key in HEADLINE
    ]
    return f"| {name} | {figures['queries']} | " + " | ".join(cells) + " |"


def write_outputs(result: dict, out_dir: Path) -> list[Path]:
    """results.json, results.md and (with matplotlib installed) per-language.png; the paths written."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = [out_dir / "results.json", out_dir / "results.md"]
    written[0].write_text(json.dumps(result, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    written[1].write_text(markdown(result) + "\n", encoding="utf-8")
    try:
        import matplotlib
    except ImportError:
        return written
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    languages = list(result["queries_by_language"])
    names = list(result["models"])
    fig, axes = plt.subplots(1, 2, figsize=(min(14, max(8, 0.5 * len(languages) * len(names) + 4)), 3.6))
    width = 0.8 / len(names)
    for axis, key, label in ((axes[0], "ndcg@10", "nDCG@10"), (axes[1], "own_language@10", "top 10 in own language")):
        for i, name in enumerate(names):
            values = [result["models"][name]["by_language"][lang][key] or 0 for lang in languages]
            axis.bar([x + i * width for x in range(len(languages))], values, width=width, label=name)
        axis.set_xticks([x + width * (len(names) - 1) / 2 for x in range(len(languages))], languages)
        axis.set_ylim(0, 1.05)
        axis.set_title(f"{label}, per query language")
    axes[0].legend(fontsize=8, loc="lower left")
    fig.tight_layout()
    written.append(out_dir / "per-language.png")
    fig.savefig(written[-1], dpi=110)
    plt.close(fig)
    return written
