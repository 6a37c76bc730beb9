"""Hashing networks: backbone -> penultimate features -> hash layer (-> classifier).

:class:`HashModel` holds what every method shares (preprocessing, backbone, the
``forward_features`` / ``forward_latent`` / ``forward_head`` split); :class:`DLBHC` adds a
sigmoid latent layer and a classifier. Other methods live in their own files
(:mod:`hashret.models.triplet`).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from hashret.models.backbones import create_backbone, get_backbone_spec
from hashret.models.config import ModelConfig


class HashOutput(NamedTuple):
    """One forward pass.

    features: float ``[n, feature_dim]`` penultimate features (fc7 role, for the fine re-rank).
    latent: float ``[n, bits]`` relaxed code (sigmoid in ``(0, 1)`` for DLBHC, tanh in
        ``(-1, 1)`` for the triplet method).
    logits: float ``[n, num_classes]``, or ``None`` for a method without a classifier.
    """

    features: torch.Tensor
    latent: torch.Tensor
    logits: torch.Tensor | None


class Preprocess(nn.Module):
    """``float[n, c, h, w]`` pixels in ``[0, 1]`` -> resized to ``input_size`` and normalised.

    The statistics are buffers, so they travel in the checkpoint.
    """

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        c = cfg.in_channels
        mean = torch.tensor(cfg.mean or (0.5,) * c, dtype=torch.float32).view(1, c, 1, 1)
        std = torch.tensor(cfg.std or (0.25,) * c, dtype=torch.float32).view(1, c, 1, 1)
        self.register_buffer("mean", mean)
        self.register_buffer("std", std)
        self.input_size = tuple(cfg.input_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[1] != self.mean.shape[1]:
            raise ValueError(
                f"model takes {self.mean.shape[1]} channel(s), got images with {x.shape[1]}"
            )
        if tuple(x.shape[-2:]) != self.input_size:
            x = F.interpolate(x, size=self.input_size, mode="bilinear", align_corners=False,
                              antialias=x.shape[-1] > self.input_size[1])
        return (x - self.mean) / self.std


class HashModel(nn.Module):
    """What every hashing method shares: ``preprocess -> backbone -> features``.

    Subclasses set ``threshold`` (a code bit is 1 where the latent activation is above it,
    :mod:`hashret.codes`) and implement ``forward_latent`` and ``forward_head``.
    """

    threshold: float

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        spec = get_backbone_spec(cfg.backbone)
        if min(cfg.input_size) < spec.min_input_size:
            raise ValueError(
                f"backbone {cfg.backbone} needs an input of at least {spec.min_input_size} px, "
                f"got input_size {tuple(cfg.input_size)}: raise --input-size "
                f"(it is made for {spec.input_size or 'the images own size'})"
            )
        self.config = cfg
        self.preprocess = Preprocess(cfg)
        self.backbone = create_backbone(cfg.backbone, cfg.in_channels)

    @property
    def feature_dim(self) -> int:
        return int(self.backbone.feature_dim)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """``float[n, c, h, w]`` pixels in [0, 1] -> ``float[n, feature_dim]``."""
        return self.backbone(self.preprocess(x))

    def forward_latent(self, features: torch.Tensor) -> torch.Tensor:
        """``float[n, feature_dim]`` -> relaxed code ``float[n, bits]``."""
        raise NotImplementedError

    def forward_head(self, latent: torch.Tensor) -> torch.Tensor | None:
        """``float[n, bits]`` -> logits ``float[n, num_classes]`` (``None``: no classifier)."""
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> HashOutput:
        f = self.forward_features(x)
        z = self.forward_latent(f)
        return HashOutput(f, z, self.forward_head(z))


class DLBHC(HashModel):
    """Deep Learning of Binary Hash Codes (Lin et al., CVPRW 2015).

    ``backbone -> features -> latent = sigmoid(Linear(feature_dim, bits)) -> Linear(bits, classes)``,
    trained with softmax cross-entropy only; the code is ``latent > 0.5``.
    """

    threshold = 0.5

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__(cfg)
        self.latent = nn.Linear(self.backbone.feature_dim, cfg.bits)
        self.classifier = nn.Linear(cfg.bits, cfg.num_classes)

    def forward_latent(self, features: torch.Tensor) -> torch.Tensor:
        """``float[n, feature_dim]`` -> ``float[n, bits]`` in (0, 1)."""
        return torch.sigmoid(self.latent(features))

    def forward_head(self, latent: torch.Tensor) -> torch.Tensor:
        """``float[n, bits]`` -> logits ``float[n, num_classes]``."""
        return self.classifier(latent)
