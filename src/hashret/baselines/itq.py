"""ITQ: PCA to ``bits`` dimensions, then the rotation that best fits the binary hypercube.

Follows Gong & Lazebnik, "Iterative quantization: A procrustean approach to learning binary
codes", CVPR 2011 (and Gong et al., TPAMI 2013): centre the data, project it onto its top
``bits`` principal directions, ``V = (X - mean) W``, then alternate for 50 iterations

* ``B = sign(V R)`` (the best codes for the rotation),
* ``R = S~ S^T`` from the SVD ``B^T V = S Omega S~^T`` (the orthogonal Procrustes solution),

from a random orthogonal ``R``. Each step minimises the quantization loss
``||B - V R||_F^2`` over one variable with the other fixed, so the loss never increases.
"""

from __future__ import annotations

import numpy as np

from hashret.baselines.base import HashBaseline
from hashret.baselines.pca import fit_pca

N_ITER = 50


def random_rotation(dim: int, rng: np.random.Generator) -> np.ndarray:
    """A random orthogonal matrix ``float64[dim, dim]`` (QR of a Gaussian matrix)."""
    q, r = np.linalg.qr(rng.standard_normal((dim, dim)))
    return q * np.sign(np.diag(r))  # sign fix makes q Haar-distributed


def quantization_loss(v: np.ndarray, rotation: np.ndarray) -> float:
    """``||sign(V R) - V R||_F^2`` with ``sign(0) = -1`` (bit 0): the ITQ objective at ``R``."""
    return _loss(v @ rotation)


def itq_rotation(
    v: np.ndarray, n_iter: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """The ITQ alternation on projected data.

    Args:
        v: ``float64[n, c]`` centred, projected data.
        n_iter: alternations (50 in the paper).
        rng: draws the initial random rotation.

    Returns:
        ``(R, losses)``: the rotation ``float64[c, c]`` and ``float64[n_iter + 1]``, the
        quantization loss :func:`quantization_loss` at the initial rotation and after each
        iteration (non-increasing).
    """
    rotation = random_rotation(v.shape[1], rng)
    z = v @ rotation  # [n, c]
    losses = [_loss(z)]
    for _ in range(n_iter):
        b = np.where(z > 0, 1.0, -1.0)  # [n, c] best codes for R
        s, _, s_tilde_t = np.linalg.svd(b.T @ v)  # B^T V = S Omega S~^T
        rotation = s_tilde_t.T @ s.T  # argmin_R ||B - V R|| over orthogonal R
        z = v @ rotation
        losses.append(_loss(z))
    return rotation, np.asarray(losses)


def _loss(z: np.ndarray) -> float:
    return float(np.sum((np.where(z > 0, 1.0, -1.0) - z) ** 2))


class ITQ(HashBaseline):
    """Iterative quantization on PCA-projected features (unsupervised).

    Args:
        bits, seed, drop_constant: see :class:`~hashret.baselines.base.HashBaseline`.
        n_iter: ITQ alternations (50 in the paper).

    Attributes (after ``fit``):
        mean_: ``float64[d']``; components_: ``float64[d', bits]`` PCA directions;
        rotation_: ``float64[bits, bits]`` orthogonal; loss_history_: ``float64[n_iter + 1]``.
    """

    name = "itq"
    supervised = False
    paper = "Gong & Lazebnik, Iterative quantization, CVPR 2011"

    def __init__(self, bits: int, *, seed: int = 0, drop_constant: bool = False,
                 n_iter: int = N_ITER) -> None:
        super().__init__(bits, seed=seed, drop_constant=drop_constant)
        self.n_iter = check_iterations(n_iter)

    def _fit(self, x: np.ndarray, y: np.ndarray | None) -> None:
        check_dimensions(self.name, self.bits, x.shape[1])
        pca = fit_pca(x, self.bits)
        self.mean_, self.components_ = pca.mean, pca.components
        v = (x - self.mean_) @ self.components_  # [n, bits]
        self.rotation_, self.loss_history_ = itq_rotation(v, self.n_iter, self.rng())

    def _project(self, x: np.ndarray) -> np.ndarray:
        return ((x - self.mean_) @ self.components_) @ self.rotation_


def check_iterations(n_iter: int) -> int:
    if isinstance(n_iter, bool) or not isinstance(n_iter, (int, np.integer)) or n_iter < 0:
        raise ValueError(f"n_iter must be an integer >= 0 (50 in the ITQ paper), got {n_iter!r}")
    return int(n_iter)


def check_dimensions(name: str, bits: int, d: int) -> None:
    """Methods that project onto ``bits`` directions need ``d >= bits`` feature columns."""
    if d < bits:
        raise ValueError(
            f"{name} projects the features onto {bits} directions but they have only {d} "
            f"(non-constant) columns: use at most {d} bits, richer features, or lsh / sh, "
            "which take any number of bits"
        )
