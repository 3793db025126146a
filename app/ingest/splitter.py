"""Documents into passages of at most N model tokens, cut at sentence or paragraph boundaries.

Tokens are counted with the served model's own tokenizer, as the model reads a passage (prefix and special tokens
included), so a passage is never cut again when it is encoded. Sentence ends are recognised for the scripts of the
product's languages: ``. ! ? …`` followed by a space (Latin, Cyrillic, Greek, whose question mark is ``;``),
``؟ ۔`` (Arabic script), ``। ॥`` (Devanagari) and the full-width ``。！？；`` (Chinese, no space needed); line breaks
always end a unit. Thai marks no sentence end, so a Thai paragraph longer than a passage is cut at the space
(phrase boundary) closest to the limit, and a run without any space (a long Chinese sentence) at a token boundary.
Consecutive passages may share ``overlap_tokens`` of whole sentences.
"""

from __future__ import annotations

import bisect
import re
from dataclasses import dataclass

from tokenizers import Tokenizer

from app.text import model_input

_UNIT_END = re.compile(
    r"[.!?…;؟۔।॥]+[\"'”’»)\]]*(?=\s)"  # an end mark, closing quotes/brackets, then whitespace
    r"|[。！？；]+[\"'”’」』）)]*"  # full-width end marks: no space follows in Chinese
    r"|\n"
)
_SPACE = re.compile(r"\s+")


@dataclass(frozen=True)
class Passage:
    """A passage of a document: ``document[start:end] == text``."""

    text: str
    start: int
    end: int


def sentence_spans(text: str) -> list[tuple[int, int]]:
    """The (start, end) character spans of the text's sentences and lines, without surrounding whitespace."""
    spans = []
    begin = 0
    for mark in _UNIT_END.finditer(text):
        spans.append((begin, mark.end()))
        begin = mark.end()
    spans.append((begin, len(text)))
    return [trimmed for span in spans if (trimmed := _trim(text, *span))]


def _trim(text: str, start: int, end: int) -> tuple[int, int] | None:
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return (start, end) if start < end else None


class PassageSplitter:
    """Cuts texts into passages of at most ``max_tokens`` as ``tokenizer`` counts them with ``prefix``."""

    def __init__(self, tokenizer: Tokenizer, prefix: str, max_tokens: int, overlap_tokens: int = 0) -> None:
        if max_tokens < 16:
            raise ValueError(f"a passage must hold at least 16 tokens, got {max_tokens}")
        if not 0 <= overlap_tokens < max_tokens // 2:
            half = max_tokens // 2
            raise ValueError(f"overlap must be at least 0 and below half a passage ({half}), got {overlap_tokens}")
        self.tokenizer = tokenizer
        self.prefix = prefix
        self.max_tokens = max_tokens
        self.overlap_tokens = overlap_tokens
        self.reserved = self.count([""])[0]  # the prefix and the special tokens

    def count(self, texts: list[str]) -> list[int]:
        """Tokens the model reads for each text as a passage (prefix and special tokens included)."""
        return [len(e.ids) for e in self.tokenizer.encode_batch([model_input(self.prefix, t) for t in texts])]

    def split(self, text: str, tokens: int | None = None) -> list[Passage]:
        """The passages of ``text``, in order; a text within the limit is one passage (whitespace trimmed).
        ``tokens``: the text's ``count``, when the caller has it already."""
        whole = _trim(text, 0, len(text))
        if whole is None:
            return []
        if (self.count([text])[0] if tokens is None else tokens) <= self.max_tokens:
            return [Passage(text[whole[0] : whole[1]], *whole)]
        spans = self._pack(text, self.max_tokens - self.reserved)
        passages = []
        for start, end in spans:  # counting the pieces one by one can differ from counting them together: check
            piece = text[start:end]
            excess = self.count([piece])[0] - self.max_tokens
            if excess <= 0:
                passages.append(Passage(piece, start, end))
            else:
                tighter = PassageSplitter(self.tokenizer, self.prefix, self.max_tokens - excess - 2)
                passages += [Passage(p.text, start + p.start, start + p.end) for p in tighter.split(piece)]
        return passages

    def _pack(self, text: str, budget: int) -> list[tuple[int, int]]:
        index = _TokenIndex([start for start, _ in self.tokenizer.encode(text, add_special_tokens=False).offsets])
        tokens = index.between
        units: list[tuple[int, int, int]] = []  # start, end, tokens
        for start, end in sentence_spans(text):
            n = tokens(start, end)
            if n <= budget:
                units.append((start, end, n))
            else:
                units += _cut_long(text, start, end, budget, index)
        spans: list[tuple[int, int]] = []
        current: list[tuple[int, int, int]] = []
        for unit in units:
            if current and tokens(current[0][0], unit[1]) > budget:
                spans.append((current[0][0], current[-1][1]))
                current = self._overlap(current, budget - unit[2])
            current.append(unit)
        if current:
            spans.append((current[0][0], current[-1][1]))
        return spans

    def _overlap(self, previous: list[tuple[int, int, int]], room: int) -> list[tuple[int, int, int]]:
        """The last whole sentences of the previous passage, within the overlap and the room the next unit leaves."""
        kept: list[tuple[int, int, int]] = []
        total = 0
        for unit in reversed(previous[1:]):  # never the whole previous passage: each passage must advance
            total += unit[2]
            if total > min(self.overlap_tokens, room):
                break
            kept.insert(0, unit)
        return kept


class _TokenIndex:
    """Token start offsets of a text: how many tokens a character span holds, without tokenizing it again."""

    def __init__(self, starts: list[int]) -> None:
        self.starts = starts

    def between(self, start: int, end: int) -> int:
        return bisect.bisect_left(self.starts, end) - bisect.bisect_left(self.starts, start)


def _cut_long(text: str, start: int, end: int, budget: int, index: _TokenIndex) -> list[tuple[int, int, int]]:
    """A unit over the budget, cut at the last space that keeps each piece within it, else at a token."""
    pieces = []
    while start < end:
        if index.between(start, end) <= budget:
            pieces.append((start, end, index.between(start, end)))
            break
        first = bisect.bisect_left(index.starts, start)
        limit = index.starts[first + budget] if first + budget < len(index.starts) else end  # first token out
        spaces = [m.start() for m in _SPACE.finditer(text, start, limit)]
        cut = spaces[-1] if spaces and spaces[-1] > start else limit
        piece = _trim(text, start, cut)
        if piece is not None:
            pieces.append((*piece, index.between(*piece)))
        start = cut
        while start < end and text[start].isspace():
            start += 1
    return pieces
