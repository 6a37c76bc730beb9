"""Inverted-file Hamming search with faiss ``IndexBinaryIVF`` (``"faiss-ivf"``)."""

from __future__ import annotations

import numpy as np

from hashret.index import _faiss
from hashret.index.base import HammingIndex, RangeResult, check_int


class FaissIVFIndex(HammingIndex):
    """Codes split into ``nlist`` lists by their nearest binary centroid; a query scans ``nprobe``.

    Approximate: :meth:`search` and :meth:`range_search` only see the codes in the
    ``nprobe`` lists whose centroids are nearest to the query, so a row may be short
    (padded with index -1, distance ``MISSING_DISTANCE``). Returned distances are true
    Hamming distances, sorted, equal distances by index. With ``nprobe = nlist`` every
    code is scanned: the distances are then exact, though which of several items tied at
    the k-th distance are kept is faiss's choice. Measure the quality with
    :func:`hashret.index.recall_at_k`.

    The centroids are trained (binary k-means, faiss's default seed) on the first
    :meth:`add`, or explicitly with :meth:`train`; :meth:`reset` keeps them.

    Codes of ``bits`` bits are stored as ``d = 8 * nbytes`` bits (zero padding bits).
    """

    name = "faiss-ivf"
    exact = False
    exact_range = False

    def __init__(self, bits: int, *, nlist: int = 64, nprobe: int | None = None) -> None:
        """
        Args:
            bits: code length.
            nlist: number of lists (centroids); train on at least ``nlist`` codes
                (faiss suggests 39 * nlist or more).
            nprobe: lists scanned per query, ``1 <= nprobe <= nlist``; default ``min(8, nlist)``.
        """
        super().__init__(bits)
        faiss = _faiss.import_faiss()
        self.nlist = check_int(nlist, "nlist", minimum=1)
        self._quantizer = faiss.IndexBinaryFlat(self.dim)
        self._index = faiss.IndexBinaryIVF(self._quantizer, self.dim, self.nlist)
        self.nprobe = min(8, self.nlist) if nprobe is None else nprobe

    @property
    def nprobe(self) -> int:
        """Lists scanned per query (``1 <= nprobe <= nlist``)."""
        return int(self._index.nprobe)

    @nprobe.setter
    def nprobe(self, value: int) -> None:
        value = check_int(value, "nprobe", minimum=1)
        if value > self.nlist:
            raise ValueError(f"nprobe={value} exceeds nlist={self.nlist}: use 1 <= nprobe <= {self.nlist}")
        self._index.nprobe = value

    @property
    def is_trained(self) -> bool:
        return bool(self._index.is_trained)

    def train(self, codes: np.ndarray) -> None:
        """Train the ``nlist`` centroids on ``uint8[m, nbytes]`` codes, ``m >= nlist``.

        Raises:
            ValueError: bad codes, fewer codes than lists, or codes already added.
        """
        c = self.check_codes(codes, "training codes")
        if len(self):
            raise ValueError("the index already holds codes: train before adding, or reset() first")
        if len(c) < self.nlist:
            raise ValueError(
                f"training nlist={self.nlist} centroids needs at least {self.nlist} codes, got "
                f"{len(c)}: train on more codes (faiss suggests {39 * self.nlist}) or lower nlist"
            )
        self._index.train(c)

    def __len__(self) -> int:
        return int(self._index.ntotal)

    def fit_state(self, codes: np.ndarray) -> bytes | None:
        """The ``nlist`` centroids the first add of ``codes`` trains (binary k-means, faiss's
        default seed), serialised; None when there are fewer codes than lists (the add
        would refuse them)."""
        c = self.check_codes(codes, "training codes")
        if len(c) < self.nlist:
            return None
        probe = FaissIVFIndex(self.bits, nlist=self.nlist, nprobe=self.nprobe)
        probe.train(c)
        faiss = _faiss.import_faiss()
        return faiss.serialize_index_binary(probe._quantizer).tobytes()

    def load_state(self, state: bytes) -> None:
        """Take centroids made by :meth:`fit_state` (for the same ``bits`` and ``nlist``).

        Raises:
            ValueError: codes were added already, or the centroids do not fit this index.
        """
        if len(self):
            raise ValueError("load the trained centroids before adding codes")
        faiss = _faiss.import_faiss()
        quantizer = faiss.deserialize_index_binary(np.frombuffer(state, np.uint8))
        if quantizer.d != self.dim or quantizer.ntotal != self.nlist:
            raise ValueError(f"the stored centroids are {quantizer.ntotal} of {quantizer.d} bits, this index "
                             f"has nlist={self.nlist} of {self.dim} bits: rebuild the index")
        nprobe = self.nprobe
        self._quantizer = quantizer
        self._index = faiss.IndexBinaryIVF(self._quantizer, self.dim, self.nlist)
        self._index.is_trained = True
        self.nprobe = nprobe

    def _add(self, codes: np.ndarray) -> None:
        if not self.is_trained:
            if len(codes) < self.nlist:
                raise ValueError(
                    f"faiss-ivf trains its nlist={self.nlist} centroids on the first add, which "
                    f"needs at least {self.nlist} codes (got {len(codes)}): add a larger first "
                    "batch, call train(codes) first, or lower nlist"
                )
            self.train(codes)
        self._index.add(codes)

    def _search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        dist, idx = self._index.search(queries, k)
        return _faiss.sort_rows(dist, idx)

    def _range_search(self, queries: np.ndarray, radius: int) -> RangeResult:
        return _faiss.range_search(self._index, queries, radius)

    def _reset(self) -> None:
        self._index.reset()
