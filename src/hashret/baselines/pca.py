"""Principal components with a fixed sign convention (shared by ITQ, SH and the input reducer)."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import scipy.linalg

#: rows per block when accumulating the covariance (bounds the float64 copies)
COV_CHUNK = 4096


class PCA(NamedTuple):
    """Principal directions of a point set.

    Attributes:
        mean: ``float64[d]`` column means.
        components: ``float64[d, k]`` orthonormal directions, by decreasing variance.
        variances: ``float64[k]`` variance along each direction (``>= 0``).
    """

    mean: np.ndarray
    components: np.ndarray
    variances: np.ndarray


def fit_pca(x: np.ndarray, k: int) -> PCA:
    """Top-``k`` principal directions of ``x`` (covariance eigendecomposition).

    The sign of each direction is fixed so that its entry of largest magnitude is positive
    (the convention of scikit-learn's ``svd_flip``), so the result does not depend on the
    LAPACK build.

    Args:
        x: ``float[n, d]``, ``n >= 2``.
        k: number of directions, ``1 <= k <= d``.

    Returns:
        :class:`PCA`.
    """
    x = np.asarray(x)
    n, d = x.shape
    if not 1 <= k <= d:
        raise ValueError(f"cannot take {k} principal directions of {d}-dimensional features: "
                         f"choose 1 <= k <= {d}")
    if n < 2:
        raise ValueError(f"PCA needs at least 2 samples, got {n}")
    mean = x.mean(axis=0, dtype=np.float64)
    cov = np.zeros((d, d), dtype=np.float64)
    for start in range(0, n, COV_CHUNK):
        block = np.asarray(x[start:start + COV_CHUNK], dtype=np.float64) - mean
        cov += block.T @ block
    cov /= n - 1
    values, vectors = scipy.linalg.eigh(cov, subset_by_index=[d - k, d - 1])  # ascending
    values, vectors = values[::-1], vectors[:, ::-1]
    return PCA(mean=mean, components=fix_signs(vectors), variances=np.maximum(values, 0.0))


def fix_signs(vectors: np.ndarray) -> np.ndarray:
    """Flip columns of ``float[d, k]`` so that each one's largest-magnitude entry is positive."""
    v = np.array(vectors, dtype=np.float64)
    rows = np.argmax(np.abs(v), axis=0)
    signs = np.sign(v[rows, np.arange(v.shape[1])])
    signs[signs == 0] = 1.0
    return v * signs
