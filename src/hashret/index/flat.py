"""Exact Hamming search over packed codes: the numpy reference index (``"numpy"``)."""

from __future__ import annotations

import numpy as np

from hashret.codes import hamming_distances
from hashret.eval.ranking import hamming_ranking, query_chunks
from hashret.index.base import HammingIndex, RangeResult


class FlatIndex(HammingIndex):
    """Exhaustive Hamming top-k over ``uint8[n, ceil(bits/8)]`` codes (numpy, exact).

    The reference every other backend is compared with: ties in Hamming distance are
    broken by database order (the item added first wins), as the DLBHC evaluation does
    (:func:`hashret.eval.ranking.hamming_ranking`).
    """

    name = "numpy"
    exact = True
    exact_range = True

    def __init__(self, bits: int) -> None:
        super().__init__(bits)
        self._chunks: list[np.ndarray] = []
        self._codes = np.zeros((0, self.nbytes), dtype=np.uint8)

    def __len__(self) -> int:
        return len(self._codes) + sum(len(c) for c in self._chunks)

    @property
    def codes(self) -> np.ndarray:
        """All codes added so far, ``uint8[n, nbytes]`` in id order."""
        if self._chunks:  # batches are joined once, on first use
            self._codes = np.concatenate([self._codes, *self._chunks])
            self._chunks = []
        return self._codes

    def _add(self, codes: np.ndarray) -> None:
        self._chunks.append(codes.copy())

    def _search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        idx, dist = hamming_ranking(queries, self.codes, k)
        return dist, idx

    def _range_search(self, queries: np.ndarray, radius: int) -> RangeResult:
        db = self.codes
        out: RangeResult = []
        for sl in query_chunks(len(queries), len(db), self.nbytes):
            for row in hamming_distances(queries[sl], db):  # [n] int32 per query
                hits = np.flatnonzero(row <= radius)  # increasing index
                order = np.argsort(row[hits], kind="stable")
                out.append((row[hits][order], hits[order].astype(np.int64)))
        return out

    def _reset(self) -> None:
        self._chunks = []
        self._codes = np.zeros((0, self.nbytes), dtype=np.uint8)
