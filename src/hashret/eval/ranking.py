"""Hamming ranking of a database for each query, and the relevance of a ranked list.

Ranking convention (used by every metric in :mod:`hashret.eval`): database items are
ordered by increasing Hamming distance to the query, and items at the same distance
keep their database order (a *stable* sort: the smaller database index comes first).
Hamming distances are small integers with many ties, so this tie rule decides the
result; an unstable ``np.argsort`` would make mAP@k depend on the sort algorithm.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from hashret.codes import hamming_distances

# Bytes one query chunk may use per intermediate array (32 MiB): the XOR intermediate
# of hamming_distances is chunk * n * nbytes bytes and the sort indices chunk * n * 8.
# Smaller chunks are faster too (measured: 64-128 queries beat 512 by a third).
_CHUNK_BYTES = 1 << 25


def check_code_pair(query_codes: np.ndarray, db_codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Validate packed query and database codes; return them as C-contiguous arrays.

    Args:
        query_codes: ``uint8[q, nbytes]`` packed codes (see :mod:`hashret.codes`).
        db_codes: ``uint8[n, nbytes]`` packed codes of the same width.

    Raises:
        ValueError: wrong dtype or rank, different widths, or an empty database.
    """
    q = np.asarray(query_codes)
    d = np.asarray(db_codes)
    for name, c in (("query_codes", q), ("db_codes", d)):
        if c.dtype != np.uint8:
            raise ValueError(
                f"{name} must be packed uint8 codes, got dtype {c.dtype}; "
                "pack 0/1 bits with hashret.codes.pack() (or encode() activations)"
            )
        if c.ndim != 2 or c.shape[1] == 0:
            raise ValueError(f"{name} must be 2-D [n, nbytes] packed codes, got shape {c.shape}")
    if q.shape[1] != d.shape[1]:
        raise ValueError(
            f"query_codes are {q.shape[1]} bytes wide but db_codes are {d.shape[1]}: "
            "encode queries and database with the same model / code length"
        )
    if d.shape[0] == 0:
        raise ValueError("db_codes is empty: the database needs at least one item")
    return np.ascontiguousarray(q), np.ascontiguousarray(d)


