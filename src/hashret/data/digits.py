"""scikit-learn's 8x8 digits: a small built-in dataset for demos and tests (no download)."""

from __future__ import annotations

import numpy as np

from hashret.data.arrays import DatasetSplits, ImageArray
from hashret.data.splits import stratified_split

CLASSES = tuple(str(d) for d in range(10))


def read_digits(seed: int = 0, test_fraction: float = 0.2) -> DatasetSplits:
    """The 1,797 8x8 digit images of ``sklearn.datasets.load_digits``, split by class.

    Pixel values 0..16 are scaled to ``uint8`` 0..255 (``round(x * 255 / 16)``).

    Args:
        seed: seed of the stratified train/test split.
        test_fraction: share of each class put in the test set.

    Returns:
        ``DatasetSplits(name="digits", natural=False)`` with ``uint8[n, 8, 8, 1]`` images,
        classes ``("0", ..., "9")`` and ids ``"digits/<index in load_digits>"``.
    """
    from sklearn.datasets import load_digits  # imported here: sklearn is slow to import

    bunch = load_digits()
    # float [1797, 8, 8] in 0..16 -> uint8 [1797, 8, 8, 1] in 0..255
    images = np.rint(bunch.images * (255.0 / 16.0)).astype(np.uint8)[:, :, :, None]
    labels = np.asarray(bunch.target, dtype=np.int64)
    full = ImageArray(
        images=np.ascontiguousarray(images), labels=labels,
        ids=np.array([f"digits/{i}" for i in range(len(labels))]), classes=CLASSES,
    )
    train_idx, test_idx = stratified_split(labels, test_fraction, seed)
    return DatasetSplits(
        name="digits", train=full.subset(train_idx), test=full.subset(test_idx),
        natural=False, source="sklearn.datasets.load_digits()",
    )
