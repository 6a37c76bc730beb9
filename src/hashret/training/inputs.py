"""Training inputs that are images: ``forward`` augments a batch and runs the whole model.

The loop sees two kinds of inputs with the same interface, ``len(inputs)`` and
``inputs.forward(model, idx, train=..., generator=...) -> HashOutput``: these pixels, and
cached backbone features (:class:`hashret.training.frozen.FeatureInputs`).
"""

from __future__ import annotations

import time

import torch
from torch import nn

from hashret.device import autocast
from hashret.models import HashOutput
from hashret.training.augment import alternating_flips, augment


class PixelInputs:
    """``uint8[n, c, h, w]`` images kept as bytes until a batch is drawn.

    Args:
        images: ``uint8[n, c, h, w]`` (CPU).
        device, precision, channels_last: where and how the forward pass runs.
        pad, flip: training augmentation (random crop with reflect padding, mirror).
        alternate_flip: mirror by airbench94's schedule (each image every other epoch,
            :func:`~hashret.training.augment.alternating_flips` seeded by ``seed``) instead of
            a coin per image and epoch.

    ``prep_seconds`` adds up the time spent making batches (indexing, augmenting, layout)
    since :meth:`start_epoch`.
    """

    def __init__(self, images: torch.Tensor, *, device: str, precision: str, channels_last: bool,
                 pad: int = 0, flip: bool = False, alternate_flip: bool = False, seed: int = 0) -> None:
        self.images = images
        self.device, self.precision, self.channels_last = device, precision, channels_last
        self.pad, self.flip, self.alternate_flip, self.seed = pad, flip, alternate_flip, seed
        self.flip_mask: torch.Tensor | None = None
        self.prep_seconds = 0.0

    def start_epoch(self, epoch: int) -> None:
        """Set the epoch's mirror schedule (alternating flips) and zero ``prep_seconds``."""
        self.prep_seconds = 0.0
        if self.flip and self.alternate_flip:
            self.flip_mask = alternating_flips(len(self.images), epoch, self.seed)

    def __len__(self) -> int:
        return len(self.images)

    def forward(self, model: nn.Module, idx: torch.Tensor, *, train: bool,
                generator: torch.Generator | None = None) -> HashOutput:
        """Model outputs for items ``idx``; augmented when ``train`` (drawing from ``generator``)."""
        t0 = time.perf_counter()
        x = self.images[idx].float().div_(255)
        if train:
            assert generator is not None, "training augmentation needs the epoch's generator"
            assert not (self.flip and self.alternate_flip and self.flip_mask is None), \
                "alternating flips need start_epoch(epoch) first"
            mask = None if self.flip_mask is None else self.flip_mask[idx]
            x = augment(x, pad=self.pad, flip=self.flip, generator=generator, flip_mask=mask)
        x = x.to(self.device)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        self.prep_seconds += time.perf_counter() - t0
        with autocast(self.device, self.precision):
            return model(x)
