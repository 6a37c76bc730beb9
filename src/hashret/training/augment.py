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


def alternating_flips(n: int, epoch: int, seed: int) -> torch.Tensor:
    """airbench94's flip schedule: which of ``n`` training images are mirrored in ``epoch``.

    A seeded coin per image decides epoch 0; every later epoch mirrors exactly the images the
    epoch before did not (each image is seen mirrored every other epoch, deterministically).

    Returns:
        bool ``[n]``, True where the image is mirrored.
    """
    base = torch.rand(n, generator=torch.Generator().manual_seed(seed)) < 0.5
    return base ^ bool(epoch % 2)


def flip_where(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mirror left-right the images of ``float[n, c, h, w]`` where ``mask`` (bool ``[n]``) is set."""
    return torch.where(mask[:, None, None, None], x.flip(3), x)


def augment(x: torch.Tensor, *, pad: int, flip: bool, generator: torch.Generator,
            flip_mask: torch.Tensor | None = None) -> torch.Tensor:
    """``random_crop`` then (if ``flip``) a mirror: float ``[n, c, h, w]`` -> same shape.

    The mirror is ``random_flip``, or exactly the images ``flip_mask`` (bool ``[n]``) selects
    (:func:`alternating_flips`); the crop draws from ``generator`` either way.
    """
    x = random_crop(x, pad, generator)
    if not flip:
        return x
    return random_flip(x, generator) if flip_mask is None else flip_where(x, flip_mask)
