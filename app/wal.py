"""Write-ahead log: one JSON line per acknowledged write, fsynced before the write is acknowledged.

A record is ``{"seq": n, "op": "upsert", "documents": [...]}`` (each document carries its embedding, so replay
never re-encodes and gives back exactly the vectors that were served) or ``{"seq": n, "op": "delete", "ids": [...]}``.
A crash can leave at most one partial line at the end (the write that was never acknowledged); replay drops it
and truncates the file there, so the next append starts on a clean line.
"""

from __future__ import annotations

import base64
import fcntl
import json
import logging
import os
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)


class WalError(RuntimeError):
    """The log is damaged somewhere other than its last line (not something a crash can cause)."""


def encode_vector(vector: np.ndarray) -> str:
    return base64.b64encode(np.ascontiguousarray(vector, dtype="<f4").tobytes()).decode("ascii")


def decode_vector(text: str) -> np.ndarray:
    return np.frombuffer(base64.b64decode(text), dtype="<f4").astype(np.float32)


def read_records(path: Path) -> tuple[list[dict], int]:
    """The complete records of a log and the byte length they span (a partial last line is not counted)."""
    if not path.exists():
        return [], 0
    records: list[dict] = []
    valid = 0
    lines = path.read_bytes().split(b"\n")
    for number, line in enumerate(lines[:-1], start=1):  # the piece after the last newline is never complete
        try:
            records.append(json.loads(line))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise WalError(f"{path} line {number} is damaged ({exc}); it is not the last line") from exc
        valid += len(line) + 1
    return records, valid


class WriteAheadLog:
    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        records, valid_bytes = read_records(self.path)
        self.last_seq = records[-1]["seq"] if records else 0
        # O_APPEND + one write() per record: a record is never interleaved with another.
        self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        try:  # one writing process per index: a second one would interleave sequence numbers
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            os.close(self._fd)
            raise OSError(f"another process is writing to this index ({self.path} is locked)") from exc
        if os.fstat(self._fd).st_size != valid_bytes:
            log.warning("dropping a partial last record in %s (a write interrupted before it was acknowledged)", path)
            os.ftruncate(self._fd, valid_bytes)
            os.fsync(self._fd)

    def append(self, record: dict) -> int:
        """Give the record the next sequence number, write it and fsync; return the sequence number."""
        seq = self.last_seq + 1
        line = json.dumps({"seq": seq, **record}, ensure_ascii=False, separators=(",", ":")) + "\n"
        payload = line.encode("utf-8")
        written = os.write(self._fd, payload)
        if written != len(payload):  # a full disk; undo so that the log stays parseable
            os.ftruncate(self._fd, os.fstat(self._fd).st_size - written)
            raise OSError(f"short write to {self.path} ({written} of {len(payload)} bytes)")
        os.fsync(self._fd)
        self.last_seq = seq
        return seq

    def reset(self, last_seq: int) -> None:
        """Empty the log once a snapshot holds everything up to ``last_seq``; numbering continues after it."""
        os.ftruncate(self._fd, 0)
        os.fsync(self._fd)
        self.last_seq = last_seq

    def close(self) -> None:
        os.close(self._fd)
