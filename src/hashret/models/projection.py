"""Unsupervised hash models: a pretrained backbone, then a fixed linear projection, then the sign.

``backbone -> features f -> latent = (f - mean) @ projection -> bit = latent > 0`` (threshold
0, :mod:`hashret.codes`). Nothing is trained by gradient: the projection is fitted on the
features of an unlabelled image collection (:mod:`hashret.unsupervised`):

* ``pca-sign``: ``projection`` = the top ``bits`` principal directions of the features, so each
  bit is the sign of one centred principal component (what "binary quantization" of
  embeddings does in vector databases, after a PCA);
* ``itq``: the PCA directions times the ITQ rotation (Gong & Lazebnik, CVPR 2011;
  :mod:`hashret.baselines.itq`), which balances the variance over the bits;
* ``lsh``: Gaussian random directions through the mean (Charikar 2002; :mod:`hashret.baselines.lsh`).

``mean`` and ``projection`` are buffers, so they travel in the checkpoint with the backbone's
weights and a ``model.safetensors`` alone rebuilds the model (:func:`hashret.training.checkpoint.load_model`).
The model has no classifier (``forward_head`` returns ``None``) and ``num_classes`` is 0.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from hashret.models.config import ModelConfig
from hashret.models.hashnet import HashModel

#: the methods whose model is a :class:`ProjectionHash`, with how each fits its projection
PROJECTION_METHODS = {
    "itq": "PCA directions times the ITQ rotation (Gong & Lazebnik 2011)",
    "pca-sign": "top principal directions; bit = sign of the centred component",
    "lsh": "Gaussian random directions through the mean (Charikar 2002)",
}


class ProjectionHead(nn.Module):
    """``float[n, d]`` features -> ``float[n, bits]`` = ``(features - mean) @ projection``.

    Buffers (saved in the checkpoint):
        mean: ``float32[d]`` the fitting set's feature mean.
        projection: ``float32[d, bits]`` the hash directions (zero rows for feature columns
            that were constant over the fitting set).
    """

    def __init__(self, feature_dim: int, bits: int) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(feature_dim, dtype=torch.float32))
        self.register_buffer("projection", torch.zeros(feature_dim, bits, dtype=torch.float32))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return (features.float() - self.mean) @ self.projection


class ProjectionHash(HashModel):
    """A frozen backbone and a fitted linear projection (:class:`ProjectionHead`); the code is
    its sign (bit = latent > 0).

    ``forward(x).latent`` is ``float[n, bits]`` (unbounded); ``forward(x).logits`` is ``None``.
    """

    threshold = 0.0

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__(cfg)
        self.head = ProjectionHead(self.feature_dim, cfg.bits)

    def set_projection(self, mean: np.ndarray, projection: np.ndarray) -> None:
        """Install a fitted projection: ``mean`` ``float[feature_dim]``, ``projection``
        ``float[feature_dim, bits]``.

        Raises:
            ValueError: shapes that do not fit this model, or non-finite values.
        """
        mean, projection = np.asarray(mean), np.asarray(projection)
        d, bits = self.feature_dim, self.config.bits
        if mean.shape != (d,) or projection.shape != (d, bits):
            raise ValueError(f"projection for {self.config.backbone} at {bits} bits must be mean [{d}] and "
                             f"projection [{d}, {bits}], got {mean.shape} and {projection.shape}")
        if not (np.isfinite(mean).all() and np.isfinite(projection).all()):
            raise ValueError("the fitted projection holds NaN or infinite values: refit it")
        self.head.mean.copy_(torch.from_numpy(mean.astype(np.float32)))
        self.head.projection.copy_(torch.from_numpy(projection.astype(np.float32)))

    def forward_latent(self, features: torch.Tensor) -> torch.Tensor:
        """``float[n, feature_dim]`` -> ``float[n, bits]``: ``(features - mean) @ projection``."""
        return self.head(features)

    def forward_head(self, latent: torch.Tensor) -> None:
        """No classifier: the model is fitted without labels."""
        return None
