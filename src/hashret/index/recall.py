"""Recall@k of an approximate index against an exact one."""

from __future__ import annotations

import numpy as np

from hashret.index.base import MISSING_INDEX, HammingIndex


def recall_at_k(index: HammingIndex, reference: HammingIndex, queries: np.ndarray, k: int) -> float:
    """Share of the true top-``k`` that ``index`` finds, averaged over the queries.

    Ties: with ``t`` the true ``k'``-th distance of a query (``k' = min(k, n)``), any item
    at distance ``<= t`` counts as a true neighbour, so an index that keeps other items
    of the boundary distance than the reference does is not penalised. The true set
    comes from ``reference.range_search(queries, t)``; the distances ``index`` reports
    are not trusted. Per query, recall = (distinct returned ids in the true set) / ``k'``.

    Args:
        index: the index to measure (e.g. ``"faiss-ivf"``), holding the same codes in the
            same order as ``reference``.
        reference: an exact index (``reference.exact``), e.g. ``create_index("numpy", bits)``.
        queries: ``uint8[q, nbytes]`` packed query codes, ``q >= 1``.
        k: neighbours per query, ``k >= 1``.

    Returns:
        recall in ``[0, 1]``; 1.0 means every returned row is a correct top-``k'``.

    Raises:
        ValueError: the indexes differ in code length or size, the reference is not
            exact, there are no queries, or ``k`` / the queries are invalid.
    """
    if not reference.exact:
        raise ValueError(
            f"the reference must be an exact index, got {type(reference).__name__}: "
            "use create_index('numpy', bits) or create_index('faiss-flat', bits)"
        )
    if index.bits != reference.bits or len(index) != len(reference):
        raise ValueError(
            f"index ({index.bits} bits, {len(index)} codes) and reference ({reference.bits} bits, "
            f"{len(reference)} codes) must hold the same codes: add the same codes to both"
        )
    true_dist, _ = reference.search(queries, k)  # [q, k'], validates queries and k
    if len(true_dist) == 0:
        raise ValueError("recall needs at least one query")
    kk = true_dist.shape[1]
    truth = reference.range_search(queries, true_dist[:, -1])
    _, found = index.search(queries, kk)  # [q, k']
    hits = [
        np.intersect1d(row[row != MISSING_INDEX], true_idx).size
        for row, (_, true_idx) in zip(found, truth, strict=True)
    ]
    return float(np.mean(np.minimum(hits, kk)) / kk)
