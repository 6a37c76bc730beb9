"""Frozen-backbone training: backbone features computed once, only the hash head learns.

Fine-tuning the head of a pretrained AlexNet or ResNet on cached features costs one
forward pass of the backbone per image instead of one forward and backward pass per image
and epoch: minutes instead of hours on a CPU. The features are computed in eval mode
(BatchNorm running statistics, no dropout) and without augmentation; the backbone's weights
stay as loaded, and the checkpoint holds them with the trained head, so encoding runs the
whole model as usual.
"""

from __future__ import annotations

import torch
from torch import nn
from tqdm import tqdm

from hashret.device import autocast
from hashret.models import HashOutput


def freeze_backbone(model: nn.Module) -> None:
    """Stop gradients into ``model.backbone`` (its parameters stay out of the optimizer)."""
    for p in model.backbone.parameters():
        p.requires_grad_(False)


@torch.no_grad()
def cache_features(model: nn.Module, images: torch.Tensor, *, device: str, precision: str,
                   batch_size: int = 256, channels_last: bool = True,
                   progress: bool = False) -> torch.Tensor:
    """Backbone features of ``uint8[n, c, h, w]`` images: ``float32[n, feature_dim]`` on ``device``.

    The model is in eval mode while computing them and is put back in its former mode.
    """
    was_training = model.training
    model.eval()
    out = torch.empty((len(images), model.feature_dim), dtype=torch.float32, device=device)
    steps = range(0, len(images), batch_size)
    for i in tqdm(steps, desc="backbone features", disable=None if progress else True, leave=False):
        x = images[i:i + batch_size].to(device).float().div_(255)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with autocast(device, precision):
            out[i:i + len(x)] = model.forward_features(x).float()
    model.train(was_training)
    return out


class FeatureInputs:
    """Training inputs that are cached backbone features: ``forward`` runs the head only.

    Args:
        features: ``float32[n, feature_dim]`` from :func:`cache_features`.
    """

    def __init__(self, features: torch.Tensor, precision: str = "fp32") -> None:
        self.features = features
        self.precision = precision

    def __len__(self) -> int:
        return len(self.features)

    def forward(self, model: nn.Module, idx: torch.Tensor, *, train: bool,
                generator: torch.Generator | None = None) -> HashOutput:
        """Head outputs for items ``idx`` (no augmentation: the features are fixed)."""
        f = self.features[idx.to(self.features.device)]
        with autocast(str(f.device), self.precision):
            z = model.forward_latent(f)
            return HashOutput(f, z, model.forward_head(z))
