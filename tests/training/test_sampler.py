"""Batch samplers: class-balanced P x K batches and the random permutation."""

import numpy as np
import pytest
import torch

from hashret.training.sampler import ClassBalancedBatches, RandomBatches, resolve_pk


def _labels():
    return np.repeat(np.arange(5), [6, 7, 8, 9, 10])  # 40 items, 5 classes of 6..10


def test_every_batch_has_p_classes_of_k_distinct_images():
    y = _labels()
    s = ClassBalancedBatches(y, classes_per_batch=3, images_per_class=4)
    batches = s.epoch(torch.Generator().manual_seed(0))
    assert s.steps_per_epoch == len(batches) == 40 // 12
    for b in batches:
        assert len(b) == 12 and len(set(b.tolist())) == 12
        classes, counts = np.unique(y[b.numpy()], return_counts=True)
        assert len(classes) == 3 and (counts == 4).all()
        # grouped by class: K consecutive items share one
        assert (y[b.numpy()].reshape(3, 4) == y[b.numpy()].reshape(3, 4)[:, :1]).all()


def test_class_balanced_batches_are_seeded():
    s = ClassBalancedBatches(_labels(), 2, 3)
    a = s.epoch(torch.Generator().manual_seed(5))
    b = s.epoch(torch.Generator().manual_seed(5))
    c = s.epoch(torch.Generator().manual_seed(6))
    assert all(torch.equal(u, v) for u, v in zip(a, b, strict=True))
    assert not all(torch.equal(u, v) for u, v in zip(a, c, strict=True))


def test_class_balanced_errors_name_the_fix():
    with pytest.raises(ValueError, match="class 0 has 6.*--images-per-class 6"):
        ClassBalancedBatches(_labels(), 2, 7)
    with pytest.raises(ValueError, match="5 classes.*--classes-per-batch 5"):
        ClassBalancedBatches(_labels(), 6, 2)
    with pytest.raises(ValueError, match="at least 2 classes"):
        ClassBalancedBatches(np.zeros(10, int), 2, 2)


def test_resolve_pk():
    assert resolve_pk(10, 256, None, None) == (10, 25)  # MNIST: every class, 25 images each
    assert resolve_pk(200, 80, None, None) == (20, 4)  # CUB, the seed's batch of 80
    assert resolve_pk(200, 80, None, 8) == (10, 8)
    assert resolve_pk(200, 80, 16, None) == (16, 5)
    with pytest.raises(ValueError, match="at least 2 classes"):
        resolve_pk(1, 64, None, None)
    with pytest.raises(ValueError, match="has 10 classes"):
        resolve_pk(10, 64, 12, 4)


def test_random_batches_cover_every_item_once():
    s = RandomBatches(10, 4)
    batches = s.epoch(torch.Generator().manual_seed(0))
    assert [len(b) for b in batches] == [4, 4, 2]
    assert sorted(torch.cat(batches).tolist()) == list(range(10))
