"""LSH: random hyperplanes through the mean."""

from __future__ import annotations

import numpy as np

from hashret.baselines import LSH
from hashret.codes import unpack


def test_bits_are_balanced_on_centred_symmetric_data():
    # the data are {z} and {-z}: mean 0, and w.(-z) = -(w.z), so each bit is 1 on exactly
    # one point of each pair (no projection is exactly 0): n/2 ones per bit
    z = np.random.default_rng(0).normal(size=(300, 10))
    x = np.concatenate([z, -z])
    bits01 = unpack(LSH(32, seed=0).fit(x).encode(x), 32).astype(int)
    np.testing.assert_array_equal(bits01.sum(axis=0), np.full(32, 300))
    np.testing.assert_array_equal(bits01[:300] + bits01[300:], np.ones((300, 32), dtype=int))


def test_hyperplanes_pass_through_the_mean():
    # shifting the data shifts the mean: the codes do not change
    z = np.random.default_rng(1).normal(size=(200, 10))
    a = LSH(16, seed=0).fit(z).encode(z)
    b = LSH(16, seed=0).fit(z + 100.0).encode(z + 100.0)
    np.testing.assert_array_equal(a, b)


def test_projection_is_standard_gaussian():
    lsh = LSH(64, seed=0).fit(np.random.default_rng(2).normal(size=(100, 200)))
    w = lsh.projection_
    assert w.shape == (200, 64)
    assert abs(w.mean()) < 0.02 and abs(w.std() - 1.0) < 0.02
