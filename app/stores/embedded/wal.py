"""Write-ahead log: one checksummed JSON line per acknowledged write, fsynced before the write is acknowledged.

A record is ``{"seq": n, "op": "upsert", "documents": [...]}`` (each document carries its embedding, so replay
never re-encodes and gives back exactly the vectors that were served) or ``{"seq": n, "op": "delete", "ids": [...]}``,
written as ``<crc32 of the JSON, 8 hex digits> <JSON>\\n``. Replay verifies every checksum and names the file, line
and byte of any damage. A crash can leave at most one partial line at the end (the write that was never
acknowledged); opening the log drops it, so the next append starts on a clean line.

The log is kept in segments: ``<name>.wal`` is appended to; ``rotate()`` (when a snapshot starts) closes it as
``<name>.wal.<last seq>``, and closed segments are deleted once the snapshots on disk no longer need them. A failed
append never leaves its bytes behind: they are cut back, or the log refuses every later write until restart, so a
sequence number is never given to two records.
"""

from __future__ import annotations

import base64
import errno
import fcntl
import itertools
import json
import logging
import os
import zlib
from pathlib import Path

import numpy as np

from app.errors import WalBroken
from app.manifest import fsync_path

log = logging.getLogger(__name__)


class WalError(RuntimeError):
    """The log is damaged somewhere other than its last line (not something a crash can cause)."""


def encode_vector(vector: np.ndarray) -> str:
    return base64.b64encode(np.ascontiguousarray(vector, dtype="<f4").tobytes()).decode("ascii")


def decode_vector(text: str) -> np.ndarray:
    return np.frombuffer(base64.b64decode(text), dtype="<f4").astype(np.float32)


