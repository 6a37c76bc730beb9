"""Input features for the baselines: raw pixels as float vectors, and a PCA reducer.

The other input, the float features of a trained hashret model, is read from its run
directory (``RUN/encodings/{database,queries}/features.npy``, see :mod:`hashret.encodings`).
"""

from __future__ import annotations

from typing import Self

import numpy as np

from hashret.baselines.pca import fit_pca


def pixel_features(images: np.ndarray) -> np.ndarray:
    """Flatten images into pixel vectors scaled to ``[0, 1]``.

    Args:
        images: ``uint8[n, h, w, c]`` (an :class:`hashret.data.ImageArray`'s ``images``).

    Returns:
        ``float32[n, h * w * c]``, pixel order row-major, channels last.
    """
    x = np.asarray(images)
    if x.dtype != np.uint8 or x.ndim != 4:
        raise ValueError(
            f"images must be uint8 [n, h, w, c] (as hashret.data loads them), got {x.dtype} "
            f"with shape {x.shape}"
        )
    return x.reshape(len(x), -1).astype(np.float32) / np.float32(255.0)


class PCAReducer:
    """Project features onto their top principal directions (fit on the fitting set only).

    Used to bring long raw-pixel vectors (CIFAR-10: 3,072 values) down to a size the
    baselines fit quickly on a CPU; the projection keeps the directions of largest
    variance, so ITQ (which projects onto the top ``bits`` of them anyway) is unchanged.

    Args:
        dims: output dimension.

    Attributes (after ``fit``):
        mean_: ``float64[d]``; components_: ``float64[d, dims]``;
        explained_variance_ratio_: share of the total variance the ``dims`` directions keep.
    """

    def __init__(self, dims: int) -> None:
        if isinstance(dims, bool) or not isinstance(dims, (int, np.integer)) or dims < 1:
            raise ValueError(f"dims must be an integer >= 1, got {dims!r}")
        self.dims = int(dims)

    def fit(self, features: np.ndarray) -> Self:
        """Learn the directions from ``float[n, d]``, ``dims <= d``, ``n >= 2``."""
        x = np.asarray(features)
        if x.ndim != 2:
            raise ValueError(f"features must be 2-D [n, d], got shape {x.shape}")
        pca = fit_pca(x, self.dims)
        self.mean_, self.components_ = pca.mean, pca.components
        total = float(np.var(x, axis=0, dtype=np.float64, ddof=1).sum())
        self.explained_variance_ratio_ = float(pca.variances.sum() / total) if total > 0 else 1.0
        return self

    def transform(self, features: np.ndarray) -> np.ndarray:
        """``float[n, d]`` -> ``float32[n, dims]`` (centred projections)."""
        if not hasattr(self, "components_"):
            raise RuntimeError("PCAReducer is not fitted: call fit(features) first")
        x = np.asarray(features)
        if x.ndim != 2 or x.shape[1] != self.components_.shape[0]:
            raise ValueError(f"features must have shape [n, {self.components_.shape[0]}], got {x.shape}")
        out = np.empty((len(x), self.dims), dtype=np.float32)
        for start in range(0, len(x), 8192):
            block = np.asarray(x[start:start + 8192], dtype=np.float64) - self.mean_
            out[start:start + 8192] = block @ self.components_
        return out
