"""ITQ-CCA: the supervised ITQ, with a CCA projection in place of PCA.

Follows Gong, Lazebnik, Gordo & Perronnin, "Iterative quantization: A procrustean approach to
learning binary codes for large-scale image retrieval", TPAMI 2013 (section "Leveraging
label information", and the authors' released code): canonical correlation analysis between
the centred features ``X`` and the one-hot class matrix ``Y``,

    ``Cxy Cyy^-1 Cyx w = lambda (Cxx) w``,   ``Cxx, Cyy`` ridge-regularised,

keeps the top ``bits`` directions ``w_k``, each scaled by its eigenvalue ``lambda_k`` (the
squared canonical correlation, so directions that carry no label information, beyond
``classes - 1``, shrink towards 0), then runs the ITQ rotation on ``V = X W``.
"""

from __future__ import annotations

import numpy as np
import scipy.linalg

from hashret.baselines.base import HashBaseline
from hashret.baselines.itq import N_ITER, check_dimensions, check_iterations, itq_rotation
from hashret.baselines.pca import fix_signs

#: ridge on Cxx and Cyy, relative to their mean diagonal (the authors use 1e-4 on raw sums)
REGULARIZATION = 1e-4


def cca_directions(
    x: np.ndarray, y: np.ndarray, n_classes: int, k: int, regularization: float = REGULARIZATION
) -> tuple[np.ndarray, np.ndarray]:
    """Top-``k`` canonical directions of features ``x`` against one-hot labels.

    Args:
        x: ``float64[n, d]`` centred features.
        y: ``int64[n]`` class ids in ``[0, n_classes)``.
        n_classes: number of classes.
        k: directions, ``k <= d``.
        regularization: ridge relative to the mean diagonal of each covariance.

    Returns:
        ``(W, lambdas)``: ``float64[d, k]`` directions normalised to ``w^T Cxx w = 1``,
        and ``float64[k]`` eigenvalues (squared canonical correlations) in ``[0, 1]``,
        decreasing.
    """
    n, d = x.shape
    onehot = np.zeros((n, n_classes), dtype=np.float64)
    onehot[np.arange(n), y] = 1.0
    yc = onehot - onehot.mean(axis=0)
    cxx = x.T @ x / (n - 1)
    cyy = yc.T @ yc / (n - 1)
    cxy = x.T @ yc / (n - 1)
    cxx[np.diag_indices(d)] += regularization * np.trace(cxx) / d
    cyy[np.diag_indices(n_classes)] += regularization * np.trace(cyy) / n_classes
    a = cxy @ np.linalg.solve(cyy, cxy.T)  # [d, d] symmetric PSD
    a = (a + a.T) / 2
    values, vectors = scipy.linalg.eigh(a, cxx, subset_by_index=[d - k, d - 1])  # ascending
    values, vectors = values[::-1], vectors[:, ::-1]
    return fix_signs(vectors), np.clip(values, 0.0, 1.0)


class ITQCCA(HashBaseline):
    """ITQ on CCA-projected features (supervised: uses the labels of all fitting samples).

    Args:
        bits, seed, drop_constant: see :class:`~hashret.baselines.base.HashBaseline`.
        n_iter: ITQ alternations (50).
        regularization: CCA ridge, relative to the covariances' mean diagonal.

    Attributes (after ``fit``):
        mean_: ``float64[d']``; projection_: ``float64[d', bits]`` the scaled CCA directions;
        correlations_: ``float64[bits]`` squared canonical correlations;
        rotation_: ``float64[bits, bits]``; loss_history_: ``float64[n_iter + 1]``.
    """

    name = "itq-cca"
    supervised = True
    paper = "Gong, Lazebnik, Gordo & Perronnin, Iterative quantization, TPAMI 2013 (ITQ-CCA)"

    def __init__(self, bits: int, *, seed: int = 0, drop_constant: bool = False,
                 n_iter: int = N_ITER, regularization: float = REGULARIZATION) -> None:
        super().__init__(bits, seed=seed, drop_constant=drop_constant)
        self.n_iter = check_iterations(n_iter)
        if not (isinstance(regularization, (int, float)) and regularization > 0):
            raise ValueError(f"regularization must be a number > 0, got {regularization!r}")
        self.regularization = float(regularization)

    def _fit(self, x: np.ndarray, y: np.ndarray | None) -> None:
        assert y is not None
        check_dimensions(self.name, self.bits, x.shape[1])
        self.mean_ = x.mean(axis=0)
        xc = x - self.mean_
        directions, lambdas = cca_directions(xc, y, int(y.max()) + 1, self.bits, self.regularization)
        self.correlations_ = lambdas
        self.projection_ = directions * lambdas  # scale each direction by its eigenvalue
        v = xc @ self.projection_
        self.rotation_, self.loss_history_ = itq_rotation(v, self.n_iter, self.rng())

    def _project(self, x: np.ndarray) -> np.ndarray:
        return ((x - self.mean_) @ self.projection_) @ self.rotation_