def query_chunks(
    n_queries: int, n_db: int, nbytes: int, chunk_size: int | None = None
) -> Iterator[slice]:
    """Yield slices over the queries so that one chunk's ``[chunk, n_db]`` arrays stay small.

    Args:
        n_queries: number of queries ``q``.
        n_db: number of database items ``n``.
        nbytes: bytes per packed code.
        chunk_size: queries per chunk; ``None`` picks one that bounds each intermediate
            array to about 32 MiB (69 queries for a 60,000-item database).
    """
    if chunk_size is None:
        chunk_size = max(1, _CHUNK_BYTES // (max(n_db, 1) * max(nbytes, 8)))
    elif isinstance(chunk_size, bool) or not isinstance(chunk_size, (int, np.integer)):
        raise ValueError(f"chunk_size must be a positive integer or None, got {chunk_size!r}")
    elif chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    for start in range(0, n_queries, int(chunk_size)):
        yield slice(start, min(start + int(chunk_size), n_queries))


def stable_argsort_distances(distances: np.ndarray) -> np.ndarray:
    """Rank each row of a Hamming distance matrix, ties broken by column order.

    Args:
        distances: ``int[c, n]`` Hamming distances (values in ``[0, 256]``).

    Returns:
        ``int64[c, n]``: row ``i`` lists the database indices from nearest to farthest;
        equal distances keep increasing database index (stable sort; numpy uses a
        radix sort for 16-bit keys, so this is linear in ``n``).
    """
    return np.argsort(distances.astype(np.uint16), axis=1, kind="stable")


def hamming_ranking(
    query_codes: np.ndarray,
    db_codes: np.ndarray,
    k: int | None,
    *,
    chunk_size: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` nearest database items of each query by Hamming distance.

    Args:
        query_codes: ``uint8[q, nbytes]`` packed query codes.
        db_codes: ``uint8[n, nbytes]`` packed database codes (same width).
        k: how many items to return per query, ``1 <= k <= n``; ``None`` returns the
            full ranking (``k = n``; the output takes ``12 * q * n`` bytes, 7.2 GB for
            10,000 x 60,000: :func:`hashret.eval.evaluate_codes` ranks in chunks instead).
        chunk_size: queries processed at once (``None``: automatic, bounded memory).

    Returns:
        ``(indices, distances)``: ``int64[q, k]`` database indices and ``int32[q, k]``
        their Hamming distances, nearest first. Ties (equal distances) are broken by
        database order: the smaller database index comes first. The result is exact
        and deterministic.

    Raises:
        ValueError: invalid codes or ``k`` out of range.
    """
    q_codes, d_codes = check_code_pair(query_codes, db_codes)
    n = d_codes.shape[0]
    k = n if k is None else _check_k(k, n)
    indices = np.empty((q_codes.shape[0], k), dtype=np.int64)
    distances = np.empty((q_codes.shape[0], k), dtype=np.int32)
    for sl in query_chunks(q_codes.shape[0], n, d_codes.shape[1], chunk_size):
        d = hamming_distances(q_codes[sl], d_codes)  # [c, n] int32
        order = stable_argsort_distances(d)[:, :k]  # [c, k] int64
        indices[sl] = order
        distances[sl] = np.take_along_axis(d, order, axis=1)
    return indices, distances


def check_labels(
    query_labels: np.ndarray, db_labels: np.ndarray, n_queries: int, n_db: int
) -> tuple[np.ndarray, np.ndarray]:
    """Validate query and database labels; return them as arrays.

    Two forms are accepted, both sides in the same form:

    * single-label: 1-D ``[q]`` and ``[n]`` class ids (any dtype compared with ``==``);
    * multi-label: 2-D 0/1 (or bool) matrices ``[q, L]`` and ``[n, L]``.

    Raises:
        ValueError: wrong rank, mismatched lengths or label counts, non-0/1 matrices.
    """
    ql = np.asarray(query_labels)
    dl = np.asarray(db_labels)
    if ql.ndim not in (1, 2) or ql.ndim != dl.ndim:
        raise ValueError(
            f"labels must be both 1-D class ids or both 2-D 0/1 multi-label matrices, "
            f"got query_labels shape {ql.shape} and db_labels shape {dl.shape}"
        )
    if ql.shape[0] != n_queries:
        raise ValueError(f"query_labels has {ql.shape[0]} rows but there are {n_queries} queries")
    if dl.shape[0] != n_db:
        raise ValueError(f"db_labels has {dl.shape[0]} rows but the database has {n_db} items")
    if ql.ndim == 2:
        if ql.shape[1] != dl.shape[1]:
            raise ValueError(
                f"multi-label matrices disagree on the number of labels: query_labels has "
                f"{ql.shape[1]} columns, db_labels {dl.shape[1]}"
            )
        for name, m in (("query_labels", ql), ("db_labels", dl)):
            if m.size and not np.isin(m, (0, 1)).all():
                raise ValueError(f"multi-label {name} must contain only 0/1 values")
        ql, dl = ql.astype(np.float32), dl.astype(np.float32)
    return ql, dl


def relevance(query_labels: np.ndarray, db_labels: np.ndarray, indices: np.ndarray) -> np.ndarray:
    """Relevance of ranked database items to their queries.

    Args:
        query_labels: ``[q]`` class ids, or a ``[q, L]`` 0/1 multi-label matrix.
        db_labels: ``[n]`` class ids, or an ``[n, L]`` 0/1 multi-label matrix.
        indices: ``int[q, k]`` ranked database indices, e.g. from :func:`hamming_ranking`.

    Returns:
        ``bool[q, k]``: ``True`` where the ranked item is relevant to its query: the same
        class id (single-label) or at least one shared label (multi-label).

    Raises:
        ValueError: labels or indices of the wrong shape, or indices out of range.
    """
    idx = np.asarray(indices)
    if idx.ndim != 2 or not np.issubdtype(idx.dtype, np.integer):
        raise ValueError(f"indices must be a 2-D integer array [q, k], got {idx.dtype} {idx.shape}")
    ql, dl = check_labels(query_labels, db_labels, idx.shape[0], np.asarray(db_labels).shape[0])
    if idx.size and (idx.min() < 0 or idx.max() >= dl.shape[0]):
        raise ValueError(f"indices must lie in [0, {dl.shape[0]}) (the database size)")
    return ranked_relevance(ql, dl, idx)


def ranked_relevance(
    query_labels: np.ndarray, db_labels: np.ndarray, indices: np.ndarray
) -> np.ndarray:
    """:func:`relevance` without validation, for labels from :func:`check_labels`.

    Returns:
        ``bool[q, k]``.
    """
    if query_labels.ndim == 1:
        return db_labels[indices] == query_labels[:, None]
    shared = query_labels @ db_labels.T  # [q, n] number of shared labels
    return np.take_along_axis(shared > 0, indices, axis=1)


def relevance_matrix(query_labels: np.ndarray, db_labels: np.ndarray) -> np.ndarray:
    """Relevance of every database item to every query, in database order.

    Args:
        query_labels: ``[q]`` class ids or ``[q, L]`` 0/1 matrix (validated by
            :func:`check_labels`).
        db_labels: ``[n]`` class ids or ``[n, L]`` 0/1 matrix.

    Returns:
        ``bool[q, n]``: same class id, or at least one shared label.
    """
    ql, dl = check_labels(query_labels, db_labels, len(query_labels), len(db_labels))
    if ql.ndim == 1:
        return ql[:, None] == dl[None, :]
    return (ql @ dl.T) > 0


def _check_k(k: int, n: int) -> int:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)):
        raise ValueError(f"k must be a positive integer or None (full ranking), got {k!r}")
    if not 1 <= k <= n:
        raise ValueError(
            f"k={k} is out of range for a database of {n} items: use 1 <= k <= {n}, "
            "or k=None for the full ranking"
        )
    return int(k)
