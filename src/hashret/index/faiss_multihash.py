"""Multi-index hashing with faiss ``IndexBinaryMultiHash`` (``"faiss-multihash"``)."""

from __future__ import annotations

from hashret.index import _faiss
from hashret.index.base import HammingIndex, check_int
from hashret.index.faiss_hash import MAX_HASH_BITS, FaissHashIndex


class FaissMultiHashIndex(FaissHashIndex):
    """``nhash`` hash tables, table ``h`` keyed by code bits ``[h*b, (h+1)*b)``.

    A query probes, in every table, the buckets whose key is within ``nflip`` bits of the
    query's key, then computes the true distance to every code found.

    * :meth:`range_search` is **exact**: by the pigeonhole principle a code that differs
      from the query in at most ``r`` bits differs in at most ``r // nhash`` bits in at
      least one of the ``nhash`` disjoint key segments, so the search probes
      ``max(nflip, r // nhash)`` flips (capped at ``b``). Radius ``r < nhash`` needs only
      exact-key lookups, which is what makes this index fast for small radii.
    * :meth:`search` is **approximate**: the top ``k`` among the codes found with
      ``nflip`` flips; exact for the codes within distance ``nhash * (nflip + 1) - 1``, the
      rest may be missed and a row may be short (padded with index -1, distance
      ``MISSING_DISTANCE``). Returned distances are true, sorted, ties by index.

    Codes of ``bits`` bits are stored as ``d = 8 * nbytes`` bits (zero padding bits).
    """

    name = "faiss-multihash"
    exact = False
    exact_range = True

    def __init__(self, bits: int, *, nhash: int = 4, b: int | None = None, nflip: int = 0) -> None:
        """
        Args:
            bits: code length.
            nhash: number of hash tables, ``nhash * b <= 8 * nbytes``.
            b: key bits per table, ``1 <= b <= 56``; default ``min(8 * nbytes // nhash, 16)``.
            nflip: key bits flipped when probing for :meth:`search`, ``0 <= nflip <= b``.
        """
        HammingIndex.__init__(self, bits)  # FaissHashIndex's constructor builds a one-table index
        faiss = _faiss.import_faiss()
        self.nhash = check_int(nhash, "nhash", minimum=1)
        if self.nhash > self.dim:
            raise ValueError(f"nhash={nhash} tables need at least one bit each: use nhash <= {self.dim}")
        b = min(self.dim // self.nhash, 16) if b is None else b
        self.b = check_int(b, "b", minimum=1)
        if self.b > MAX_HASH_BITS or self.nhash * self.b > self.dim:
            raise ValueError(
                f"nhash * b = {self.nhash} * {self.b} key bits do not fit in {self.dim}-bit codes: "
                f"use nhash * b <= {self.dim} and b <= {MAX_HASH_BITS}"
            )
        self.nflip = nflip
        self._index = faiss.IndexBinaryMultiHash(self.dim, self.nhash, self.b)

    def _range_flips(self, radius: int) -> int:
        """Flips per table that find every code within ``radius``: ``radius // nhash`` (pigeonhole)."""
        return radius // self.nhash
