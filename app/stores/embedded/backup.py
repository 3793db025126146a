"""Backups of the embedded store: one tar archive holding a snapshot's files and their checksums.

A backup is a snapshot taken for the purpose (the rows are copied under the collection's lock, like a background
snapshot, so writes wait only for that copy), consistent at one write-ahead-log sequence that its manifest records,
with the model's fingerprint. The archive is a plain tar of ``manifest.json``, ``SHA256SUMS``, ``docs.jsonl`` and
``index.faiss``: ``tar -xf`` and ``sha256sum -c SHA256SUMS`` check it without this program. Restoring verifies the
checksums and the consistency of the files (the same check as loading a snapshot) before anything is replaced, and
moves the index it replaces aside instead of deleting it.
"""

from __future__ import annotations

import os
import shutil
import tarfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

from app.manifest import IndexManifest, ManifestError, fsync_path
from app.stores.embedded.index import (
    DOCS_FILE,
    MANIFEST_FILE,
    VECTORS_FILE,
    SearchIndex,
    new_version_folder,
    point_link,
    version_folders,
)
from app.stores.embedded.integrity import CHECKSUMS_FILE, SnapshotDamaged
from app.stores.embedded.wal import WriteAheadLog, closed_segments, records_after, wal_path

# small files first, so that a listing (tar -tvf) or a reader of the manifest stops early
ARCHIVE_FILES = (MANIFEST_FILE, CHECKSUMS_FILE, DOCS_FILE, VECTORS_FILE)
_BLOCK = 1 << 20


def staging_folder(index_dir: Path, kind: str) -> Path:
    """A new, empty folder ``.<index>.<kind>-<time>`` beside the index (same disk), never taken for a version."""
    index_dir = Path(index_dir)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%f")
    folder = index_dir.parent / f".{index_dir.name}.{kind}-{stamp}"
    folder.mkdir(parents=True)
    return folder


def backup_folder(index_dir: Path) -> Path:
    """A staging folder for a backup; ``discard_backup_folders`` removes any a crash left behind."""
    return staging_folder(index_dir, "backup")


def discard_backup_folders(index_dir: Path) -> None:
    for folder in Path(index_dir).parent.glob(f".{Path(index_dir).name}.backup-*"):
        shutil.rmtree(folder, ignore_errors=True)


def _members(folder: Path) -> list[tuple[bytes, Path, int]]:
    """(tar header, file, size) of each archive member, in archive order."""
    members = []
    for name in ARCHIVE_FILES:
        path = folder / name
        info = tarfile.TarInfo(name)
        info.size, info.mode, info.mtime = path.stat().st_size, 0o644, int(time.time())
        members.append((info.tobuf(format=tarfile.GNU_FORMAT), path, info.size))  # GNU: members over 8 GiB
    return members


def _padding(size: int) -> int:
    return -size % tarfile.BLOCKSIZE


def archive_size(folder: Path) -> int:
    """Bytes of the archive ``tar_stream`` produces (for Content-Length and progress bars)."""
    members = _members(folder)
    return sum(len(head) + size + _padding(size) for head, _, size in members) + 2 * tarfile.BLOCKSIZE


def tar_stream(folder: Path, remove: bool = False) -> Iterator[bytes]:
    """The archive of a backup folder, produced as it is read (no second copy on disk); with ``remove`` the folder
    is deleted when the stream ends or is abandoned."""
    try:
        for head, path, size in _members(folder):
            yield head
            with open(path, "rb") as handle:
                while block := handle.read(_BLOCK):
                    yield block
            yield bytes(_padding(size))
        yield bytes(2 * tarfile.BLOCKSIZE)
    finally:
        if remove:
            shutil.rmtree(folder, ignore_errors=True)


def write_archive(folder: Path, out: Path) -> None:
    """The archive of a backup folder into ``out`` (written as ``out.part``, fsynced, then renamed)."""
    part = out.with_name(out.name + ".part")
    with open(part, "wb") as handle:
        for chunk in tar_stream(folder):
            handle.write(chunk)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(part, out)


