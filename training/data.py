"""Parallel training data: (query, positive, hard negatives) per (id, language), from two formats.

- LAReQA / SQuAD JSON (one file per language, parallel by question id): positive = the sentence that contains
  the answer start, hard negatives = the other sentences of the paragraph. Articles can be limited to a split.
- Parallel JSONL (users' own data), one record per line:
  ``{"id": str, "lang": str, "query": str, "positive": str, "negatives": [str, ...]?}``; records sharing an
  ``id`` are translations of each other (what mono / cross batches are built from).
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from app.ingest.languages import language_detector
from app.jsonl import json_objects

log = logging.getLogger(__name__)


class DataError(ValueError):
    """Malformed training data; the message names the file and the line or record."""


@dataclass(frozen=True)
class Example:
    id: str
    lang: str
    query: str
    positive: str
    negatives: tuple[str, ...] = ()


@dataclass
class ParallelData:
    """Examples grouped by id: ``by_id[id][lang]``."""

    by_id: dict[str, dict[str, Example]] = field(default_factory=dict)

    def add(self, example: Example, where: str) -> None:
        group = self.by_id.setdefault(example.id, {})
        if example.lang in group:
            raise DataError(f"{where}: duplicate record for id {example.id!r} in language {example.lang!r}")
        group[example.lang] = example

    @property
    def ids(self) -> list[str]:
        return sorted(self.by_id)

    @property
    def languages(self) -> list[str]:
        return sorted({lang for group in self.by_id.values() for lang in group})

    def restrict(self, languages: list[str], every_language: bool = True) -> ParallelData:
        """The records in ``languages``; with ``every_language`` each of them must be in the data."""
        wanted = set(languages)
        missing = wanted - set(self.languages)
        if every_language and missing:
            raise DataError(f"languages {sorted(missing)} are not in the data (it has {self.languages})")
        kept = {i: {lang: ex for lang, ex in g.items() if lang in wanted} for i, g in self.by_id.items()}
        return ParallelData({i: g for i, g in kept.items() if g})

    def merged(self, other: ParallelData, where: str) -> ParallelData:
        """Both datasets' records; a shared id links translations, a shared (id, language) is an error."""
        result = ParallelData({pair_id: dict(group) for pair_id, group in self.by_id.items()})
        for group in other.by_id.values():
            for example in group.values():
                result.add(example, where)
        return result

    def __len__(self) -> int:
        return sum(len(group) for group in self.by_id.values())


def load_split_titles(split_file: Path, split: str) -> set[str]:
    splits = json.loads(Path(split_file).read_text(encoding="utf-8"))
    if split not in splits:
        raise DataError(f"{split_file}: no split {split!r} (it has {sorted(splits)})")
    return set(splits[split])


def answer_sentence(paragraph: dict, answer_start: int) -> int:
    """Index of the sentence whose [start, end) span holds the answer start (LAReQA recipe)."""
    for index, (start, end) in enumerate(paragraph["sentence_breaks"]):
        if start <= answer_start < end:
            return index
    raise ValueError(f"answer start {answer_start} is outside every sentence")


def lareqa_paragraphs(folder: Path, lang: str, titles: set[str] | None = None) -> Iterator[tuple[str, dict]]:
    """``(where, paragraph)`` for each paragraph of one language's LAReQA file, articles limited to ``titles``:
    the one LAReQA reader (training here, evaluation in training/evaluate.py)."""
    path = Path(folder) / f"{lang}.json"
    if not path.is_file():
        raise DataError(f"{path}: missing (LAReQA folder needs one <lang>.json per language)")
    try:
        articles = json.loads(path.read_text(encoding="utf-8"))["data"]
    except (json.JSONDecodeError, KeyError) as exc:
        raise DataError(f"{path}: not a SQuAD/LAReQA JSON file ({exc})") from exc
    for article in articles:
        if titles is not None and article.get("title") not in titles:
            continue
        for p_index, paragraph in enumerate(article["paragraphs"]):
            where = f"{path} article {article.get('title')!r} paragraph {p_index}"
            if "sentences" not in paragraph or "sentence_breaks" not in paragraph:
                raise DataError(f"{where}: no 'sentences'/'sentence_breaks' (not LAReQA format)")
            yield where, paragraph


