from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from app.errors import WalBroken
from app.stores.embedded.wal import (
    WalError,
    WriteAheadLog,
    closed_segments,
    decode_vector,
    encode_vector,
    read_log,
    read_records,
)


def test_records_are_numbered_and_survive_reopening(tmp_path: Path) -> None:
    wal = WriteAheadLog(tmp_path / "w.wal")
    assert wal.append({"op": "delete", "ids": ["a"]}) == 1
    assert wal.append({"op": "delete", "ids": ["b"]}) == 2
    wal.close()
    reopened = WriteAheadLog(tmp_path / "w.wal")
    assert reopened.last_seq == 2
    assert [r["ids"] for r in read_records(tmp_path / "w.wal")[0]] == [["a"], ["b"]]


def test_a_torn_last_record_is_dropped_and_the_next_append_is_clean(tmp_path: Path) -> None:
    path = tmp_path / "w.wal"
    wal = WriteAheadLog(path)
    wal.append({"op": "delete", "ids": ["kept"]})
    wal.close()
    with open(path, "ab") as handle:
        handle.write(b'{"seq": 2, "op": "delete", "ids": ["to')  # what kill -9 mid-write can leave
    wal = WriteAheadLog(path)
    assert wal.last_seq == 1
    wal.append({"op": "delete", "ids": ["next"]})
    records, _ = read_records(path)
    assert [(r["seq"], r["ids"]) for r in records] == [(1, ["kept"]), (2, ["next"])]


def test_damage_before_the_last_line_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "w.wal"
    path.write_bytes(b'{"seq": 1, "op": "delete", "ids": []}\nnot json\n{"seq": 3, "op": "delete", "ids": []}\n')
    with pytest.raises(WalError, match=r"w\.wal line 2 \(byte 38\) is damaged"):
        WriteAheadLog(path)


def test_a_changed_record_fails_its_checksum_and_is_named(tmp_path: Path) -> None:
    path = tmp_path / "w.wal"
    wal = WriteAheadLog(path)
    wal.append({"op": "delete", "ids": ["a"]})
    wal.append({"op": "upsert", "documents": [{"id": "b", "text": "original text"}]})
    wal.append({"op": "delete", "ids": ["c"]})
    wal.close()
    first_line = len(path.read_bytes().split(b"\n")[0]) + 1
    path.write_bytes(path.read_bytes().replace(b"original", b"poisoned"))  # valid JSON, edited by hand
    with pytest.raises(WalError, match=rf"w\.wal line 2 \(byte {first_line}\) is damaged: its checksum"):
        read_records(path)


@pytest.mark.parametrize(
    ("line", "problem"),
    [(b'{"op": "delete", "ids": []}', "no positive integer 'seq'"), (b'{"seq": 1, "op": "drop"}', "'op' must be")],
)
def test_a_record_without_its_fields_is_named(tmp_path: Path, line: bytes, problem: str) -> None:
    path = tmp_path / "w.wal"
    path.write_bytes(line + b"\n")
    with pytest.raises(WalError, match=rf"w\.wal line 1 \(byte 0\) is not a log record: {problem}"):
        read_records(path)


def test_a_failed_append_is_cut_back_and_its_number_never_reused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """fsync fails after the bytes were written: they must not stay (replay would apply an unacknowledged write)."""
    path = tmp_path / "w.wal"
    wal = WriteAheadLog(path)
    wal.append({"op": "delete", "ids": ["acknowledged"]})
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (_ for _ in ()).throw(OSError(5, "Input/output error")))
    with pytest.raises(OSError, match="Input/output error"):
        wal.append({"op": "delete", "ids": ["never acknowledged"]})
    assert wal.broken  # the cut-back's own fsync failed too: no more writes until restart
    with pytest.raises(WalBroken, match="until the server restarts"):
        wal.append({"op": "delete", "ids": ["later"]})
    monkeypatch.setattr(os, "fsync", real_fsync)
    wal.close()
    assert [r["ids"] for r in read_records(path)[0]] == [["acknowledged"]]  # the ftruncate itself went through
    reopened = WriteAheadLog(path)
    assert reopened.append({"op": "delete", "ids": ["after restart"]}) == 2


def test_a_failed_write_is_cut_back_and_the_log_goes_on(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "w.wal"
    wal = WriteAheadLog(path)
    wal.append({"op": "delete", "ids": ["a"]})
    real_write = os.write
    monkeypatch.setattr(os, "write", lambda fd, data: real_write(fd, data[:10]))  # a full disk: a short write
    with pytest.raises(OSError, match="short write"):
        wal.append({"op": "delete", "ids": ["b"]})
    monkeypatch.setattr(os, "write", real_write)
    assert not wal.broken and wal.append({"op": "delete", "ids": ["c"]}) == 2
    assert [(r["seq"], r["ids"]) for r in read_records(path)[0]] == [(1, ["a"]), (2, ["c"])]


def test_rotated_segments_are_read_in_order_and_dropped_when_no_snapshot_needs_them(tmp_path: Path) -> None:
    path = tmp_path / "w.wal"
    wal = WriteAheadLog(path)
    for name in "abc":
        wal.append({"op": "delete", "ids": [name]})
    wal.rotate()
    wal.append({"op": "delete", "ids": ["d"]})
    wal.rotate()
    wal.append({"op": "delete", "ids": ["e"]})
    assert [p.name for _, p in closed_segments(path)] == ["w.wal.3", "w.wal.4"]
    assert [r["seq"] for r in read_log(path)] == [1, 2, 3, 4, 5]
    wal.close()
    reopened = WriteAheadLog(path)
    assert reopened.last_seq == 5
    reopened.drop_through(3)
    assert [r["seq"] for r in read_log(path)] == [4, 5]
    reopened.close()


def test_reset_empties_the_log_and_keeps_counting(tmp_path: Path) -> None:
    wal = WriteAheadLog(tmp_path / "w.wal")
    wal.append({"op": "delete", "ids": ["a"]})
    wal.reset(last_seq=7)
    assert (tmp_path / "w.wal").stat().st_size == 0
    assert wal.append({"op": "delete", "ids": ["b"]}) == 8


def test_vectors_round_trip_exactly() -> None:
    vector = np.random.default_rng(0).standard_normal(384).astype(np.float32)
    assert np.array_equal(decode_vector(encode_vector(vector)), vector)


def test_a_second_writer_is_refused(tmp_path: Path) -> None:
    first = WriteAheadLog(tmp_path / "w.wal")
    with pytest.raises(OSError, match="another process is writing to this index"):
        WriteAheadLog(tmp_path / "w.wal")
    first.close()
    WriteAheadLog(tmp_path / "w.wal").close()  # free again once the first one closed
