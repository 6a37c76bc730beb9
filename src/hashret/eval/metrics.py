"""Retrieval metrics as pure functions on ranked relevance.

Input convention: ``rel`` is a ``bool[q, k]`` matrix (0/1 integers are accepted), one
row per query, holding the relevance of that query's ranked list from rank 1 to rank
``k``. How the list was ranked (Hamming distance, ties broken by database order) is
decided upstream by :func:`hashret.eval.ranking.hamming_ranking`; these functions only
see the order. ``k`` is the number of columns of ``rel``: the length of the retrieved
list that is scored.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from hashret.codes import hamming_distances
from hashret.eval.ranking import (
    check_code_pair,
    check_labels,
    query_chunks,
    relevance_matrix,
)


def average_precision_at_k(rel: np.ndarray) -> np.ndarray:
    """Average precision of each query's top-``k`` list (DLBHC convention).

    ``AP@k = (1 / R_k) * sum_{i <= k, rel_i} P@i`` with ``P@i`` the precision of the top
    ``i`` and ``R_k`` the number of relevant items *found in the top k* (not the number
    of relevant items in the whole database): the convention of the DLBHC authors'
    MATLAB evaluation code. When ``rel`` covers the whole ranked database, ``R_k`` is
    the total number of relevant items and this is the standard full-ranking AP.

    A query with no relevant item in its top ``k`` scores 0 (it is not dropped).

    Args:
        rel: ``bool[q, k]`` ranked relevance, ``k >= 1``.

    Returns:
        ``float64[q]`` AP per query, in ``[0, 1]``.
    """
    r = check_relevance(rel)
    q = r.shape[0]
    rows, cols = np.nonzero(r)  # row-major: ranks ascend within each row
    found = np.bincount(rows, minlength=q)  # R_k per query
    first = np.cumsum(found) - found  # offset of each row's first hit
    hit_number = np.arange(1, rows.size + 1) - np.repeat(first, found)  # j-th hit of its row
    # the j-th relevant item at rank i contributes P@i = j / i
    sums = np.bincount(rows, weights=hit_number / (cols + 1.0), minlength=q)
    return np.divide(sums, found, out=np.zeros(q, dtype=np.float64), where=found > 0)


def mean_average_precision(rel: np.ndarray) -> float:
    """Mean over queries of :func:`average_precision_at_k`.

    mAP@k when ``rel`` has ``k`` columns (DLBHC convention: each AP normalized by the
    relevant items found in the top ``k``); full-ranking mAP when ``rel`` covers the
    whole database. Queries with no relevant item in the list count as 0.

    Args:
        rel: ``bool[q, k]`` ranked relevance, ``q >= 1``, ``k >= 1``.

    Returns:
        mAP in ``[0, 1]``.
    """
    ap = average_precision_at_k(rel)
    if ap.size == 0:
        raise ValueError("rel has no rows: mAP needs at least one query")
    return float(ap.mean())


def precision_at_k(rel: np.ndarray, ks: Iterable[int] | int) -> np.ndarray:
    """Mean precision of the top ``k`` for each ``k`` in ``ks``.

    ``P@k = (#relevant in the top k) / k``, averaged over all queries (a query with no
    relevant item in its top ``k`` contributes 0).

    Args:
        rel: ``bool[q, K]`` ranked relevance, ``q >= 1``.
        ks: list lengths, each in ``[1, K]`` (a single int is accepted).

    Returns:
        ``float64[len(ks)]`` mean P@k, in the order of ``ks``.

    Raises:
        ValueError: a ``k`` outside ``[1, K]``, or no queries.
    """
    r = check_relevance(rel)
    if r.shape[0] == 0:
        raise ValueError("rel has no rows: P@k needs at least one query")
    k_arr = check_ks(ks, r.shape[1])
    return hits_at_k(r, k_arr) / (r.shape[0] * k_arr.astype(np.float64))


def ideal_precision_at_k(
    query_labels: np.ndarray, db_labels: np.ndarray, ks: Iterable[int] | int
) -> np.ndarray:
    """The best mean P@k any ranking can reach: every relevant item ranked first.

    A query with ``R`` relevant database items scores ``min(R, k) / k``: 1 up to
    ``k = R``, then ``R / k``. So on a balanced dataset (``n_class`` database items per
    class) the curve is ``min(1, n_class / k)``: a real P@k curve that drops at the class
    size follows this bound, it is not a fault of the codes. Queries with no relevant
    item score 0 and stay in the mean, as in :func:`precision_at_k`.

    Args:
        query_labels: ``[q]`` class ids or ``[q, L]`` 0/1 multi-label matrix, ``q >= 1``.
        db_labels: ``[n]`` class ids or ``[n, L]`` 0/1 multi-label matrix.
        ks: list lengths, each in ``[1, n]``.

    Returns:
        ``float64[len(ks)]``, in the order of ``ks``.
    """
    ql, dl = check_labels(query_labels, db_labels, len(query_labels), len(db_labels))
    if len(ql) == 0:
        raise ValueError("query_labels is empty: P@k needs at least one query")
    k_arr = check_ks(ks, len(dl))
    if ql.ndim == 1:
        classes, counts = np.unique(dl, return_counts=True)
        pos = np.clip(np.searchsorted(classes, ql), 0, len(classes) - 1)
        relevant = np.where(classes[pos] == ql, counts[pos], 0)  # int64[q]
    else:
        relevant = np.concatenate([relevance_matrix(ql[i:i + 1024], dl).sum(axis=1)
                                   for i in range(0, len(ql), 1024)])
    # [q, m] -> mean over queries
    return (np.minimum(relevant[:, None], k_arr[None, :]) / k_arr[None, :]).mean(axis=0)


def precision_within_radius(
    query_codes: np.ndarray,
    query_labels: np.ndarray,
    db_codes: np.ndarray,
    db_labels: np.ndarray,
    radius: int = 2,
    *,
    chunk_size: int | None = None,
) -> float:
    """Mean precision of the Hamming ball of ``radius`` around each query.

    For each query, the retrieved set is every database item at Hamming distance
    ``<= radius`` (no ranking, so no tie rule is involved); its precision is the
    fraction of relevant items in it. A query whose ball is empty scores 0 and stays
    in the mean (the convention of the CNNH and DPSH papers).

    Args:
        query_codes: ``uint8[q, nbytes]`` packed codes.
        query_labels: ``[q]`` class ids or ``[q, L]`` 0/1 multi-label matrix.
        db_codes: ``uint8[n, nbytes]`` packed codes.
        db_labels: ``[n]`` class ids or ``[n, L]`` 0/1 multi-label matrix.
        radius: Hamming radius, ``>= 0`` (2 in the papers).
        chunk_size: queries processed at once (``None``: automatic).

    Returns:
        Mean precision in ``[0, 1]``.
    """
    qc, dc = check_code_pair(query_codes, db_codes)
    if qc.shape[0] == 0:
        raise ValueError("query_codes is empty: precision needs at least one query")
    radius = check_radius(radius)
    ql, dl = check_labels(query_labels, db_labels, qc.shape[0], dc.shape[0])
    total = 0.0
    for sl in query_chunks(qc.shape[0], dc.shape[0], dc.shape[1], chunk_size):
        within = hamming_distances(qc[sl], dc) <= radius  # [c, n]
        total += float(ball_precisions(relevance_matrix(ql[sl], dl), within).sum())
    return total / qc.shape[0]


def ball_precisions(rel: np.ndarray, within: np.ndarray) -> np.ndarray:
    """Per-query precision of a retrieved set: ``float64[q]``, 0 for an empty set.

    Args:
        rel: ``bool[q, n]`` relevance.
        within: ``bool[q, n]`` membership of the retrieved set, aligned with ``rel``.
    """
    size = within.sum(axis=1)
    hits = (rel & within).sum(axis=1)
    return np.divide(hits, size, out=np.zeros(len(size), dtype=np.float64), where=size > 0)


def hits_at_k(rel: np.ndarray, ks: np.ndarray) -> np.ndarray:
    """Relevant items in the top ``k``, summed over queries: ``int64[len(ks)]``.

    Args:
        rel: validated ``bool[q, K]`` ranked relevance.
        ks: validated ``int64`` list lengths in ``[1, K]``.
    """
    kmax = int(ks.max())
    cum = np.cumsum(rel[:, :kmax], axis=1, dtype=np.int64)  # [q, kmax]
    return cum[:, ks - 1].sum(axis=0)


def check_relevance(rel: np.ndarray) -> np.ndarray:
    """Validate a ranked relevance matrix and return it as ``bool[q, k]``.

    Raises:
        ValueError: not 2-D, no columns (``k`` must be ``>= 1``), or values other than
            0/1 / ``True``/``False``.
    """
    r = np.asarray(rel)
    if r.ndim != 2:
        raise ValueError(
            f"rel must be 2-D [q, k] (one ranked list per row), got shape {r.shape}; "
            "for a single query use rel[None, :]"
        )
    if r.shape[1] == 0:
        raise ValueError("rel has no columns: a ranked list needs k >= 1 items")
    if r.dtype != np.bool_:
        if not (np.issubdtype(r.dtype, np.integer) or np.issubdtype(r.dtype, np.floating)):
            raise ValueError(f"rel must be bool or 0/1 numbers, got dtype {r.dtype}")
        if r.size and not np.isin(r, (0, 1)).all():
            raise ValueError("rel must contain only 0/1 (relevant / not relevant) values")
        r = r.astype(np.bool_)
    return r


def check_ks(ks: Iterable[int] | int, kmax: int) -> np.ndarray:
    """Validate list lengths; return them as ``int64[m]``.

    Raises:
        ValueError: empty, non-integer, or a ``k`` outside ``[1, kmax]``.
    """
    if isinstance(ks, (int, np.integer)) and not isinstance(ks, bool):
        ks = [int(ks)]
    arr = np.asarray(list(ks))
    if arr.ndim != 1 or arr.size == 0 or not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"ks must be a non-empty list of integers, got {ks!r}")
    bad = arr[(arr < 1) | (arr > kmax)]
    if bad.size:
        raise ValueError(
            f"k={int(bad[0])} is out of range: the ranked lists have {kmax} items, "
            f"so each k must lie in [1, {kmax}]; rank more items or lower k"
        )
    return arr.astype(np.int64)


def check_radius(radius: int) -> int:
    """Validate a Hamming radius (an integer ``>= 0``) and return it."""
    if isinstance(radius, bool) or not isinstance(radius, (int, np.integer)) or radius < 0:
        raise ValueError(f"radius must be an integer >= 0 (2 in the papers), got {radius!r}")
    return int(radius)