def frame(record: dict) -> bytes:
    payload = json.dumps(record, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    return b"%08x " % zlib.crc32(payload) + payload + b"\n"


def _parse_line(path: Path, number: int, offset: int, line: bytes) -> dict:
    where = f"{path} line {number} (byte {offset})"
    payload = line
    if not line.startswith(b"{"):  # logs written before checksums are plain JSON lines
        checksum, _, payload = line.partition(b" ")
        try:
            expected = int(checksum, 16)
        except ValueError:
            raise WalError(f"{where} is damaged: it starts with neither a checksum nor JSON") from None
        if zlib.crc32(payload) != expected:
            raise WalError(f"{where} is damaged: its checksum does not match its content")
    try:
        record = json.loads(payload)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise WalError(f"{where} is damaged ({exc})") from exc
    problem = _record_problem(record)
    if problem:
        raise WalError(f"{where} is not a log record: {problem}")
    return record


def _record_problem(record: object) -> str | None:
    if not isinstance(record, dict):
        return "not a JSON object"
    if not isinstance(record.get("seq"), int) or isinstance(record["seq"], bool) or record["seq"] < 1:
        return "no positive integer 'seq'"
    if record.get("op") == "upsert" and isinstance(record.get("documents"), list):
        return None
    if record.get("op") == "delete" and isinstance(record.get("ids"), list):
        return None
    return "'op' must be upsert (with a 'documents' list) or delete (with an 'ids' list)"


def read_records(path: Path) -> tuple[list[dict], int]:
    """The complete records of one log file and the byte length they span (a partial last line is not counted)."""
    if not path.exists():
        return [], 0
    records: list[dict] = []
    valid = 0
    lines = path.read_bytes().split(b"\n")
    previous = 0
    for number, line in enumerate(lines[:-1], start=1):  # the piece after the last newline is never complete
        record = _parse_line(path, number, valid, line)
        if record["seq"] <= previous:
            raise WalError(f"{path} line {number} (byte {valid}): sequence {record['seq']} after {previous}")
        previous = record["seq"]
        records.append(record)
        valid += len(line) + 1
    return records, valid


def wal_path(index_dir: Path) -> Path:
    """The log of an index folder: ``<name>.wal`` beside it."""
    return Path(index_dir).parent / f"{Path(index_dir).name}.wal"


def closed_segments(path: Path) -> list[tuple[int, Path]]:
    """``(last seq, file)`` of the closed segments of the log at ``path``, oldest first."""
    found = []
    for candidate in path.parent.glob(f"{path.name}.*"):
        suffix = candidate.name[len(path.name) + 1 :]
        if suffix.isdigit():
            found.append((int(suffix), candidate))
    return sorted(found)


def read_log(path: Path) -> list[dict]:
    """Every complete record of the log, closed segments first, in sequence order."""
    records: list[dict] = []
    for _, segment in closed_segments(path):
        records += read_records(segment)[0]
    records += read_records(path)[0]
    for before, after in itertools.pairwise(records):
        if after["seq"] <= before["seq"]:
            raise WalError(f"log segments of {path} overlap: sequence {after['seq']} after {before['seq']}")
    return records


def records_after(path: Path, seq: int) -> list[dict]:
    """The log's records after ``seq`` (what a snapshot holding records up to ``seq`` must replay); ``WalError``
    when one is missing, since serving without it would lose an acknowledged write."""
    records = [record for record in read_log(path) if record["seq"] > seq]  # the rest are in the snapshot
    for expected, record in enumerate(records, start=seq + 1):
        if record["seq"] != expected:
            raise WalError(
                f"the log {path} lacks records {expected}..{record['seq'] - 1} after the snapshot (which holds "
                f"records up to {seq}); refusing to serve without them"
            )
    return records


class WriteAheadLog:
    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # One writing process per index, held for the process's life on a file that rotation never renames.
        self._lock_fd = os.open(self.path.with_name(self.path.name + ".lock"), os.O_WRONLY | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            os.close(self._lock_fd)
            raise OSError(f"another process is writing to this index ({self.path} is locked)") from exc
        self.broken: str | None = None
        self._fd = -1
        try:
            records = self._open_current()
        except BaseException:
            os.close(self._lock_fd)
            raise
        known = [seq for seq, _ in closed_segments(self.path)] + [r["seq"] for r in records[-1:]]
        self.last_seq = max(known, default=0)

    def _open_current(self) -> list[dict]:
        records, valid_bytes = read_records(self.path)
        self._open_append()
        if os.fstat(self._fd).st_size != valid_bytes:
            log.warning("dropping a partial last record in %s (a write never acknowledged)", self.path)
            os.ftruncate(self._fd, valid_bytes)
            os.fsync(self._fd)
        return records

    def _open_append(self) -> None:
        # O_APPEND + one write() per record: a record is never interleaved with another.
        self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)

    def append(self, record: dict) -> int:
        """Give the record the next sequence number, write it and fsync; return the sequence number."""
        if self.broken:
            raise WalBroken(f"the write-ahead log takes no writes until the server restarts: {self.broken}")
        seq = self.last_seq + 1
        payload = frame({"seq": seq, **record})
        before = os.fstat(self._fd).st_size
        try:
            written = os.write(self._fd, payload)
            if written != len(payload):  # what a full disk does to write()
                raise OSError(errno.ENOSPC, f"short write to {self.path} ({written} of {len(payload)} bytes)")
            os.fsync(self._fd)
        except OSError as exc:
            self._undo(before, exc)
            raise
        self.last_seq = seq
        return seq

    def _undo(self, size: int, cause: OSError) -> None:
        """Cut a failed append back off the file; if even that fails, refuse later writes (replay would apply it)."""
        try:
            os.ftruncate(self._fd, size)
            os.fsync(self._fd)
        except OSError as exc:
            self.broken = f"a failed append ({cause}) could not be cut back ({exc})"
            log.error("write-ahead log %s is broken: %s", self.path, self.broken)

    def rotate(self) -> None:
        """Close the current segment as ``<name>.<last seq>`` and start an empty one (nothing to do when empty)."""
        if os.fstat(self._fd).st_size == 0:
            return
        os.close(self._fd)
        self._fd = -1
        os.rename(self.path, self.path.with_name(f"{self.path.name}.{self.last_seq}"))
        self._open_append()
        fsync_path(self.path.parent)

    def drop_through(self, seq: int) -> None:
        """Delete the closed segments whose records all have sequence numbers <= ``seq``."""
        for last, segment in closed_segments(self.path):
            if last <= seq:
                segment.unlink()
        fsync_path(self.path.parent)

    def reset(self, last_seq: int) -> None:
        """Empty the whole log (every segment); numbering continues after ``last_seq``."""
        self.drop_through(self.last_seq)
        os.ftruncate(self._fd, 0)
        os.fsync(self._fd)
        self.last_seq = last_seq

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
        os.close(self._lock_fd)
