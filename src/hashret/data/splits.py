"""Seeded stratified splitting of a labelled set (test sets, validation sets)."""

from __future__ import annotations

import numpy as np


def stratified_split(
    labels: np.ndarray, fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Split item positions into a kept part and a held-out part, class by class.

    Each class ``k`` with ``n_k`` items sends ``round(fraction * n_k)`` of them to the
    holdout, clamped to ``[1, n_k - 1]`` when ``n_k >= 2`` (so every such class appears in
    both parts); a class with a single item stays in the kept part. Which items go where is
    drawn with ``np.random.default_rng(seed)``, so the result depends only on ``labels``,
    ``fraction`` and ``seed``.

    Args:
        labels: ``int[n]`` class labels (any integer values).
        fraction: share of each class to hold out, strictly between 0 and 1.
        seed: random seed.

    Returns:
        ``(kept, holdout)``: two sorted ``int64`` arrays of positions into ``labels`` that
        together cover ``range(n)`` exactly once.

    Raises:
        ValueError: ``labels`` is not a 1-D integer array or ``fraction`` is not in (0, 1).
    """
    labels = np.asarray(labels)
    if labels.ndim != 1 or (labels.size and labels.dtype.kind not in "iu"):
        raise ValueError(
            f"labels must be a 1-D integer array, got dtype {labels.dtype} shape {labels.shape}"
        )
    fraction = float(fraction)
    if not 0.0 < fraction < 1.0:
        raise ValueError(
            f"the split fraction must be strictly between 0 and 1, got {fraction}; "
            "for example 0.2 holds out a fifth of every class"
        )
    rng = np.random.default_rng(seed)
    holdout: list[np.ndarray] = []
    for k in np.unique(labels):  # sorted, so the draws happen in a fixed order
        members = np.flatnonzero(labels == k)
        n_k = len(members)
        if n_k < 2:
            continue
        n_out = min(max(int(round(fraction * n_k)), 1), n_k - 1)
        holdout.append(rng.permutation(members)[:n_out])
    out = np.sort(np.concatenate(holdout)) if holdout else np.zeros(0, dtype=np.int64)
    mask = np.ones(len(labels), dtype=bool)
    mask[out] = False
    return np.flatnonzero(mask).astype(np.int64), out.astype(np.int64)
