"""KSH: kernel-based supervised hashing, one bit at a time.

Follows Liu, Wang, Ji, Jiang & Chang, "Supervised hashing with kernels", CVPR 2012 (and the
authors' released ``KSH_demo.m`` / ``OptProjectionFast.m``):

* ``m = 300`` anchors drawn from the fitting set; RBF kernel
  ``k(x, a) = exp(-||x - a||^2 / (2 sigma))`` with ``sigma`` the mean squared distance
  between the fitting samples and the anchors; the kernel vector ``k(x) in R^m`` is centred
  by its mean over the fitting set. Bit ``j`` of ``x`` is ``sign(k(x) . a_j)``.
* The projections are learnt on a labelled subset of ``l = 2000`` samples with the pairwise
  label matrix ``S`` (``+1`` same class, ``-1`` otherwise) by fitting code inner products
  to it: ``min ||H H^T - bits * S||_F^2``, ``H = sign(K A) in {-1, 1}^{l x bits}``.
* Greedily, bit by bit: with the residue ``R = bits * S - sum_{t < j} h_t h_t^T``, bit ``j``
  maximises ``h^T R h``. The spectral relaxation (``sign`` dropped) is the generalised
  eigenproblem ``K^T R K a = lambda K^T K a``, its top eigenvector scaled to
  ``a^T K^T K a = l``; from there, accelerated gradient descent with backtracking (Nesterov,
  as in ``OptProjectionFast``) minimises the smooth surrogate ``-phi(K a)^T R phi(K a)``,
  ``phi(x) = 2 / (1 + exp(-x)) - 1``, for at most 500 steps. Of the two solutions, the one
  whose *signed* codes score higher on ``h^T R h`` is kept.

``S = 2 Y Y^T - 1 1^T`` for one-hot labels ``Y`` and the residue is ``bits * S`` minus a
sum of rank-one terms, so products with ``R`` are computed in ``O(l (classes + bits))``
without forming the ``l x l`` matrix.
"""

from __future__ import annotations

import numpy as np
import scipy.linalg

from hashret.baselines.base import HashBaseline

N_ANCHORS = 300
N_LABELLED = 2000
N_STEPS = 500
#: rows per block when computing kernels (bounds the [rows, anchors] distance matrices)
KERNEL_CHUNK = 8192


def phi(z: np.ndarray) -> np.ndarray:
    """The smooth sign of the paper: ``2 / (1 + exp(-z)) - 1`` (= ``tanh(z / 2)``)."""
    return np.tanh(z / 2.0)


class Residue:
    """``R = scale * (2 Y Y^T - 1 1^T) - H H^T`` as a linear operator on ``float[l]`` / ``[l, m]``.

    Args:
        onehot: ``float64[l, c]`` one-hot labels ``Y``.
        scale: the code length ``bits``.
    """

    def __init__(self, onehot: np.ndarray, scale: float) -> None:
        self.onehot = onehot
        self.scale = float(scale)
        self.codes = np.zeros((onehot.shape[0], 0))  # [l, t] the chosen h_t in {-1, 1}^l

    def add(self, h: np.ndarray) -> None:
        """``R <- R - h h^T``."""
        self.codes = np.column_stack([self.codes, h])

    def __matmul__(self, v: np.ndarray) -> np.ndarray:
        y, h = self.onehot, self.codes
        out = self.scale * (2.0 * (y @ (y.T @ v)) - v.sum(axis=0, keepdims=True))
        if h.shape[1]:
            out -= h @ (h.T @ v)
        return out

    def score(self, h: np.ndarray) -> float:
        """``h^T R h`` for a vector ``float[l]``."""
        return float(h @ (self @ h))


def optimize_projection(
    k: np.ndarray, residue: Residue, a0: np.ndarray, n_steps: int
) -> np.ndarray:
    """Minimise ``g(a) = -phi(K a)^T R phi(K a)`` from ``a0`` by accelerated gradient steps.

    Nesterov's scheme with a backtracking estimate of the Lipschitz constant (as the authors'
    ``OptProjectionFast``); stops after ``n_steps``, when no step satisfies the quadratic
    upper bound, or when the cost changes by at most ``0.01 * l``.

    Args:
        k: ``float64[l, m]`` centred kernel of the labelled samples.
        residue: the current residue ``R``.
        a0: ``float64[m]`` starting projection.
        n_steps: maximum iterations.

    Returns:
        ``float64[m]`` the projection found.
    """
    l = k.shape[0]  # noqa: E741 - the paper's name for the number of labelled samples

    def cost_grad(a: np.ndarray) -> tuple[float, np.ndarray]:
        p = phi(k @ a)  # [l]
        rp = residue @ p
        return -float(p @ rp), -(k.T @ (rp * (1.0 - p * p)))

    def cost(a: np.ndarray) -> float:
        p = phi(k @ a)
        return -float(p @ (residue @ p))

    prev, cur = a0.copy(), a0.copy()
    last_cost = cost(cur)
    beta = 1.0  # inverse step size (Lipschitz estimate)
    delta_prev, delta = 0.0, 1.0
    for _ in range(n_steps):
        probe = cur + ((delta_prev - 1.0) / delta) * (cur - prev)
        g_probe, grad = cost_grad(probe)
        for j in range(51):
            b = beta * 2.0**j
            z = probe - grad / b
            diff = z - probe
            g_z = cost(z)
            if g_z <= g_probe + grad @ diff + b * (diff @ diff) / 2.0:
                break
        else:
            return cur  # no step found: keep the last iterate
        beta = b
        prev, cur = cur, z
        delta_prev, delta = delta, (1.0 + np.sqrt(1.0 + 4.0 * delta * delta)) / 2.0
        if abs(g_z - last_cost) / l <= 1e-2:
            break
        last_cost = g_z
    return cur


