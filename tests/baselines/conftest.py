import numpy as np
import pytest


@pytest.fixture(scope="module")
def blobs():
    """Three Gaussian classes in 20 dimensions: (features float64[240, 20], labels int64[240])."""
    rng = np.random.default_rng(0)
    centres = rng.normal(0.0, 3.0, size=(3, 20))
    labels = np.repeat(np.arange(3), 80)
    features = centres[labels] + rng.normal(size=(240, 20))
    return features, labels.astype(np.int64)
