"""Exact Hamming search over packed codes: the numpy reference index."""

from __future__ import annotations

import numpy as np

from hashret.codes import check_bits, check_codes
from hashret.eval.ranking import hamming_ranking


class FlatIndex:
    """Exhaustive Hamming top-k over ``uint8[n, ceil(bits/8)]`` codes (numpy, exact).

    Ties in Hamming distance are broken by database order (the item added first wins),
    as the DLBHC evaluation does.
    """

    def __init__(self, bits: int) -> None:
        self.bits = check_bits(bits)
        self._codes = np.zeros((0, (bits + 7) // 8), dtype=np.uint8)

    def __len__(self) -> int:
        return len(self._codes)

    @property
    def codes(self) -> np.ndarray:
        return self._codes

    def add(self, codes: np.ndarray) -> None:
        """Append packed codes ``uint8[m, nbytes]``; their ids are ``len(self) .. len(self)+m-1``."""
        self._codes = np.concatenate([self._codes, check_codes(codes, self.bits)])

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` nearest items per query.

        Args:
            queries: ``uint8[q, nbytes]`` packed codes of this index's length.
            k: results per query, ``1 <= k``; capped at the index size.

        Returns:
            ``(distances int32[q, k'], indices int64[q, k'])`` with ``k' = min(k, len(self))``,
            sorted by distance, ties by index.
        """
        queries = check_codes(queries, self.bits)
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
            raise ValueError(f"k must be a positive integer, got {k!r}")
        if len(self) == 0:
            raise ValueError("the index is empty: add codes before searching")
        idx, dist = hamming_ranking(queries, self._codes, min(int(k), len(self)))
        return dist, idx
