"""Training augmentation on batched tensors (no per-image Python work)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def random_crop(x: torch.Tensor, pad: int, generator: torch.Generator) -> torch.Tensor:
    """Reflect-pad by ``pad`` and take a random crop of the original size per image.

    Args:
        x: float ``[n, c, h, w]``.
        pad: pixels of padding each side (0 returns ``x``).

    Returns:
        float ``[n, c, h, w]``: each image shifted by up to ``pad`` pixels in each axis.
    """
    if pad <= 0:
        return x
    n, c, h, w = x.shape
    padded = F.pad(x, (pad, pad, pad, pad), mode="reflect")
    dy = torch.randint(0, 2 * pad + 1, (n,), generator=generator)
    dx = torch.randint(0, 2 * pad + 1, (n,), generator=generator)
    out = torch.empty_like(x)
    # group by shift: at most (2 pad + 1)^2 slicing ops, each vectorised over its images
    for sy in range(2 * pad + 1):
        for sx in range(2 * pad + 1):
            sel = ((dy == sy) & (dx == sx)).nonzero().flatten()
            if len(sel):
                out[sel] = padded[sel, :, sy:sy + h, sx:sx + w]
    return out


def random_flip(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Mirror each image of ``float[n, c, h, w]`` left-right with probability 1/2."""
    flip = torch.rand(x.shape[0], generator=generator) < 0.5
    return torch.where(flip[:, None, None, None], x.flip(3), x)


def augment(x: torch.Tensor, *, pad: int, flip: bool, generator: torch.Generator) -> torch.Tensor:
    """``random_crop`` then (if ``flip``) ``random_flip``: float ``[n, c, h, w]`` -> same shape."""
    x = random_crop(x, pad, generator)
    return random_flip(x, generator) if flip else x
