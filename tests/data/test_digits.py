import numpy as np
from sklearn.datasets import load_digits

from hashret.data import read_digits


def test_shapes_scaling_and_ids():
    d = read_digits(seed=0, test_fraction=0.2)
    assert d.name == "digits" and d.natural is False and d.classes == tuple("0123456789")
    assert len(d.train) + len(d.test) == 1797
    assert d.train.images.shape[1:] == (8, 8, 1) and d.train.images.dtype == np.uint8
    assert d.train.images.max() == 255 and d.train.images.min() == 0
    ref = load_digits()
    i = int(d.test.ids[0].split("/")[1])
    assert d.test.ids[0] == f"digits/{i}"
    np.testing.assert_array_equal(
        d.test.images[0, :, :, 0], np.array([[round(x * 255 / 16) for x in row]
                                             for row in ref.images[i]]))
    assert d.test.labels[0] == ref.target[i]
    ids = set(d.train.ids) | set(d.test.ids)
    assert len(ids) == 1797


def test_split_is_stratified_and_deterministic():
    d = read_digits(seed=0, test_fraction=0.2)
    totals = np.bincount(np.concatenate([d.train.labels, d.test.labels]))
    test_counts = np.bincount(d.test.labels, minlength=10)
    np.testing.assert_array_equal(test_counts, np.round(totals * 0.2).astype(int))
    again = read_digits(seed=0, test_fraction=0.2)
    assert again.test.ids.tolist() == d.test.ids.tolist()
    np.testing.assert_array_equal(again.train.images, d.train.images)
    assert read_digits(seed=1).test.ids.tolist() != d.test.ids.tolist()
    assert len(read_digits(test_fraction=0.5).test) > 850
