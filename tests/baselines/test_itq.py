"""ITQ: the rotation stays orthogonal and the quantization loss never increases."""

from __future__ import annotations

import numpy as np

from hashret.baselines import ITQ
from hashret.baselines.itq import itq_rotation, quantization_loss, random_rotation


def test_quantization_loss_by_hand():
    # V R = [0.5, -2] -> B = [1, -1]; loss = 0.5^2 + 1^2 = 1.25
    assert quantization_loss(np.array([[0.5, -2.0]]), np.eye(2)) == 1.25
    # sign(0) is -1 (bit 0): loss of a zero projection is 1 per entry
    assert quantization_loss(np.zeros((3, 2)), np.eye(2)) == 6.0


def test_random_rotation_is_orthogonal():
    r = random_rotation(7, np.random.default_rng(0))
    np.testing.assert_allclose(r.T @ r, np.eye(7), atol=1e-12)


def test_points_on_the_axes_rotate_by_45_degrees():
    # +-e1, +-e2: a unit vector at angle t has loss 3 - 2(|cos t| + |sin t|), smallest at
    # t = 45 degrees (+ k * 90), where every point lands on a hypercube diagonal:
    # loss (1 - 1/sqrt 2)^2 * 2 = 3 - 2 sqrt 2 per point.
    v = np.array([[1.0, 0.0], [-1.0, 0.0], [0.0, 1.0], [0.0, -1.0]])
    rotation, losses = itq_rotation(v, 5, np.random.default_rng(0))
    np.testing.assert_allclose(rotation.T @ rotation, np.eye(2), atol=1e-12)
    np.testing.assert_allclose(np.abs(rotation), np.full((2, 2), 1 / np.sqrt(2)), atol=1e-12)
    np.testing.assert_allclose(losses[-1], 4 * (3 - 2 * np.sqrt(2)), atol=1e-12)


def test_fitted_rotation_is_orthogonal_and_loss_decreases_every_iteration():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(500, 40)) @ rng.normal(size=(40, 40))  # correlated features
    itq = ITQ(16, seed=0).fit(x)
    r = itq.rotation_
    np.testing.assert_allclose(r.T @ r, np.eye(16), atol=1e-10)
    np.testing.assert_allclose(itq.components_.T @ itq.components_, np.eye(16), atol=1e-10)
    losses = itq.loss_history_
    assert losses.shape == (51,)
    assert (np.diff(losses) <= 1e-9 * losses[0]).all(), "the loss must not increase"
    assert losses[-1] < losses[0]
    # the recorded loss is the loss of the codes ITQ produces
    v = (x - itq.mean_) @ itq.components_
    np.testing.assert_allclose(quantization_loss(v, r), losses[-1])


def test_zero_iterations_keeps_the_random_rotation():
    x = np.random.default_rng(2).normal(size=(100, 20))
    itq = ITQ(8, seed=4, n_iter=0).fit(x)
    assert itq.loss_history_.shape == (1,)
    np.testing.assert_allclose(itq.rotation_, random_rotation(8, np.random.default_rng(4)))
