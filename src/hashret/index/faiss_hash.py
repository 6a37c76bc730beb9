"""Hash-table Hamming search with faiss ``IndexBinaryHash`` (``"faiss-hash"``)."""

from __future__ import annotations

import numpy as np

from hashret.index import _faiss
from hashret.index.base import HammingIndex, RangeResult, check_int

#: Largest hash key faiss can take from a code (it reads a 64-bit word at a byte offset).
MAX_HASH_BITS = 56


class FaissHashIndex(HammingIndex):
    """Codes bucketed by their first ``b`` bits; a query probes the buckets within ``nflip``.

    A query visits every bucket whose ``b``-bit key is within Hamming distance ``nflip``
    of its own key (``sum_{i<=nflip} C(b, i)`` buckets) and compares the codes stored
    there. Meant for radius and near-duplicate queries.

    * :meth:`range_search` is **exact**: a code within distance ``r`` of the query has a
      key within ``r`` of the query's key, so the search probes ``max(nflip, r)`` flips
      (capped at ``b``: then every bucket is visited).
    * :meth:`search` is **approximate**: it returns the top ``k`` of the codes in the
      probed buckets only (``nflip`` flips); codes outside them are missed and a row may
      be short (padded with index -1, distance ``MISSING_DISTANCE``). Returned distances
      are true Hamming distances, sorted, equal distances by index. It is exact only when
      ``nflip >= b`` (every bucket probed).

    Codes of ``bits`` bits are stored as ``d = 8 * nbytes`` bits (zero padding bits).
    """

    name = "faiss-hash"
    exact = False
    exact_range = True

    def __init__(self, bits: int, *, b: int | None = None, nflip: int = 0) -> None:
        """
        Args:
            bits: code length.
            b: hash key length, ``1 <= b <= min(8 * nbytes, 56)``; default
                ``min(bits, 16)`` (about one code per bucket for 65,536 codes).
            nflip: key bits flipped when probing for :meth:`search`, ``0 <= nflip <= b``.
        """
        super().__init__(bits)
        faiss = _faiss.import_faiss()
        b = min(self.bits, 16) if b is None else b
        self.b = check_int(b, "b", minimum=1)
        if self.b > min(self.dim, MAX_HASH_BITS):
            raise ValueError(
                f"b={b} hash bits is too many for {self.bits}-bit codes: "
                f"use 1 <= b <= {min(self.dim, MAX_HASH_BITS)}"
            )
        self.nflip = nflip
        self._index = faiss.IndexBinaryHash(self.dim, self.b)

    @property
    def nflip(self) -> int:
        """Key bits flipped when probing for :meth:`search` (``0 <= nflip <= b``)."""
        return self._nflip

    @nflip.setter
    def nflip(self, value: int) -> None:
        value = check_int(value, "nflip", minimum=0)
        if value > self.b:
            raise ValueError(f"nflip={value} exceeds the b={self.b} key bits: use 0 <= nflip <= {self.b}")
        self._nflip = value

    def __len__(self) -> int:
        return int(self._index.ntotal)

    def _add(self, codes: np.ndarray) -> None:
        self._index.add(_faiss.padded(codes))

    def _search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        self._index.nflip = self.nflip
        dist, idx = self._index.search(_faiss.padded(queries), k)
        return _faiss.sort_rows(dist, idx)

    def _range_flips(self, radius: int) -> int:
        """Key bits to flip so that every code within ``radius`` is found: ``radius`` itself."""
        return radius

    def _range_search(self, queries: np.ndarray, radius: int) -> RangeResult:
        self._index.nflip = min(max(self.nflip, self._range_flips(radius)), self.b)
        return _faiss.range_search(self._index, queries, radius, pad=True)

    def _reset(self) -> None:
        self._index.reset()