def extract_archive(archive: Path, folder: Path) -> None:
    """The archive's files into an existing empty ``folder``: regular files with the expected names only."""
    try:
        with tarfile.open(archive, mode="r|") as tar:
            seen: set[str] = set()
            for member in tar:
                if member.name not in ARCHIVE_FILES or not member.isreg() or member.name in seen:
                    raise SnapshotDamaged(f"the archive holds an unexpected entry {member.name!r}")
                seen.add(member.name)
                source = tar.extractfile(member)
                assert source is not None  # a regular file
                with open(folder / member.name, "wb") as target:
                    shutil.copyfileobj(source, target, _BLOCK)
    except (tarfile.TarError, EOFError) as exc:
        raise SnapshotDamaged(f"the archive cannot be read as tar: {exc}") from exc
    missing = [name for name in ARCHIVE_FILES if not (folder / name).is_file()]
    if missing:
        raise SnapshotDamaged(f"the archive lacks {', '.join(missing)}")


def verify_archive(archive: Path, scratch: Path) -> SearchIndex:
    """Unpack into ``scratch`` (an empty folder) and load it: checksums and consistency, as for a snapshot."""
    extract_archive(archive, scratch)
    return SearchIndex.load(scratch)


def verify_index_folder(index_dir: Path) -> tuple[SearchIndex, int]:
    """Load the served version of an index folder (checksums and consistency) and read its write-ahead log: the
    loaded index and the number of logged writes a start-up would replay after it."""
    index = SearchIndex.load(index_dir)
    return index, len(records_after(wal_path(index_dir), index.manifest.wal_seq))


def restore_archive(archive: Path, index_dir: Path, fingerprints: dict[str, str], replace: bool) -> IndexManifest:
    """Make ``index_dir`` the index in ``archive``: verified, encoded by one of ``fingerprints`` ({fingerprint:
    model name}), with an empty write-ahead log that continues after the backup's sequence. An existing index (its
    versions and log) is moved into ``<name>.before-restore-<stamp>/`` beside it, only when ``replace``. Refuses
    while a server writes to the index (its log is locked)."""
    index_dir = Path(index_dir)
    wal = wal_path(index_dir)
    lock: WriteAheadLog | None = WriteAheadLog(wal)  # OSError while another process writes to this index
    staging = staging_folder(index_dir, "restoring")  # not a version until verified
    try:
        manifest = verify_archive(archive, staging).manifest
        if manifest.model_fingerprint not in fingerprints:
            served = ", ".join(f"'{name}' ({fp[:12]})" for fp, name in fingerprints.items())
            raise ManifestError(
                f"the backup was encoded by model '{manifest.model_name}' (fingerprint "
                f"{manifest.model_fingerprint[:12]}); the server serves {served}. Restore it for a server of that "
                "model (--model-dir), or re-encode the documents with `polyglot-search index`"
            )
        present = index_dir.is_symlink() or index_dir.exists() or wal.stat().st_size or closed_segments(wal)
        if present and not replace:
            raise ManifestError(f"{index_dir} holds an index; pass --replace to move it aside and restore over it")
        assert lock is not None
        lock.close()  # the log file moves aside with the index: a fresh one is opened after
        lock = None
        if present:
            _move_aside(index_dir, wal)
        lock = WriteAheadLog(wal)
        lock.reset(last_seq=manifest.wal_seq)
        for name in os.listdir(staging):
            fsync_path(staging / name)
        version = new_version_folder(index_dir)
        os.replace(staging, version)  # the empty new version folder is replaced by the verified one
        point_link(index_dir, version)
        return manifest
    finally:
        shutil.rmtree(staging, ignore_errors=True)  # gone once renamed; a refused or damaged archive's files
        if lock is not None:
            lock.close()


def _move_aside(index_dir: Path, wal: Path) -> Path:
    """The index's link, version folders and log segments into one folder beside it (kept, not deleted)."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    aside = index_dir.parent / f"{index_dir.name}.before-restore-{stamp}"
    aside.mkdir()
    for path in [*version_folders(index_dir), *(segment for _, segment in closed_segments(wal)), wal]:
        if path.exists():
            path.rename(aside / path.name)
    if index_dir.is_symlink():
        index_dir.unlink()
    elif index_dir.exists():
        index_dir.rename(aside / index_dir.name)
    fsync_path(index_dir.parent)
    return aside
