"""LSH: random hyperplanes through the data mean.

Follows Charikar, "Similarity estimation techniques from rounding algorithms", STOC 2002
(sign random projections; Indyk & Motwani 1998, Gionis et al. 1999 for LSH) as the hashing
papers run it (Gong & Lazebnik 2011): centre the data, draw a Gaussian matrix
``W ~ N(0, 1)^{d x bits}``, bit ``j`` = ``(x - mean) . w_j > 0``. Centring puts every
hyperplane through the mean, so each bit splits the data near its middle.
"""

from __future__ import annotations

import numpy as np

from hashret.baselines.base import HashBaseline


class LSH(HashBaseline):
    """Sign random projections on centred features (unsupervised, data-independent directions).

    Attributes (after ``fit``):
        mean_: ``float64[d']`` feature means of the fitting set.
        projection_: ``float64[d', bits]`` Gaussian directions.
    """

    name = "lsh"
    supervised = False
    paper = "Charikar, STOC 2002 (sign random projections); Gionis, Indyk & Motwani, VLDB 1999"

    def _fit(self, x: np.ndarray, y: np.ndarray | None) -> None:
        self.mean_ = x.mean(axis=0)
        self.projection_ = self.rng().standard_normal((x.shape[1], self.bits))

    def _project(self, x: np.ndarray) -> np.ndarray:
        return (x - self.mean_) @ self.projection_