def signs(z: np.ndarray) -> np.ndarray:
    """``+1`` where ``z > 0``, else ``-1`` (bit 0), as ``float64``."""
    return np.where(z > 0, 1.0, -1.0)


class KSH(HashBaseline):
    """Kernel-based supervised hashing (supervised: trained on a labelled subset).

    Args:
        bits, seed, drop_constant: see :class:`~hashret.baselines.base.HashBaseline`.
        n_anchors: kernel anchors ``m`` sampled from the fitting set (300 in the paper).
        n_labelled: labelled samples ``l`` the projections are learnt on (1000 or 2000 in the
            paper); all of them when the fitting set is smaller.
        n_steps: gradient iterations per bit (500).

    Attributes (after ``fit``):
        anchors_: ``float64[m, d']``; sigma_: kernel width (mean squared distance);
        kernel_mean_: ``float64[m]``; projection_: ``float64[m, bits]``;
        labelled_: ``int64[l]`` indices of the labelled subset in the fitting set;
        refined_: ``bool[bits]`` whether gradient descent improved on the spectral solution.
    """

    name = "ksh"
    supervised = True
    paper = "Liu, Wang, Ji, Jiang & Chang, Supervised hashing with kernels, CVPR 2012"

    def __init__(self, bits: int, *, seed: int = 0, drop_constant: bool = False,
                 n_anchors: int = N_ANCHORS, n_labelled: int = N_LABELLED,
                 n_steps: int = N_STEPS) -> None:
        super().__init__(bits, seed=seed, drop_constant=drop_constant)
        for what, v in (("n_anchors", n_anchors), ("n_labelled", n_labelled), ("n_steps", n_steps)):
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
                raise ValueError(f"{what} must be an integer >= 1, got {v!r}")
        self.n_anchors, self.n_labelled, self.n_steps = int(n_anchors), int(n_labelled), int(n_steps)

    def _fit(self, x: np.ndarray, y: np.ndarray | None) -> None:
        assert y is not None
        n = x.shape[0]
        if n < self.n_anchors:
            raise ValueError(
                f"ksh samples {self.n_anchors} kernel anchors from the fitting set but it has "
                f"{n} samples: pass n_anchors <= {n} or more samples"
            )
        rng = self.rng()
        self.anchors_ = x[np.sort(rng.choice(n, self.n_anchors, replace=False))]
        sq = self._squared_distances(x)  # [n, m]
        self.sigma_ = float(sq.mean())
        if self.sigma_ <= 0:
            raise ValueError("ksh: all fitting samples coincide with the anchors; nothing to learn")
        kernel = np.exp(-sq / (2.0 * self.sigma_))
        self.kernel_mean_ = kernel.mean(axis=0)
        l = min(self.n_labelled, n)  # noqa: E741 - the paper's name
        self.labelled_ = np.sort(rng.choice(n, l, replace=False)) if l < n else np.arange(n)
        k = kernel[self.labelled_] - self.kernel_mean_  # [l, m]
        yl = y[self.labelled_]
        onehot = np.zeros((l, int(y.max()) + 1))
        onehot[np.arange(l), yl] = 1.0
        residue = Residue(onehot, self.bits)
        gram = k.T @ k  # [m, m]
        gram[np.diag_indices_from(gram)] += 1e-10 * max(np.trace(gram), 1e-300)  # keep it definite
        self.projection_ = np.zeros((self.n_anchors, self.bits))
        self.refined_ = np.zeros(self.bits, dtype=bool)
        for j in range(self.bits):
            lhs = k.T @ (residue @ k)  # [m, m] K^T R K
            lhs = (lhs + lhs.T) / 2
            _, vec = scipy.linalg.eigh(lhs, gram, subset_by_index=[self.n_anchors - 1] * 2)
            a = vec[:, 0] * np.sqrt(l / float(vec[:, 0] @ gram @ vec[:, 0]))
            a *= np.sign(a[np.argmax(np.abs(a))])  # fixed sign: no dependence on LAPACK
            h = signs(k @ a)
            refined = optimize_projection(k, residue, a, self.n_steps)
            h_refined = signs(k @ refined)
            if residue.score(h_refined) > residue.score(h):
                a, h = refined, h_refined
                self.refined_[j] = True
            self.projection_[:, j] = a
            residue.add(h)

    def _project(self, x: np.ndarray) -> np.ndarray:
        kernel = np.exp(-self._squared_distances(x) / (2.0 * self.sigma_)) - self.kernel_mean_
        return kernel @ self.projection_

    def _squared_distances(self, x: np.ndarray) -> np.ndarray:
        """``float64[n, m]`` squared Euclidean distances to the anchors (clipped at 0)."""
        a2 = np.einsum("ij,ij->i", self.anchors_, self.anchors_)
        out = np.empty((x.shape[0], self.anchors_.shape[0]))
        for start in range(0, x.shape[0], KERNEL_CHUNK):
            block = x[start:start + KERNEL_CHUNK]
            d = np.einsum("ij,ij->i", block, block)[:, None] + a2[None, :] - 2.0 * (block @ self.anchors_.T)
            out[start:start + KERNEL_CHUNK] = np.maximum(d, 0.0)
        return out
