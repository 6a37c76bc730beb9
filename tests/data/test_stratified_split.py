import numpy as np
import pytest

from hashret.data import stratified_split


def test_partition_sorted_and_stratified():
    labels = np.array([0] * 10 + [1] * 5 + [2] * 2 + [3] * 1 + [7] * 20)
    rng = np.random.default_rng(1)
    labels = rng.permutation(labels)
    kept, held = stratified_split(labels, 0.2, seed=3)
    assert kept.dtype == np.int64 and held.dtype == np.int64
    assert np.all(np.diff(kept) > 0) and np.all(np.diff(held) > 0)
    np.testing.assert_array_equal(np.sort(np.concatenate([kept, held])), np.arange(len(labels)))
    counts = {int(k): int((labels[held] == k).sum()) for k in np.unique(labels)}
    # round(0.2 * n), at least 1 and at most n - 1 for n >= 2; singletons stay kept
    assert counts == {0: 2, 1: 1, 2: 1, 3: 0, 7: 4}
    assert set(labels[kept]) == {0, 1, 2, 3, 7}


def test_deterministic_and_seed_dependent():
    labels = np.repeat(np.arange(5), 30)
    a = stratified_split(labels, 0.3, seed=0)
    b = stratified_split(labels, 0.3, seed=0)
    c = stratified_split(labels, 0.3, seed=1)
    np.testing.assert_array_equal(a[1], b[1])
    assert not np.array_equal(a[1], c[1])


def test_large_fraction_keeps_one_per_class():
    labels = np.array([0, 0, 1, 1, 1])
    kept, held = stratified_split(labels, 0.99, seed=0)
    assert sorted(labels[kept].tolist()) == [0, 1]


def test_empty_labels():
    kept, held = stratified_split(np.zeros(0, dtype=np.int64), 0.5, seed=0)
    assert len(kept) == 0 and len(held) == 0


@pytest.mark.parametrize("fraction", [0.0, 1.0, -0.1, 1.5])
def test_bad_fraction(fraction):
    with pytest.raises(ValueError, match="between 0 and 1"):
        stratified_split(np.array([0, 1]), fraction, seed=0)


def test_bad_labels():
    with pytest.raises(ValueError, match="1-D integer"):
        stratified_split(np.array([0.5, 1.0]), 0.5, seed=0)
