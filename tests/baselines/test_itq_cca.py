"""ITQ-CCA: the canonical directions follow the labels."""

from __future__ import annotations

import numpy as np

from hashret.baselines import ITQCCA
from hashret.baselines.itq_cca import cca_directions
from hashret.codes import hamming_distances


def two_classes(n: int = 2000, d: int = 10, seed: int = 0):
    rng = np.random.default_rng(seed)
    labels = np.repeat([0, 1], n // 2)
    x = rng.normal(size=(n, d))
    x[:, 2] += np.where(labels == 0, -4.0, 4.0)  # only column 2 carries the label
    return x, labels


def test_top_direction_is_the_informative_column():
    x, labels = two_classes()
    w, lambdas = cca_directions(x - x.mean(axis=0), labels, 2, 3)
    top = w[:, 0] / np.linalg.norm(w[:, 0])
    assert abs(top[2]) > 0.99
    # two classes: one canonical correlation; the others are 0
    assert lambdas[0] > 0.9 and np.allclose(lambdas[1:], 0.0, atol=1e-6)
    # normalised to unit variance along the direction
    xc = x - x.mean(axis=0)
    assert np.isclose(np.var(xc @ w[:, 0], ddof=1), 1.0, rtol=1e-3)


def test_two_classes_every_bit_follows_the_one_canonical_direction():
    # with one non-zero canonical correlation every projected point is v0 * (first row
    # of R): every bit is the sign of v0 (or its opposite), v0 separates the classes
    x, labels = two_classes()
    model = ITQCCA(8).fit(x, labels)
    np.testing.assert_allclose(model.rotation_.T @ model.rotation_, np.eye(8), atol=1e-10)
    assert (np.diff(model.loss_history_) <= 1e-9 * model.loss_history_[0]).all()
    d = hamming_distances(model.encode(x), model.encode(x))
    same = labels[:, None] == labels[None, :]
    assert (d[same] == 0).all() and (d[~same] == 8).all()
