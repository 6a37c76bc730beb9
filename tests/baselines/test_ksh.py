"""KSH: greedy kernel bits fitted to pairwise labels."""

from __future__ import annotations

import numpy as np

from hashret.baselines import KSH
from hashret.baselines.ksh import Residue, optimize_projection, phi
from hashret.codes import hamming_distances


def test_phi_is_the_papers_smooth_sign():
    z = np.array([-3.0, -0.5, 0.0, 0.5, 3.0])
    np.testing.assert_allclose(phi(z), 2.0 / (1.0 + np.exp(-z)) - 1.0)


def test_residue_matches_the_dense_matrix():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, size=12)
    onehot = np.eye(3)[y]
    s = np.where(y[:, None] == y[None, :], 1.0, -1.0)  # the pairwise label matrix
    residue = Residue(onehot, 16)
    h1, h2 = np.sign(rng.normal(size=12)), np.sign(rng.normal(size=12))
    residue.add(h1)
    residue.add(h2)
    dense = 16 * s - np.outer(h1, h1) - np.outer(h2, h2)
    v = rng.normal(size=(12, 4))
    np.testing.assert_allclose(residue @ v, dense @ v)
    np.testing.assert_allclose(residue @ v[:, 0], dense @ v[:, 0])
    assert np.isclose(residue.score(h1), h1 @ dense @ h1)


def test_gradient_steps_do_not_raise_the_smoothed_cost():
    rng = np.random.default_rng(1)
    k = rng.normal(size=(60, 10))
    residue = Residue(np.eye(2)[rng.integers(0, 2, size=60)], 8)
    a0 = rng.normal(size=10) * 0.1

    def cost(a):
        p = phi(k @ a)
        return -p @ (residue @ p)

    assert cost(optimize_projection(k, residue, a0, 50)) <= cost(a0)


def test_two_separated_clusters_are_separated_perfectly():
    # two tight clusters far apart: h = +-(cluster indicator) maximises h^T R h for every
    # bit (R = bits * S - sum h h^T stays a multiple of S), so each bit is the cluster
    # indicator or its complement: distance 0 within a cluster, `bits` across
    rng = np.random.default_rng(2)
    labels = np.repeat([0, 1], 60)
    x = np.where(labels[:, None] == 0, -5.0, 5.0) + rng.normal(scale=0.5, size=(120, 6))
    ksh = KSH(16, n_anchors=20, n_labelled=80).fit(x, labels)
    codes = ksh.encode(x)
    d = hamming_distances(codes, codes)
    same = labels[:, None] == labels[None, :]
    assert (d[same] == 0).all()
    assert (d[~same] == 16).all()
    # and the held-out samples (not in the labelled subset) too
    assert len(ksh.labelled_) == 80
