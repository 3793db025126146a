from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from app.wal import WalError, WriteAheadLog, decode_vector, encode_vector, read_records


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
    path.write_bytes(b'{"seq": 1}\nnot json\n{"seq": 3}\n')
    with pytest.raises(WalError, match="line 2 is damaged"):
        WriteAheadLog(path)


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
