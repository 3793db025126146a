"""What the model reads, shared by serving and training (no dependencies, so the training package on a bare GPU
machine can import it too): the default prefixes and the rule that turns a text into the tokenizer's input."""

from __future__ import annotations

# The e5 prefixes: the defaults of every export, training run and evaluation (a model's own are in its manifest).
DEFAULT_QUERY_PREFIX, DEFAULT_PASSAGE_PREFIX = "query: ", "passage: "


def model_input(prefix: str, text: str) -> str:
    """What the tokenizer sees for a text: the prefix, then the text without surrounding whitespace. Serving and
    training both use this, so what is measured is what is served."""
    return prefix + text.strip()
