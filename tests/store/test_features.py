"""Stored re-rank features: codecs, the segmented view and its fused distance kernels."""

from __future__ import annotations

import numpy as np
import pytest

from hashret.index import _distance_kernels as kern
from hashret.store.features import FeatureCodec, SegmentedRows


def test_half_widening_is_exact_for_every_finite_half():
    bits = np.arange(1 << 16, dtype=np.uint32).astype(np.uint16)
    finite = bits[np.isfinite(bits.view(np.float16))]
    out = np.empty(len(finite), np.float32)
    kern.squared_l2_f16(finite[:, None], np.arange(len(finite)), np.zeros(1, np.float32), out)
    np.testing.assert_array_equal(np.sqrt(out), np.abs(finite.view(np.float16).astype(np.float32)))


@pytest.mark.parametrize("dtype", [np.float16, np.float32])
def test_segmented_distances_match_numpy(dtype):
    rng = np.random.default_rng(0)
    parts = [rng.normal(size=(n, 24)).astype(dtype) for n in (5, 17, 1, 9)]
    view = SegmentedRows(parts, 24, np.dtype(dtype))
    full = np.concatenate(parts).astype(np.float32)
    rows = rng.integers(0, len(full), 40)  # unsorted, repeated, across segments
    q = rng.normal(size=24).astype(np.float32)
    expected = np.sqrt(((full[rows] - q) ** 2).sum(axis=1))
    np.testing.assert_allclose(view.euclidean(q, rows), expected, rtol=1e-5)
    np.testing.assert_array_equal(view[rows], full[rows].astype(dtype))
    assert view.euclidean(q, np.zeros(0, np.int64)).shape == (0,)


def test_codec_refuses_features_float16_cannot_hold():
    codec = FeatureCodec("float16", 3)
    with pytest.raises(ValueError, match="float32"):
        codec.encode(np.array([[1.0, 7e4, 0.0]], np.float32))
    with pytest.raises(ValueError, match="NaN"):
        FeatureCodec("float32", 3).encode(np.array([[1.0, np.nan, 0.0]], np.float32))
    out = FeatureCodec("float32", 3).encode(np.ones((2, 3)))
    np.testing.assert_array_equal(out, np.ones((2, 3), np.float32))


def test_pca_of_full_rank_preserves_distances():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(50, 6)).astype(np.float32)
    codec = FeatureCodec("pca", 6)
    codec.fit(x, 6)
    y = codec.encode(x).astype(np.float32)
    d_x = np.linalg.norm(x[:, None] - x[None], axis=-1)
    d_y = np.linalg.norm(y[:, None] - y[None], axis=-1)
    np.testing.assert_allclose(d_y, d_x, atol=5e-3)
    with pytest.raises(ValueError, match="--pca-dim"):
        FeatureCodec("pca", 6).fit(x, 7)


@pytest.mark.parametrize("dtype", [np.float16, np.float32])
def test_segmented_distances_are_the_kernels_row_by_row(dtype, tmp_path):
    """Grouping a pool's rows by segment changes no bit: each distance is the kernel's for that row
    alone (memory-mapped segments, empty ones, rows in any order, one segment or many)."""
    rng = np.random.default_rng(1)
    kernel = kern.squared_l2_f16 if dtype == np.float16 else kern.squared_l2_f32
    for sizes in ([7], [3, 0, 7, 1], [1] * 40):
        parts = []
        for j, n in enumerate(sizes):
            np.save(tmp_path / f"{j}.npy", rng.normal(size=(n, 16)).astype(dtype))
            parts.append(np.load(tmp_path / f"{j}.npy", mmap_mode="r"))
        view = SegmentedRows(parts, 16, np.dtype(dtype))
        full = np.concatenate([np.asarray(p) for p in parts])
        bits = full.view(np.uint16) if dtype == np.float16 else full
        q = rng.normal(size=16).astype(np.float32)
        rows = rng.integers(0, len(full), 60)
        one = np.empty(1, np.float32)
        expected = []
        for r in rows:
            kernel(bits, np.array([r]), q, one)
            expected.append(np.sqrt(one[0]))
        np.testing.assert_array_equal(view.euclidean(q, rows), np.array(expected, np.float32))
