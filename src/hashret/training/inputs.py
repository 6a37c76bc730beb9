"""Training inputs that are images: ``forward`` augments a batch and runs the whole model.

The loop sees two kinds of inputs with the same interface, ``len(inputs)`` and
``inputs.forward(model, idx, train=..., generator=...) -> HashOutput``: these pixels, and
cached backbone features (:class:`hashret.training.frozen.FeatureInputs`).
"""

from __future__ import annotations

import torch
from torch import nn

from hashret.device import autocast
from hashret.models import HashOutput
from hashret.training.augment import augment


class PixelInputs:
    """``uint8[n, c, h, w]`` images kept as bytes until a batch is drawn.

    Args:
        images: ``uint8[n, c, h, w]`` (CPU).
        device, precision, channels_last: where and how the forward pass runs.
        pad, flip: training augmentation (random crop with reflect padding, mirror).
    """

    def __init__(self, images: torch.Tensor, *, device: str, precision: str, channels_last: bool,
                 pad: int = 0, flip: bool = False) -> None:
        self.images = images
        self.device, self.precision, self.channels_last = device, precision, channels_last
        self.pad, self.flip = pad, flip

    def __len__(self) -> int:
        return len(self.images)

    def forward(self, model: nn.Module, idx: torch.Tensor, *, train: bool,
                generator: torch.Generator | None = None) -> HashOutput:
        """Model outputs for items ``idx``; augmented when ``train`` (drawing from ``generator``)."""
        x = self.images[idx].float().div_(255)
        if train:
            assert generator is not None, "training augmentation needs the epoch's generator"
            x = augment(x, pad=self.pad, flip=self.flip, generator=generator)
        x = x.to(self.device)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with autocast(self.device, self.precision):
            return model(x)
