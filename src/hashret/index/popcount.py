"""Exact Hamming search with hand-written numba popcount kernels (``"popcount"``)."""

from __future__ import annotations

from types import ModuleType

import numpy as np

from hashret.index.base import HammingIndex, RangeResult, check_int


class PopcountIndex(HammingIndex):
    """Exhaustive Hamming search in numba, returning exactly the numpy reference's answer.

    Codes are stored as 64-bit words (``ceil(nbytes / 8)`` per code, zero padded), and a
    search scans them with XOR + popcount. The top-``k`` needs no sort and no ``n``-sized
    buffer: a first pass keeps each chunk of 64 codes' smallest distance, which bounds
    the ``k``-th distance; a second pass rescans only the chunks that can hold a result,
    counts their distances and places the results by counting sort, ties in database
    order (see :mod:`hashret.index._popcount_kernels`). Sixteen queries share each pass
    over the database; blocks of queries run in parallel over numba's threads.

    The first search of a process compiles the kernels for the code width (a few seconds;
    numba caches them on disk, keyed by the CPU, so later processes load them). numba
    itself is imported on first use, so ``import hashret.index`` stays quick.
    """

    name = "popcount"
    exact = True
    exact_range = True

    def __init__(self, bits: int, *, threads: int | None = None) -> None:
        """
        Args:
            bits: code length.
            threads: numba threads a search uses, ``1 <= threads <= NUMBA_NUM_THREADS``;
                ``None``: all of them (numba's default, one per core).
        """
        super().__init__(bits)
        self.threads = threads
        self.words: int = (self.nbytes + 7) // 8
        self._chunks: list[np.ndarray] = []
        self._words = np.zeros((0, self.words), dtype=np.uint64)

    @property
    def threads(self) -> int | None:
        """numba threads per search (``None``: all of numba's threads)."""
        return self._threads

    @threads.setter
    def threads(self, value: int | None) -> None:
        if value is not None:
            value = check_int(value, "threads", minimum=1)
            limit = _numba().config.NUMBA_NUM_THREADS
            if value > limit:
                raise ValueError(
                    f"threads={value} exceeds numba's thread pool of {limit}: use 1 <= threads <= "
                    f"{limit}, or set the environment variable NUMBA_NUM_THREADS before starting Python"
                )
        self._threads = value

    def __len__(self) -> int:
        return len(self._words) + sum(len(c) for c in self._chunks)

    @property
    def code_words(self) -> np.ndarray:
        """All codes as ``uint64[n, ceil(nbytes / 8)]`` words, zero padded, in id order."""
        if self._chunks:  # batches are joined once, on first use
            if len(self._words) == 0 and len(self._chunks) == 1:
                self._words = self._chunks[0]  # one batch (the usual build): no second copy
            else:
                self._words = np.concatenate([self._words, *self._chunks])
            self._chunks = []
        return self._words

    def _add(self, codes: np.ndarray) -> None:
        padded = np.zeros((len(codes), 8 * self.words), dtype=np.uint8)
        padded[:, : self.nbytes] = codes
        self._chunks.append(padded.view(np.uint64))  # [m, words]

    def _query_words(self, queries: np.ndarray) -> np.ndarray:
        """``uint8[q, nbytes]`` -> flat ``uint64[q * words]``."""
        padded = np.zeros((len(queries), 8 * self.words), dtype=np.uint8)
        padded[:, : self.nbytes] = queries
        return padded.view(np.uint64).reshape(-1)

    def _search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        db = self.code_words
        dist = np.empty((len(queries), k), dtype=np.int32)
        idx = np.empty((len(queries), k), dtype=np.int64)
        kernels = _kernels()
        with _threads(self.threads, dynamic=len(queries) > kernels.QUERY_BLOCK):
            kernels.top_k(db.reshape(-1), len(db), self._query_words(queries), self._word_tuple(),
                          k, self.dim, dist, idx)
        return dist, idx

    def _range_search(self, queries: np.ndarray, radius: int) -> RangeResult:
        return self._range_search_radii(queries, np.full(len(queries), radius, dtype=np.int64))

    def _range_search_radii(self, queries: np.ndarray, radii: np.ndarray) -> RangeResult:
        db = self.code_words
        radii = np.minimum(radii, self.dim).astype(np.int64)  # nothing is farther than dim bits
        qw = self._query_words(queries)
        hist = np.zeros((len(queries), self.dim + 1), dtype=np.int64)  # [q, distance]
        kernels = _kernels()
        with _threads(self.threads, dynamic=len(queries) > 1):
            kernels.range_count(db.reshape(-1), len(db), qw, self._word_tuple(), radii, hist)
            lims = np.zeros(len(queries) + 1, dtype=np.int64)
            np.cumsum(hist.sum(axis=1), out=lims[1:])
            dist = np.empty(lims[-1], dtype=np.int32)
            idx = np.empty(lims[-1], dtype=np.int64)
            kernels.range_fill(db.reshape(-1), len(db), qw, self._word_tuple(), radii, hist, lims, dist, idx)
        return [(dist[a:b], idx[a:b]) for a, b in zip(lims[:-1], lims[1:], strict=True)]

    def _reset(self) -> None:
        self._chunks = []
        self._words = np.zeros((0, self.words), dtype=np.uint64)

    def _word_tuple(self) -> tuple[np.uint64, ...]:
        """The kernels' width argument: a tuple of ``words`` zeros (numba specialises on its length)."""
        return (np.uint64(0),) * self.words


def _numba() -> ModuleType:
    import numba

    return numba


def _kernels() -> ModuleType:
    """:mod:`hashret.index._popcount_kernels` (imports numba; compiles nothing yet)."""
    from hashret.index import _popcount_kernels

    return _popcount_kernels


class _threads:
    """Context manager: numba uses ``n`` threads inside (``None``: all), the previous count after.

    ``dynamic``: parallel loops hand out their iterations one at a time inside (on a
    machine shared with other work, a static split waits for the slowest thread); worth
    its scheduling cost (tens of microseconds) only when there are several iterations.
    """

    def __init__(self, n: int | None, *, dynamic: bool = False) -> None:
        self.numba = _numba()
        self.n = self.numba.config.NUMBA_NUM_THREADS if n is None else n
        self.chunksize = 1 if dynamic else 0  # 0: numba's default static split

    def __enter__(self) -> None:
        self.previous = self.numba.get_num_threads()
        self.numba.set_num_threads(self.n)
        self.previous_chunksize = self.numba.set_parallel_chunksize(self.chunksize)

    def __exit__(self, *exc: object) -> None:
        self.numba.set_parallel_chunksize(self.previous_chunksize)
        self.numba.set_num_threads(self.previous)


def search_kernels_cached() -> bool:
    """Whether numba's on-disk cache already holds the compiled search kernels (Hamming top-k and
    range scans, float re-rank distances). When not, the first search compiles them: about a
    minute on 2 cores, once per install (and per code width)."""
    import os

    from hashret.index import _distance_kernels, _popcount_kernels

    for module in (_popcount_kernels, _distance_kernels):
        for kernel in vars(module).values():
            if getattr(kernel, "targetoptions", {}).get("inline") == "always":
                continue  # compiled into the kernels that call it
            cache_file = getattr(getattr(kernel, "_cache", None), "_cache_file", None)
            index = getattr(cache_file, "_index_path", None)
            if index is not None and not os.path.exists(index):
                return False
    return True
