"""Glue shared by the faiss backends: the lazy import, buffers, result conversion.

faiss is imported only when a faiss backend is created, so ``import hashret.index``
works without it.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

import numpy as np

from hashret.index.base import RangeResult

# Bytes a chunk of range-search results may take (int32 distance + int64 id per hit),
# assuming the worst case of every database item being a hit.
_RANGE_CHUNK_BYTES = 1 << 25


def import_faiss() -> ModuleType:
    """``import faiss``, or an ImportError saying what to install."""
    try:
        import faiss
    except ImportError as e:
        raise ImportError(
            "the faiss index backends need faiss: pip install faiss-cpu (or faiss-gpu), "
            "or use the numpy reference backend: create_index('numpy', bits)"
        ) from e
    return faiss


def padded(codes: np.ndarray) -> np.ndarray:
    """A copy of ``uint8[n, nbytes]`` codes followed by 8 spare zero bytes in memory.

    faiss's hash indexes read the code bytes as 64-bit words, up to 8 bytes past a code's
    start; the spare bytes keep those reads inside memory we own for the last row.
    """
    n, nb = codes.shape
    buf = np.zeros(n * nb + 8, dtype=np.uint8)
    buf[: n * nb] = codes.reshape(-1)
    return buf[: n * nb].reshape(n, nb)


def sort_rows(dist: np.ndarray, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sort each row of a faiss top-k by (distance, index): the database-order tie rule.

    Args:
        dist: ``int32[q, k]`` distances (``MISSING_DISTANCE`` in empty slots).
        idx: ``int64[q, k]`` ids (-1 in empty slots).

    Returns:
        the same rows reordered, ``(int32[q, k], int64[q, k])``.
    """
    order = np.lexsort((idx, dist), axis=-1)  # [q, k]: last key (distance) first
    return np.take_along_axis(dist, order, axis=1), np.take_along_axis(idx, order, axis=1)


def range_search(index: Any, queries: np.ndarray, radius: int, *, pad: bool = False) -> RangeResult:
    """Inclusive faiss range search, one ``(int32[m], int64[m])`` pair per query, sorted.

    Args:
        index: a faiss binary index.
        queries: ``uint8[q, nbytes]`` validated codes.
        radius: hits have distance ``<= radius`` (faiss itself keeps ``< radius``).
        pad: pass the queries through :func:`padded` (the hash indexes need it).
    """
    chunk = max(1, _RANGE_CHUNK_BYTES // (12 * max(index.ntotal, 1)))
    out: RangeResult = []
    for start in range(0, len(queries), chunk):
        q = queries[start : start + chunk]
        faiss_radius = min(int(radius), 8 * index.code_size) + 1  # strict "<" in faiss
        lims, dist, idx = index.range_search(padded(q) if pad else q, faiss_radius)
        dist = dist.astype(np.int32)
        for i in range(len(q)):
            d, j = dist[lims[i] : lims[i + 1]], idx[lims[i] : lims[i + 1]].astype(np.int64)
            order = np.lexsort((j, d))
            out.append((d[order], j[order]))
    return out
