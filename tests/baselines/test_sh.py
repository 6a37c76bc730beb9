"""Spectral hashing: the analytical eigenfunctions of a box, smallest eigenvalues first."""

from __future__ import annotations

import numpy as np

from hashret.baselines import SH
from hashret.baselines.sh import select_modes
from hashret.codes import unpack


def test_modes_by_hand():
    # box sides 4 and 1: eigenvalues (k/4)^2 along the first, k^2 along the second:
    # 1/16, 4/16, 9/16, then 16/16 twice (first direction first), then 25/16, 36/16, 49/16
    directions, frequencies = select_modes(np.array([4.0, 1.0]), 8)
    assert directions.tolist() == [0, 0, 0, 0, 1, 0, 0, 0]
    assert frequencies.tolist() == [1, 2, 3, 4, 1, 5, 6, 7]


def test_first_bit_cuts_the_long_side_in_half():
    # a grid on the box [0, 4] x [0, 1]: PCA keeps the axes; the lowest mode is
    # cos(pi (x - 0) / 4) > 0, i.e. x < 2 (or, after a sign flip of the axis, x > 2);
    # the fifth bit (1, 1) cuts the short side in half
    xs, ys = np.meshgrid(np.linspace(0.05, 3.95, 40), np.linspace(0.05, 0.95, 10))
    x = np.column_stack([xs.ravel(), ys.ravel()])
    sh = SH(8).fit(x)
    bits01 = unpack(sh.encode(x), 8).astype(bool)
    assert sh.directions_.tolist() == [0, 0, 0, 0, 1, 0, 0, 0]
    left, bottom = x[:, 0] < 2, x[:, 1] < 0.5
    assert np.array_equal(bits01[:, 0], left) or np.array_equal(bits01[:, 0], ~left)
    assert np.array_equal(bits01[:, 4], bottom) or np.array_equal(bits01[:, 4], ~bottom)
    # the second bit (k = 2) is 1 on the middle half of the long side: 2 cuts
    middle = (x[:, 0] > 1) & (x[:, 0] < 3)
    assert np.array_equal(bits01[:, 1], ~middle) or np.array_equal(bits01[:, 1], middle)


def test_more_bits_than_dimensions():
    # SH takes any number of bits: extra ones are higher frequencies
    x = np.random.default_rng(0).uniform(size=(300, 3))
    sh = SH(24).fit(x)
    assert sh.components_.shape == (3, 3)
    assert sorted(zip(sh.directions_.tolist(), sh.frequencies_.tolist(), strict=True)) == sorted(
        set(zip(sh.directions_.tolist(), sh.frequencies_.tolist(), strict=True))), "distinct modes"
