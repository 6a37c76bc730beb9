"""A view of a Hamming index that hides removed rows, keeping the backend's exactness.

Removing an item from a persistent index marks its row (a tombstone) instead of rewriting
the segments; :class:`FilteredIndex` asks its backend for ``k + removed`` results and
drops the removed rows. Dropping rows from a list sorted by (distance, row) leaves it
sorted, and the first ``k`` live rows of the exact top ``k + removed`` are the exact top
``k`` of the live rows, so an exact backend stays exact. ``compact`` rewrites the segments
when tombstones pile up.
"""

from __future__ import annotations

import numpy as np

from hashret.index.base import MISSING_DISTANCE, MISSING_INDEX, HammingIndex, RangeResult


class FilteredIndex(HammingIndex):
    """``inner`` without the rows where ``removed`` is True.

    Args:
        inner: a filled backend; row ``i`` is the ``i``-th code added to it.
        removed: ``bool[len(inner)]``, True for rows to hide.

    ``len()`` is the number of rows of ``inner`` (removed included), so row numbers stay
    those of the backend; ``live`` counts the others. Rows that cannot be filled (fewer
    live items than ``k``) hold ``(MISSING_DISTANCE, MISSING_INDEX)``.
    """

    def __init__(self, inner: HammingIndex, removed: np.ndarray) -> None:
        super().__init__(inner.bits)
        removed = np.asarray(removed, dtype=bool)
        if removed.shape != (len(inner),):
            raise ValueError(f"removed must be bool[{len(inner)}], got shape {removed.shape}")
        self.inner = inner
        self.removed = removed
        self.n_removed = int(removed.sum())
        self.name = inner.name
        self.exact = inner.exact
        self.exact_range = inner.exact_range

    def __len__(self) -> int:
        return len(self.inner)

    @property
    def live(self) -> int:
        return len(self.inner) - self.n_removed

    def _add(self, codes: np.ndarray) -> None:
        raise TypeError("add to the persistent index (IndexStore.add), not to its search view")

    def _reset(self) -> None:
        raise TypeError("a FilteredIndex is a read-only view")

    def _search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        if not self.n_removed:
            return self.inner.search(queries, k)
        if self.live == 0:
            raise ValueError("the index is empty (every item was removed): add items first")
        dist, idx = self.inner.search(queries, min(k + self.n_removed, len(self.inner)))
        out_d = np.full((len(queries), k), MISSING_DISTANCE, dtype=np.int32)
        out_i = np.full((len(queries), k), MISSING_INDEX, dtype=np.int64)
        for r in range(len(queries)):
            keep = idx[r] != MISSING_INDEX
            keep[keep] = ~self.removed[idx[r][keep]]
            d, i = dist[r][keep][:k], idx[r][keep][:k]
            out_d[r, : len(d)], out_i[r, : len(i)] = d, i
        return out_d, out_i

    def _range_search(self, queries: np.ndarray, radius: int) -> RangeResult:
        res = self.inner.range_search(queries, radius)
        if not self.n_removed:
            return res
        return [(d[~self.removed[i]], i[~self.removed[i]]) for d, i in res]
