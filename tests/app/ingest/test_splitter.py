"""The splitter on the demo languages' real text, counted with a tokenizer trained on them."""

from __future__ import annotations

import itertools
import re

import pytest
from tokenizers import Tokenizer

from app.ingest.splitter import PassageSplitter, sentence_spans
from tests.tiny import demo_records, train_tokenizer

LANGUAGES = ["ar", "de", "el", "en", "es", "hi", "ru", "th", "tr", "vi", "zh"]
# what may end a passage that was not cut inside an over-long unit, per script
SENTENCE_END = {"zh": r"[。！？；”」]$", "hi": r"[।॥?!.\"”)]$", "ar": r"[.!?؟\"”)»]$"}


@pytest.fixture(scope="module")
def tokenizer() -> Tokenizer:
    return train_tokenizer([r["text"] for r in demo_records()], vocab_size=4000)


def article(lang: str, paragraphs: int = 6) -> str:
    rows = [r for r in demo_records(languages={lang})][:paragraphs]
    return "\n\n".join(r["text"] for r in rows)


@pytest.mark.parametrize("lang", LANGUAGES)
def test_passages_fit_the_limit_and_point_back_into_the_document(tokenizer: Tokenizer, lang: str) -> None:
    splitter = PassageSplitter(tokenizer, "passage: ", 96)
    text = article(lang)
    passages = splitter.split(text)
    assert len(passages) > 3
    assert max(splitter.count([p.text for p in passages])) <= 96
    for passage in passages:
        assert text[passage.start : passage.end] == passage.text and passage.text == passage.text.strip()
    # nothing lost: every non-space character of the document is in some passage
    covered = set()
    for passage in passages:
        covered.update(range(passage.start, passage.end))
    assert all(i in covered for i, ch in enumerate(text) if not ch.isspace())
    # without overlap the passages follow each other
    assert all(a.end <= b.start for a, b in itertools.pairwise(passages))


def enclosing(spans: list[tuple[int, int]], position: int) -> tuple[int, int] | None:
    return next(((a, b) for a, b in spans if a < position < b), None)


@pytest.mark.parametrize("lang", ["en", "de", "ru", "el", "zh", "hi", "ar"])
def test_passages_end_at_sentence_ends_unless_the_sentence_is_too_long(tokenizer: Tokenizer, lang: str) -> None:
    text = article(lang)
    splitter = PassageSplitter(tokenizer, "passage: ", 128)
    passages = splitter.split(text)
    sentences = sentence_spans(text)
    pattern = SENTENCE_END.get(lang, r"[.!?;\"”)»]$")
    whole = 0
    for passage in passages:
        if re.search(pattern, passage.text):
            whole += 1
        else:  # cut inside a sentence: only because that sentence alone is over the limit
            sentence = enclosing(sentences, passage.end)
            assert sentence is not None, passage.text[-30:]
            assert splitter.count([text[sentence[0] : sentence[1]]])[0] > 128
    assert whole >= len(passages) // 2


def test_thai_is_cut_at_spaces_unless_a_phrase_is_too_long(tokenizer: Tokenizer) -> None:
    text = article("th")
    splitter = PassageSplitter(tokenizer, "passage: ", 64)
    passages = splitter.split(text)
    phrases = [(m.start(), m.end()) for m in re.finditer(r"\S+", text)]
    at_spaces = 0
    for passage in passages[:-1]:
        if text[passage.end].isspace():
            at_spaces += 1
        else:
            phrase = enclosing(phrases, passage.end)
            assert phrase is not None and splitter.count([text[phrase[0] : phrase[1]]])[0] > 64
    assert at_spaces >= len(passages) // 3


def test_a_run_without_spaces_or_marks_is_cut_at_tokens(tokenizer: Tokenizer) -> None:
    text = "".join(article("th").split())  # no space, no sentence mark
    subwords = Tokenizer.from_str(tokenizer.to_str())
    subwords.model.max_input_chars_per_word = len(text)  # a long word in pieces, as SentencePiece does, not [UNK]
    splitter = PassageSplitter(subwords, "passage: ", 48)
    passages = splitter.split(text)
    assert len(passages) > 5 and max(splitter.count([p.text for p in passages])) <= 48
    assert "".join(p.text for p in passages) == text


def test_a_short_document_is_one_passage(tokenizer: Tokenizer) -> None:
    text = "  A short note.\n"
    (only,) = PassageSplitter(tokenizer, "passage: ", 96).split(text)
    assert (only.text, only.start, only.end) == ("A short note.", 2, 15)
    assert PassageSplitter(tokenizer, "passage: ", 96).split(" \n ") == []


def test_overlap_repeats_whole_sentences(tokenizer: Tokenizer) -> None:
    text = article("en")
    plain = PassageSplitter(tokenizer, "passage: ", 480).split(text)
    overlapping = PassageSplitter(tokenizer, "passage: ", 480, overlap_tokens=200).split(text)
    assert len(overlapping) > len(plain)
    shared = [a.end > b.start for a, b in itertools.pairwise(overlapping)]
    assert sum(shared) >= len(shared) // 2
    for a, b in itertools.pairwise(overlapping):
        assert b.start > a.start  # always moves on
        if a.end > b.start:  # what is shared is whole sentences of the previous passage
            assert b.start in {start for start, _ in sentence_spans(text)}


def test_splitting_is_deterministic(tokenizer: Tokenizer) -> None:
    splitter = PassageSplitter(tokenizer, "passage: ", 80, overlap_tokens=16)
    assert splitter.split(article("vi")) == splitter.split(article("vi"))


def test_limits_are_checked(tokenizer: Tokenizer) -> None:
    with pytest.raises(ValueError, match="at least 16 tokens"):
        PassageSplitter(tokenizer, "passage: ", 8)
    with pytest.raises(ValueError, match="below half a passage"):
        PassageSplitter(tokenizer, "passage: ", 64, overlap_tokens=40)


@pytest.mark.parametrize(
    ("text", "sentences"),
    [
        ("Hello world. Next one! And a third?", ["Hello world.", "Next one!", "And a third?"]),
        ("他赢了。真的吗？是的！", ["他赢了。", "真的吗？", "是的！"]),
        ("यह पहला वाक्य है। यह दूसरा है।", ["यह पहला वाक्य है।", "यह दूसरा है।"]),
        ("Τι ώρα είναι; Είναι δώδεκα.", ["Τι ώρα είναι;", "Είναι δώδεκα."]),
        ("من فاز؟ فاز الفريق.", ["من فاز؟", "فاز الفريق."]),
        ("Title\n\nFirst line\nsecond line", ["Title", "First line", "second line"]),
        ("Version 2.5 costs $3.50 now.", ["Version 2.5 costs $3.50 now."]),
    ],
)
def test_sentence_spans(text: str, sentences: list[str]) -> None:
    assert [text[a:b] for a, b in sentence_spans(text)] == sentences
