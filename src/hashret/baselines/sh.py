"""SH: spectral hashing with the analytical eigenfunctions of a uniform box.

Follows Weiss, Torralba & Fergus, "Spectral hashing", NIPS 2008 (and the authors' released
``trainSH`` / ``compressSH``):

1. PCA to ``p = min(bits, d)`` directions;
2. fit a box ``[lo_i, hi_i]`` around the projected data (its minimum and maximum along each
   direction);
3. the one-dimensional Laplacian eigenfunctions of a uniform density on ``[lo, hi]`` are
   ``phi_k(x) = cos(k pi (x - lo) / (hi - lo))`` with eigenvalue growing as
   ``(k / (hi - lo))^2``; enumerate modes ``k = 1, 2, ...`` along every direction and keep
   the ``bits`` with the smallest eigenvalues (the constant ``k = 0`` mode excluded);
4. bit = ``phi_k(x_i) > 0``.

Long directions (large spread) therefore get several bits at increasing frequency; short
ones may get none. Eigenvalue ties are broken by direction order (the enumeration order of
the authors' code).
"""

from __future__ import annotations

import numpy as np

from hashret.baselines.base import HashBaseline
from hashret.baselines.pca import fit_pca


def select_modes(ranges: np.ndarray, bits: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``bits`` single-direction modes of smallest eigenvalue.

    Args:
        ranges: ``float64[p]`` box side lengths ``hi - lo`` (all ``> 0``).
        bits: modes to keep.

    Returns:
        ``(directions, frequencies)``: ``int64[bits]`` direction index and ``int64[bits]``
        mode number ``k >= 1`` of each bit, by increasing eigenvalue ``(k / range)^2``.
    """
    p = ranges.size
    max_mode = np.ceil((bits + 1) * ranges / ranges.max()).astype(np.int64)  # enough modes
    directions = np.concatenate([np.full(m, i, dtype=np.int64) for i, m in enumerate(max_mode)])
    frequencies = np.concatenate([np.arange(1, m + 1, dtype=np.int64) for m in max_mode])
    eigen = (frequencies / ranges[directions]) ** 2  # proportional to the eigenvalue
    order = np.argsort(eigen, kind="stable")[:bits]  # ties: direction order
    assert order.size == bits, (p, bits)
    return directions[order], frequencies[order]


class SH(HashBaseline):
    """Spectral hashing (unsupervised).

    Attributes (after ``fit``):
        mean_: ``float64[d']``; components_: ``float64[d', p]`` PCA directions;
        low_, high_: ``float64[p]`` the box; directions_, frequencies_: ``int64[bits]``
        the selected modes (see :func:`select_modes`).
    """

    name = "sh"
    supervised = False
    paper = "Weiss, Torralba & Fergus, Spectral hashing, NIPS 2008"

    def _fit(self, x: np.ndarray, y: np.ndarray | None) -> None:
        p = min(self.bits, x.shape[1])
        pca = fit_pca(x, p)
        self.mean_, self.components_ = pca.mean, pca.components
        v = (x - self.mean_) @ self.components_  # [n, p]
        self.low_, self.high_ = v.min(axis=0), v.max(axis=0)
        ranges = self.high_ - self.low_
        keep = ranges > 0
        if not keep.all():  # a direction with no spread (rank-deficient data) has no modes
            self.components_, self.low_, self.high_ = (
                self.components_[:, keep], self.low_[keep], self.high_[keep])
            ranges = ranges[keep]
        self.directions_, self.frequencies_ = select_modes(ranges, self.bits)

    def _project(self, x: np.ndarray) -> np.ndarray:
        v = (x - self.mean_) @ self.components_  # [m, p]
        omega = np.pi * self.frequencies_ / (self.high_ - self.low_)[self.directions_]  # [bits]
        return np.cos((v[:, self.directions_] - self.low_[self.directions_]) * omega)
