"""DLBHC's pointwise loss: softmax cross-entropy on the classifier over the latent layer."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from hashret.losses.base import HashLoss
from hashret.models.hashnet import HashOutput


class SoftmaxLoss(HashLoss):
    """Mean cross-entropy of ``out.logits`` against ``labels`` (optionally label-smoothed).

    DLBHC trains with this alone: the codes are a by-product of the sigmoid latent layer.
    """

    def __init__(self, label_smoothing: float = 0.0) -> None:
        super().__init__()
        if not 0.0 <= label_smoothing < 1.0:
            raise ValueError(f"label_smoothing must be in [0, 1), got {label_smoothing}")
        self.label_smoothing = label_smoothing

    def compute(self, out: HashOutput, labels: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(out.logits.float(), labels, label_smoothing=self.label_smoothing)
