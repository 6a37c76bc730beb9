"""Input features: pixels to floats, PCA reduction."""

from __future__ import annotations

import numpy as np
import pytest

from hashret.baselines import PCAReducer, pixel_features
from hashret.baselines.pca import fit_pca


def test_pixel_features_by_hand():
    images = np.array([[[[0], [255]], [[51], [102]]]], dtype=np.uint8)  # one 2x2 grey image
    x = pixel_features(images)
    assert x.dtype == np.float32 and x.shape == (1, 4)
    np.testing.assert_allclose(x[0], [0.0, 1.0, 0.2, 0.4])
    with pytest.raises(ValueError, match=r"uint8 \[n, h, w, c\]"):
        pixel_features(images[0])


def test_pca_of_a_stretched_cloud():
    # variance 9 along (1, 1)/sqrt 2, 1 along (1, -1)/sqrt 2
    rng = np.random.default_rng(0)
    z = rng.normal(size=(20000, 2)) * [3.0, 1.0]
    rot = np.array([[1.0, 1.0], [-1.0, 1.0]]) / np.sqrt(2)
    pca = fit_pca(z @ rot + 5.0, 2)
    np.testing.assert_allclose(pca.mean, [5.0, 5.0], atol=0.05)
    np.testing.assert_allclose(pca.components[:, 0], [1 / np.sqrt(2)] * 2, atol=0.01)  # sign fixed
    np.testing.assert_allclose(pca.variances, [9.0, 1.0], rtol=0.03)


def test_reducer_keeps_the_top_directions():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(500, 6)) * [5.0, 4.0, 3.0, 0.1, 0.1, 0.1]
    reducer = PCAReducer(3).fit(x)
    out = reducer.transform(x)
    assert out.dtype == np.float32 and out.shape == (500, 3)
    assert reducer.explained_variance_ratio_ > 0.99
    with pytest.raises(ValueError, match="choose 1 <= k <= 6"):
        PCAReducer(7).fit(x)
    with pytest.raises(RuntimeError, match="not fitted"):
        PCAReducer(2).transform(x)
