"""Hierarchical deep search (DLBHC, Lin et al. 2015): coarse Hamming candidates, fine re-rank.

Stage 1 (coarse) takes a candidate pool from a :class:`~hashret.index.HammingIndex` of the
binary codes: either the top ``candidates`` items by Hamming distance, or every item
within Hamming distance ``radius``. Stage 2 (fine) re-ranks the pool by the Euclidean
distance between the query's float features (the layer before the hash layer,
``forward_features``) and the stored database features, and keeps the top ``k``.

Ordering: by Euclidean distance, then Hamming distance, then database index (stable),
so equal float distances never make the result depend on the sort algorithm.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hashret.index.base import MISSING_INDEX, HammingIndex, check_int

# Candidate rows whose features are gathered and compared at once (bounds the float32
# difference matrix to _BLOCK_ROWS * d * 4 bytes).
_BLOCK_ROWS = 4096
# A ties pool first looks this many times further than the pool size before a range search.
_TIES_FACTOR = 4


@dataclass(frozen=True)
class SearchResult:
    """The answer to one query, best first.

    Attributes:
        indices: ``int64[k']`` database indices.
        hamming: ``int32[k']`` their Hamming distances to the query code.
        euclidean: ``float32[k']`` their Euclidean feature distances to the query
            (``nan`` when the search ran with ``rerank=False``).
    """

    indices: np.ndarray
    hamming: np.ndarray
    euclidean: np.ndarray

    def __len__(self) -> int:
        return len(self.indices)


class HierarchicalSearcher:
    """Coarse-to-fine retrieval over a Hamming index and the database's float features.

    Args:
        index: the database codes, e.g. ``create_index("faiss-flat", bits)`` after ``add``.
        features: ``float32`` or ``float16 [n, d]`` database features, row ``i`` for index id
            ``i`` (``n == len(index)``). A ``np.memmap`` works: only candidate rows are read;
            so does any array-like with ``shape``, ``ndim``, ``dtype`` and row indexing by an
            ``int64`` array (:class:`hashret.store.features.SegmentedRows`).

    Raises:
        ValueError: features that are not a 2-D float array, or a row count that differs
            from the index size.
    """

    def __init__(self, index: HammingIndex, features: np.ndarray) -> None:
        if not isinstance(index, HammingIndex):
            raise ValueError(
                f"index must be a hashret HammingIndex, got {type(index).__name__}: "
                "build one with hashret.index.create_index(name, bits) and add the codes"
            )
        array_like = all(hasattr(features, a) for a in ("shape", "ndim", "dtype", "__getitem__"))
        f = features if array_like else np.asarray(features)
        if f.ndim != 2 or np.dtype(f.dtype).kind != "f":
            raise ValueError(
                f"features must be a float array [n, d] (float32 or float16), got {f.dtype} {f.shape}"
            )
        self.index = index
        self.features = f
        self._check_sizes()

    @property
    def feature_dim(self) -> int:
        return int(self.features.shape[1])

    def search(
        self,
        query_codes: np.ndarray,
        query_features: np.ndarray,
        k: int,
        *,
        candidates: int | None = None,
        radius: int | None = None,
        rerank: bool = True,
        ties: bool = False,
    ) -> list[SearchResult]:
        """The ``k`` best database items of each query.

        Args:
            query_codes: ``uint8[q, nbytes]`` packed query codes.
            query_features: float ``[q, d]`` query features (any float dtype; compared in
                float32). Not used when ``rerank=False``.
            k: results per query, ``k >= 1``; fewer when the pool is smaller.
            candidates: stage 1 pool = the top ``candidates`` by Hamming distance
                (ties by database order for the exact backends), ``candidates >= 1``.
            radius: stage 1 pool = every item within Hamming distance ``radius``
                (inclusive), ``radius >= 0``. Give exactly one of ``candidates``, ``radius``.
            ties: with ``candidates``, widen each pool to every item at the ``N``-th
                Hamming distance (the pool becomes the ball of that radius). Trained codes
                collide a lot (thousands of items can share a query's exact code), and a
                strict top-N keeps the lowest ids among them, hiding the others from the
                re-rank; with ``ties`` the re-rank sees all of them.
            rerank: ``False`` skips stage 2 and returns the first ``k`` of the pool in
                Hamming order (``euclidean`` is ``nan``); with ``candidates >= k`` and an
                exact index that equals ``index.search(query_codes, k)``.

        Returns:
            one :class:`SearchResult` per query, sorted by (Euclidean, Hamming, index);
            by (Hamming, index) when ``rerank=False``.

        Raises:
            ValueError: bad codes or features, ``k``/``candidates``/``radius`` out of range,
                both or neither of ``candidates`` and ``radius``, or features out of step
                with the index.
        """
        k = check_int(k, "k", minimum=1)
        self._check_pool_args(candidates, radius)
        self._check_sizes()
        codes = self.index.check_codes(query_codes, "query_codes")
        qf = self.check_query_features(query_features, len(codes)) if rerank else None
        pools = self.pools(codes, candidates=candidates, radius=radius, ties=ties)
        if qf is None:
            return [
                SearchResult(i[:k], d[:k], np.full(min(k, len(i)), np.nan, dtype=np.float32))
                for d, i in pools
            ]
        return [self._rerank(q, d, i, k) for q, (d, i) in zip(qf, pools, strict=True)]

    def pools(self, query_codes: np.ndarray, *, candidates: int | None = None, radius: int | None = None,
              ties: bool = False) -> list[tuple[np.ndarray, np.ndarray]]:
        """Stage 1 alone: each query's candidate pool (arguments as in :meth:`search`).

        Returns:
            one ``(hamming int32[m], indices int64[m])`` per query, sorted by (Hamming, index),
            without empty slots. A backend that re-ranks by itself (Milvus) takes these.
        """
        self._check_pool_args(candidates, radius)
        codes = self.index.check_codes(query_codes, "query_codes")
        if radius is not None:
            return self.index.range_search(codes, check_int(radius, "radius", minimum=0))
        n_cand = check_int(candidates, "candidates", minimum=1)
        if ties and n_cand < len(self.index):
            return self._pools_with_ties(codes, n_cand)
        dist, idx = self.index.search(codes, n_cand)  # [q, N'] sorted (hamming, index)
        return [(d[i != MISSING_INDEX], i[i != MISSING_INDEX]) for d, i in zip(dist, idx, strict=True)]

    # ------------------------------------------------------------------ internals
    @staticmethod
    def _check_pool_args(candidates: int | None, radius: int | None) -> None:
        if (candidates is None) == (radius is None):
            raise ValueError(
                "give exactly one of candidates= (top-N by Hamming distance) or radius= "
                "(every item within that Hamming distance) for the coarse stage"
            )

    def _pools_with_ties(self, codes: np.ndarray, n_cand: int) -> list[tuple[np.ndarray, np.ndarray]]:
        """Every item within each query's ``n_cand``-th Hamming distance ``t``.

        One top-``4 * n_cand`` search usually settles it: when its last distance is above
        ``t``, the items at distance ``<= t`` are a prefix of it. Queries whose ties run
        past that get a range search of radius ``t``.
        """
        wide = min(len(self.index), _TIES_FACTOR * n_cand)
        dist, idx = self.index.search(codes, wide)  # [q, wide] sorted (hamming, index)
        pools: list[tuple[np.ndarray, np.ndarray]] = []
        spill, radii = [], []
        for r, (d, i) in enumerate(zip(dist, idx, strict=True)):
            d, i = d[i != MISSING_INDEX], i[i != MISSING_INDEX]
            t = d[min(n_cand, len(d)) - 1] if len(d) else 0
            cut = int(np.searchsorted(d, t, side="right"))
            pools.append((d[:cut], i[:cut]))
            if cut == len(d) and wide < len(self.index):  # the ties may go on past the window
                spill.append(r)
                radii.append(t)
        if spill:
            wider = self.index.range_search(codes[spill], np.asarray(radii, dtype=np.int64))
            for r, pool in zip(spill, wider, strict=True):
                pools[r] = pool
        return pools

    def _rerank(self, query: np.ndarray, hamming: np.ndarray, indices: np.ndarray, k: int) -> SearchResult:
        """Stage 2 for one query: ``query float32[d]``, pool ``int32[m]``, ``int64[m]``."""
        euclid = self.euclidean_distances(query, indices)
        order = _first_k(euclid, hamming, indices, k)
        return SearchResult(indices[order], hamming[order], euclid[order])

    def euclidean_distances(self, query: np.ndarray, indices: np.ndarray) -> np.ndarray:
        """Euclidean distances from one query ``float[d]`` to database rows ``int64[m]``.

        Gathers the rows in increasing index order (sequential reads of a memmap),
        ``_BLOCK_ROWS`` at a time, and computes ``sqrt(sum((row - query)**2))`` in float32.

        Returns:
            ``float32[m]`` in the order of ``indices``.
        """
        q = np.asarray(query, dtype=np.float32)
        if hasattr(self.features, "euclidean"):  # the index's own storage: a fused kernel
            return self.features.euclidean(q, indices)
        out = np.empty(len(indices), dtype=np.float32)
        order = np.argsort(indices, kind="stable")
        for start in range(0, len(order), _BLOCK_ROWS):
            sel = order[start : start + _BLOCK_ROWS]
            rows = np.asarray(self.features[indices[sel]], dtype=np.float32)  # [b, d]
            diff = rows - q  # [b, d]
            out[sel] = np.sqrt(np.einsum("ij,ij->i", diff, diff))
        return out

    def _check_sizes(self) -> None:
        if len(self.features) != len(self.index):
            raise ValueError(
                f"features have {len(self.features)} rows but the index holds {len(self.index)} "
                "codes: pass one feature row per indexed code, in the order the codes were added"
            )

    def check_query_features(self, query_features: np.ndarray, n_queries: int) -> np.ndarray:
        """``float32[q, d]`` query features, or a ValueError naming the expected shape."""
        qf = np.asarray(query_features)
        if qf.ndim != 2 or qf.dtype.kind != "f":
            raise ValueError(f"query_features must be a float array [q, d], got {qf.dtype} {qf.shape}")
        if qf.shape != (n_queries, self.feature_dim):
            raise ValueError(
                f"query_features must have shape [{n_queries}, {self.feature_dim}] (one row per query "
                f"code, the database's feature dimension), got {qf.shape}: extract query and "
                "database features from the same model layer"
            )
        return qf.astype(np.float32, copy=False)


def _first_k(euclid: np.ndarray, hamming: np.ndarray, indices: np.ndarray, k: int) -> np.ndarray:
    """Positions of the first ``k`` of a pool in (euclidean, hamming, index) order: exactly
    ``np.lexsort((indices, hamming, euclid))[:k]``.

    A pool is often thousands of items for a ``k`` of 10, so only the items not farther than the
    ``k``-th smallest distance (ties included, so the order among them is still decided by Hamming
    distance and index) are sorted: ``np.partition`` is linear, the full three-key sort is not.
    Falls back to the full sort when that distance is NaN (fewer than ``k`` numbers).
    """
    if len(euclid) <= 2 * k:
        return np.lexsort((indices, hamming, euclid))[:k]  # last key (euclidean) first
    kth = np.partition(euclid, k - 1)[k - 1]
    if np.isnan(kth):
        return np.lexsort((indices, hamming, euclid))[:k]
    near = np.flatnonzero(euclid <= kth)  # [>= k] every item that can be among the first k
    return near[np.lexsort((indices[near], hamming[near], euclid[near]))[:k]]
