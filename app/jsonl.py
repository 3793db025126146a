"""Line-numbered JSONL reading with errors that name the file and line (corpora and training data)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from pathlib import Path


def json_objects(path: Path, error: type[Exception], required_strings: Iterable[str]) -> Iterator[tuple[str, dict]]:
    """Yield ``(where, record)`` for each non-blank line; raise ``error`` for invalid JSON, a non-object, or a
    required key that is not a non-empty string. ``where`` is "<path> line <n>" for the caller's own checks."""
    for where, _, record in json_objects_at(path, error, required_strings):
        yield where, record


def json_objects_at(
    path: Path, error: type[Exception], required_strings: Iterable[str]
) -> Iterator[tuple[str, int, dict]]:
    """``json_objects`` with the byte offset where each record's line starts (to read it again later)."""
    required = tuple(required_strings)
    offset = 0
    with open(path, "rb") as handle:
        for number, raw in enumerate(handle, start=1):
            start, offset = offset, offset + len(raw)
            where = f"{path} line {number}"
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise error(f"{where}: not UTF-8 (byte {exc.start} of the line is {raw[exc.start]:#04x})") from exc
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise error(f"{where}: invalid JSON ({exc.msg})") from exc
            if not isinstance(record, dict):
                raise error(f"{where}: expected a JSON object, got {type(record).__name__}")
            for key in required:
                if not isinstance(record.get(key), str) or not record[key].strip():
                    raise error(f"{where}: '{key}' must be a non-empty string")
            yield where, start, record