def read_lareqa(folder: Path, languages: list[str], titles: set[str] | None = None) -> ParallelData:
    data = ParallelData()
    skipped: Counter[str] = Counter()
    for lang in languages:
        for where, paragraph in lareqa_paragraphs(folder, lang, titles):
            sentences = paragraph["sentences"]
            for qa in paragraph["qas"]:
                try:
                    positive = answer_sentence(paragraph, qa["answers"][0]["answer_start"])
                except (ValueError, IndexError, KeyError) as exc:
                    skipped[f"{lang}: {exc}"] += 1
                    continue
                negatives = tuple(s for i, s in enumerate(sentences) if i != positive)
                example = Example(qa["id"], lang, qa["question"].strip(), sentences[positive].strip(), negatives)
                data.add(example, f"{where} question {qa['id']}")
    for reason, count in skipped.items():
        log.warning("skipped %d questions (%s)", count, reason)
    if not data.by_id:
        raise DataError(f"{folder}: no questions found for languages {languages} in the chosen articles")
    return data


def read_parallel_jsonl(path: Path) -> ParallelData:
    """``{"query", "positive", "lang"?, "id"?, "negatives"?}`` per line: plain (query, passage) pairs in any
    language. Records that share an ``id`` are translations of one pair (what cross-language batches are built
    from); a record without one is a pair of its own. A missing ``lang`` is detected from the query."""
    data = ParallelData()
    for number, (where, record) in enumerate(json_objects(path, DataError, ("query", "positive")), start=1):
        negatives = record.get("negatives", [])
        if not isinstance(negatives, list) or not all(isinstance(n, str) and n.strip() for n in negatives):
            raise DataError(f"{where}: 'negatives' must be a list of non-empty strings")
        unknown = set(record) - {"id", "lang", "query", "positive", "negatives"}
        if unknown:
            raise DataError(f"{where}: unknown field(s) {sorted(unknown)}")
        pair_id = record.get("id", f"{path}#{number}")  # the file in it: several files' records never collide
        if not isinstance(pair_id, str) or not pair_id:
            raise DataError(f"{where}: 'id' must be a non-empty string")
        lang = record.get("lang") or language_detector().detect(record["query"])
        if not isinstance(lang, str):
            raise DataError(f"{where}: 'lang' must be a string")
        example = Example(pair_id, lang, record["query"].strip(), record["positive"].strip(), tuple(negatives))
        data.add(example, where)
    if not data.by_id:
        raise DataError(f"{path}: no records")
    return data


def load_data(
    fmt: str, path: Path, languages: list[str], split_file: Path | None = None, split: str | None = None
) -> ParallelData:
    if fmt == "lareqa":
        titles = load_split_titles(split_file, split) if split_file and split else None
        data = read_lareqa(path, languages, titles)
    elif fmt == "jsonl":
        data = read_parallel_jsonl(path).restrict(languages)
    else:
        raise DataError(f"unknown data format {fmt!r} (use 'lareqa' or 'jsonl')")
    log.info("%s: %d ids, %d examples, languages %s", path, len(data.by_id), len(data), data.languages)
    return data


def add_extra_pairs(data: ParallelData, paths: list[str], languages: list[str]) -> ParallelData:
    """``data`` with the records of each JSONL file in ``paths`` that are in ``languages`` (any data format's
    training set can take a user's plain pairs; they join the monolingual batches of their languages, and the
    cross-language ones where their ids link translations)."""
    for path in paths:
        extra = read_parallel_jsonl(Path(path)).restrict(languages, every_language=False)
        if not extra.by_id:
            raise DataError(f"{path}: no records in the training languages {languages}")
        data = data.merged(extra, path)
        log.info("%s: %d ids, %d examples added, languages %s", path, len(extra.by_id), len(extra), extra.languages)
    return data
