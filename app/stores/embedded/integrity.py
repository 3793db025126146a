"""Integrity of a snapshot (a version folder): checksums of its files and a consistency check of what they hold.

Every version folder holds ``SHA256SUMS`` (the format of coreutils' ``sha256sum``, so ``sha256sum -c SHA256SUMS``
checks a folder by hand), written after the other files and fsynced with them. Loading verifies it while FAISS
reads the vectors (hashing releases the GIL, so on two cores verification costs little start-up time), then checks
that the files agree with each other: as many vectors as documents as the manifest says, and every stored vector of
unit length, which catches a zeroed or garbled vector even in a file whose checksum is valid because a buggy writer
wrote it. A folder whose manifest is format 2 or later must have checksums; older folders (written before them) are
loaded with a warning.
"""

from __future__ import annotations

import hashlib
import logging
import os
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import numpy as np

from app.manifest import IndexManifest, ManifestError, fsync_path

log = logging.getLogger(__name__)

CHECKSUMS_FILE = "SHA256SUMS"
CHECKSUMMED_FORMAT = 2  # index manifests of this format or later come with CHECKSUMS_FILE
UNIT_NORM_TOLERANCE = 1e-2  # fp32 embeddings normalised in the graph are within 1e-5 of 1; damage is far outside
_BLOCK = 4 << 20


class SnapshotDamaged(ManifestError):
    """A snapshot's files do not match their checksums or do not agree with each other."""


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb", buffering=0) as handle:
        while block := handle.read(_BLOCK):
            digest.update(block)
    return digest.hexdigest()


def write_checksums(folder: Path, names: list[str]) -> None:
    """Hash ``names`` in ``folder`` and write ``SHA256SUMS`` (fsynced) beside them."""
    lines = "".join(f"{file_sha256(folder / name)}  {name}\n" for name in names)
    path = folder / CHECKSUMS_FILE
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(lines)
        handle.flush()
        os.fsync(handle.fileno())
    fsync_path(folder)


def read_checksums(folder: Path) -> dict[str, str] | None:
    """``{file name: sha256}`` from the folder's ``SHA256SUMS``, or None when it has none."""
    path = folder / CHECKSUMS_FILE
    if not path.is_file():
        return None
    expected: dict[str, str] = {}
    for number, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), start=1):
        digest, _, name = line.partition("  ")
        if len(digest) != 64 or not name or "/" in name or any(c not in "0123456789abcdef" for c in digest):
            raise SnapshotDamaged(f"{path} line {number} is not '<sha256>  <file name>'")
        expected[name] = digest
    return expected


class ChecksumCheck:
    """The checksums of a folder, hashed in a background thread from construction while its files are loaded;
    ``result`` waits for them."""

    def __init__(self, folder: Path, required: tuple[str, ...], format_version: int) -> None:
        self.folder = folder
        self.expected = read_checksums(folder)
        if self.expected is None:
            if format_version >= CHECKSUMMED_FORMAT:
                raise SnapshotDamaged(f"{folder / CHECKSUMS_FILE} is missing (the manifest says it was written)")
            log.warning("%s has no %s (written before checksums): loaded unverified", folder, CHECKSUMS_FILE)
            return
        missing = [name for name in required if name not in self.expected]
        if missing:
            raise SnapshotDamaged(f"{folder / CHECKSUMS_FILE} does not list {', '.join(missing)}")
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="checksums")
        self._futures: dict[str, Future[str]] = {
            name: self._pool.submit(file_sha256, folder / name) for name in self.expected
        }
        self._pool.shutdown(wait=False)

    def result(self) -> None:
        """Wait for the hashes; ``SnapshotDamaged`` naming the first file that does not match."""
        if self.expected is None:
            return
        for name, future in self._futures.items():
            try:
                actual = future.result()
            except OSError as exc:
                raise SnapshotDamaged(f"{self.folder / name} cannot be read: {exc.strerror or exc}") from exc
            if actual != self.expected[name]:
                raise SnapshotDamaged(
                    f"{self.folder / name} does not match its checksum (sha256 {actual[:12]}…, "
                    f"{CHECKSUMS_FILE} says {self.expected[name][:12]}…): the file was damaged after it was written"
                )


def check_consistency(folder: Path, vectors: np.ndarray, documents: int, manifest: IndexManifest) -> None:
    """The vectors, the documents and the manifest agree, and every vector is unit length (when normalised)."""
    if len(vectors) != documents:
        raise SnapshotDamaged(f"{folder} holds {len(vectors)} vectors but {documents} documents")
    if manifest.size != documents:
        raise SnapshotDamaged(f"{folder}: the manifest says {manifest.size} documents, the folder holds {documents}")
    if len(vectors) and vectors.shape[1] != manifest.embedding_dim:
        raise SnapshotDamaged(
            f"{folder}: vectors have {vectors.shape[1]} dimensions, the manifest says {manifest.embedding_dim}"
        )
    if not manifest.normalized or not len(vectors):
        return
    norms = np.empty(len(vectors), dtype=np.float32)
    for start in range(0, len(vectors), 65536):  # in blocks: no second copy of a large matrix
        block = vectors[start : start + 65536]
        norms[start : start + len(block)] = np.sqrt(np.einsum("ij,ij->i", block, block))
    bad = np.flatnonzero(~(np.abs(norms - 1.0) <= UNIT_NORM_TOLERANCE))  # NaN counts as bad
    if len(bad):
        raise SnapshotDamaged(
            f"{folder}: {len(bad)} stored vector(s) are not unit length (row {int(bad[0])} has norm "
            f"{float(norms[bad[0]]):.4g}): the vectors were damaged"
        )
