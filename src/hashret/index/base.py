"""The interface every Hamming index backend implements.

Codes follow :mod:`hashret.codes`: ``uint8[n, nbytes]`` with ``nbytes = ceil(bits / 8)``,
packed least-significant-bit first. When ``bits`` is not a multiple of 8 the last byte
carries zero padding bits (``hashret.codes.pack`` guarantees it and :meth:`HammingIndex.add`
checks it), so a backend may work on ``8 * nbytes`` bits (faiss sees ``d = 8 * nbytes``)
without changing any distance.

Result convention, shared by all backends:

* ids are insertion order: the first code added is id 0;
* results are sorted by increasing Hamming distance, equal distances by increasing id
  (the database-order tie rule of :mod:`hashret.eval.ranking`);
* an *exact* backend (``exact = True``) returns exactly what the numpy reference
  :class:`hashret.index.FlatIndex` returns, ties included;
* an approximate backend may find fewer than ``k'`` items: the empty slots at the end of
  a row hold id :data:`MISSING_INDEX` (-1) and distance :data:`MISSING_DISTANCE`
  (``2**31 - 1``, as faiss does), so rows stay sorted.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import ClassVar

import numpy as np

from hashret.codes import check_bits, check_codes, n_bytes

#: Id of an empty result slot (approximate backends that found fewer than k items).
MISSING_INDEX = -1
#: Distance of an empty result slot: larger than any Hamming distance, so rows stay sorted.
MISSING_DISTANCE = int(np.iinfo(np.int32).max)

RangeResult = list[tuple[np.ndarray, np.ndarray]]


class HammingIndex(ABC):
    """A searchable set of packed binary codes (template method: inputs are checked here once).

    Subclasses implement ``__len__``, ``_add``, ``_search``, ``_range_search`` and
    ``_reset`` on already-validated inputs; the public methods below check shapes, ``k``
    and the radius, and handle the empty cases.

    Class attributes:
        name: the registry name (``create_index(name, bits)``).
        exact: ``search`` returns exactly the numpy reference's answer, ties included.
        exact_range: ``range_search`` returns exactly the reference's answer.
    """

    name: ClassVar[str] = ""
    exact: ClassVar[bool] = True
    exact_range: ClassVar[bool] = True

    def __init__(self, bits: int) -> None:
        self.bits: int = check_bits(bits)
        self.nbytes: int = n_bytes(self.bits)

    @property
    def dim(self) -> int:
        """Bits the backend compares: ``8 * nbytes`` (the padding bits are always 0)."""
        return 8 * self.nbytes

    @abstractmethod
    def __len__(self) -> int:
        """Number of codes in the index."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}(bits={self.bits}, size={len(self)})"

    # ----------------------------------------------------------------- public API
    def add(self, codes: np.ndarray) -> None:
        """Append packed codes ``uint8[m, nbytes]``; their ids are ``len(self) .. len(self)+m-1``.

        Raises:
            ValueError: wrong dtype or width, or non-zero padding bits.
        """
        c = self.check_codes(codes, "codes")
        if len(c):
            self._add(c)

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` nearest codes of each query.

        Args:
            queries: ``uint8[q, nbytes]`` packed codes of this index's length.
            k: results per query, ``k >= 1``; capped at ``len(self)``.

        Returns:
            ``(distances int32[q, k'], indices int64[q, k'])`` with ``k' = min(k, len(self))``,
            sorted by distance, equal distances by index (database order). Approximate
            backends pad rows they could not fill with ``(MISSING_DISTANCE, MISSING_INDEX)``.

        Raises:
            ValueError: bad query codes, ``k`` not a positive integer, or an empty index.
        """
        q = self.check_codes(queries, "queries")
        k = check_int(k, "k", minimum=1)
        self._check_not_empty()
        kk = min(k, len(self))
        if len(q) == 0:
            return np.zeros((0, kk), np.int32), np.zeros((0, kk), np.int64)
        dist, idx = self._search(q, kk)
        assert dist.shape == idx.shape == (len(q), kk), (dist.shape, idx.shape)
        return np.ascontiguousarray(dist, dtype=np.int32), np.ascontiguousarray(idx, dtype=np.int64)

    def range_search(self, queries: np.ndarray, radius: int | np.ndarray) -> RangeResult:
        """All codes within Hamming distance ``radius`` (inclusive) of each query.

        Args:
            queries: ``uint8[q, nbytes]`` packed codes.
            radius: ``int >= 0``, the same for every query, or ``int[q]`` one per query.
                Distance ``<= radius`` is a hit (faiss's own ``range_search`` is strict:
                the faiss backends pass ``radius + 1``).

        Returns:
            one ``(distances int32[m_i], indices int64[m_i])`` pair per query, sorted by
            distance, equal distances by index.

        Raises:
            ValueError: bad query codes, a negative or non-integer radius, an empty index.
        """
        q = self.check_codes(queries, "queries")
        radii = _check_radius(radius, len(q))
        self._check_not_empty()
        return self._range_search_radii(q, radii)

    def reset(self) -> None:
        """Remove every code (ids start at 0 again); a trained backend stays trained."""
        self._reset()

    def fit_state(self, codes: np.ndarray) -> bytes | None:
        """What adding ``codes`` first would train (an IVF's centroids), as bytes for
        :meth:`load_state`; None for backends that train nothing (the default). The index
        itself is left as it was. An index directory stores these bytes with its first
        codes, so its backend searches the same way after every reopen or compaction."""
        return None

    def load_state(self, state: bytes) -> None:
        """Take a trained state made by :meth:`fit_state` (before any code is added).

        Raises:
            ValueError: this backend keeps no state, or the state is of another setting.
        """
        raise ValueError(f"the {self.name} backend keeps no trained state")

    def check_codes(self, codes: np.ndarray, what: str = "codes") -> np.ndarray:
        """Validate packed codes for this index (:func:`hashret.codes.check_codes`); return them as
        C-contiguous ``uint8[n, nbytes]``.

        Raises:
            ValueError: not ``uint8``, not ``[n, nbytes]``, or padding bits set.
        """
        return check_codes(codes, self.bits, what)

    # ----------------------------------------------------------- backend hooks
    @abstractmethod
    def _add(self, codes: np.ndarray) -> None:
        """Append validated, non-empty ``uint8[m, nbytes]`` codes."""

    @abstractmethod
    def _search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top-k of validated, non-empty queries, ``1 <= k <= len(self)``."""

    @abstractmethod
    def _range_search(self, queries: np.ndarray, radius: int) -> RangeResult:
        """Inclusive range search of validated queries with one radius ``>= 0``."""

    @abstractmethod
    def _reset(self) -> None:
        """Remove every code."""

    def _range_search_radii(self, queries: np.ndarray, radii: np.ndarray) -> RangeResult:
        """:meth:`range_search` of validated queries with one radius per query (``int64[q]``)."""
        out: RangeResult = [(np.zeros(0, np.int32), np.zeros(0, np.int64))] * len(queries)
        for r in np.unique(radii):
            rows = np.flatnonzero(radii == r)
            for row, res in zip(rows, self._range_search(queries[rows], int(r)), strict=True):
                out[row] = (res[0].astype(np.int32, copy=False), res[1].astype(np.int64, copy=False))
        return out

    def _check_not_empty(self) -> None:
        if len(self) == 0:
            raise ValueError("the index is empty: add codes first (index.add(codes))")


def check_int(value: object, name: str, *, minimum: int) -> int:
    """``value`` as an int, or a ValueError when it is not an integer ``>= minimum``."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value}")
    return int(value)


def _check_radius(radius: int | np.ndarray, n_queries: int) -> np.ndarray:
    """One radius per query as ``int64[q]``."""
    if isinstance(radius, (int, np.integer)) and not isinstance(radius, bool):
        return np.full(n_queries, check_int(radius, "radius", minimum=0), dtype=np.int64)
    r = np.asarray(radius)
    if r.ndim != 1 or len(r) != n_queries or not (r.dtype.kind in "iu" or r.size == 0):
        raise ValueError(
            f"radius must be an integer >= 0 or an integer array [q] (one per query, "
            f"q={n_queries}), got {radius!r}"
        )
    if r.size and r.min() < 0:
        raise ValueError(f"radius must be >= 0, got a minimum of {r.min()}")
    return r.astype(np.int64)
