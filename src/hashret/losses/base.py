"""Base class for hashing losses: checks the inputs once, subclasses compute their terms."""

from __future__ import annotations

import torch
from torch import nn

from hashret.models.hashnet import HashOutput


class HashLoss(nn.Module):
    """Template method: ``forward`` validates shapes and devices, ``compute`` does the maths."""

    def forward(self, out: HashOutput, labels: torch.Tensor) -> torch.Tensor:
        if labels.ndim != 1 or labels.shape[0] != out.latent.shape[0]:
            raise ValueError(
                f"labels must be int64 [n] with n = batch size {out.latent.shape[0]}, "
                f"got shape {tuple(labels.shape)}"
            )
        if labels.device != out.latent.device:
            raise ValueError(f"labels on {labels.device}, model outputs on {out.latent.device}")
        return self.compute(out, labels)

    def compute(self, out: HashOutput, labels: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError
