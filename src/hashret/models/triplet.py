"""Triplet ranking hashing (DNNH: Lai et al., CVPR 2015), with a modern backbone.

``backbone -> features -> latent = tanh(Linear(feature_dim, bits))``: no classifier. The
network is trained with the triplet ranking loss (:mod:`hashret.losses.triplet`) so that
an image's relaxed code is nearer to those of its class than to the others' by a margin.

Codes are the sign of the latent activations: bit ``j`` is 1 where ``latent[j] > 0``
(threshold 0, :mod:`hashret.codes`), i.e. the code value is +1, and 0 otherwise, i.e. -1.
A zero activation therefore maps to bit 0 (-1): unlike ``torch.sign``, which returns 0 for
0, there is never a third code value.
"""

from __future__ import annotations

import torch
from torch import nn

from hashret.models.config import ModelConfig
from hashret.models.hashnet import HashModel


def sign_codes(latent: torch.Tensor) -> torch.Tensor:
    """The ±1 codes of relaxed codes: ``float[n, bits] -> float[n, bits]`` in ``{-1, +1}``.

    +1 where ``latent > 0``, else -1 (a zero activation gives -1, the same as bit 0 of
    :func:`hashret.codes.binarize` with threshold 0): never 0.
    """
    return torch.where(latent > 0, 1.0, -1.0).to(latent.dtype)


class TripletHash(HashModel):
    """Deep triplet ranking hashing: a ``Linear(feature_dim, bits)`` + tanh hash head.

    ``forward(x).latent`` is ``float[n, bits]`` in ``(-1, 1)``; ``forward(x).logits`` is
    ``None``. ``threshold = 0.0``: the code is the sign of the latent activation.
    """

    threshold = 0.0

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__(cfg)
        self.latent = nn.Linear(self.backbone.feature_dim, cfg.bits)

    def forward_latent(self, features: torch.Tensor) -> torch.Tensor:
        """``float[n, feature_dim]`` -> ``float[n, bits]`` in (-1, 1)."""
        return torch.tanh(self.latent(features))

    def forward_head(self, latent: torch.Tensor) -> None:
        """No classifier: the method learns from triplets alone."""
        return None
