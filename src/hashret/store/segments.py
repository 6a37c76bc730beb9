"""Immutable row batches of a persistent index: codes, features and ids in ``.npy`` files.

A segment is written once (``write_segment``), fsynced, and never modified; the manifest
names it with each file's size and SHA-256 (computed while writing, so a segment is read
back only when a check asks for it). Readers memory-map the features, so opening an index
costs the size of its codes, not of its features.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from hashret.io import atomic_write
from hashret.store.manifest import FileEntry, Segment

SEGMENT_DIR = "segments"
KINDS = ("codes", "features", "ids")


class _HashingWriter:
    """A write-only file object that hashes what passes through it."""

    def __init__(self, f) -> None:  # noqa: ANN001 - a binary file
        self.f = f
        self.h = hashlib.sha256()
        self.n = 0

    def write(self, data: bytes) -> int:
        self.h.update(data)
        self.n += len(data)
        return self.f.write(data)


def write_array(root: Path, name: str, array: np.ndarray) -> FileEntry:
    """Write ``array`` to ``root/name`` as ``.npy`` (temporary name, fsync, rename).

    Returns its :class:`FileEntry` (size and SHA-256 of the bytes written).
    """
    written: list[_HashingWriter] = []

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as f:
            written.append(_HashingWriter(f))
            np.lib.format.write_array(written[0], np.ascontiguousarray(array), allow_pickle=False)

    atomic_write(root / name, write, durable=True)
    return FileEntry(name, written[0].n, written[0].h.hexdigest())


def write_segment(root: Path, name: str, codes: np.ndarray, features: np.ndarray,
                  ids: np.ndarray) -> Segment:
    """Write one segment: ``codes uint8[m, nbytes]``, ``features float16/32[m, d]``, ``ids int64[m]``."""
    assert len(codes) == len(features) == len(ids), (codes.shape, features.shape, ids.shape)
    entries = {
        kind: write_array(root, f"{SEGMENT_DIR}/{name}.{kind}.npy", arr)
        for kind, arr in zip(KINDS, (codes, features, ids.astype(np.int64)), strict=True)
    }
    return Segment(name, len(codes), **entries)


def read_array(root: Path, entry: FileEntry, *, mmap: bool) -> np.ndarray:
    """Load one ``.npy`` file of the index (memory-mapped read-only with ``mmap``)."""
    from hashret.store.manifest import IndexCorruptError

    path = root / entry.name
    try:
        return np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
    except (ValueError, OSError, EOFError) as e:
        raise IndexCorruptError(
            f"{path} is unreadable ({e}): restore it from a backup or rebuild the index"
        ) from e
