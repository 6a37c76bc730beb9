"""Encoding: images -> packed binary codes + float features, in one forward pass."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from hashret.codes import encode as pack_activations
from hashret.device import autocast


@dataclass(frozen=True)
class Encoded:
    """Encodings of ``n`` images.

    codes: ``uint8[n, ceil(bits/8)]`` packed LSB first (:mod:`hashret.codes`): bit ``j`` is 1
        where ``latent[:, j] > model.threshold`` (0.5 for DLBHC's sigmoid; 0 for the triplet
        method's tanh, whose sign is the code, a zero activation giving bit 0, i.e. -1).
    features: ``float32[n, feature_dim]`` penultimate features (the fine re-rank's space).
    latent: ``float32[n, bits]`` the relaxed code before thresholding.
    """

    codes: np.ndarray
    features: np.ndarray
    latent: np.ndarray


def tta_views(x: torch.Tensor, *, tta_flip: bool, tta_translate: int = 0) -> list[tuple[float, torch.Tensor]]:
    """The deterministic test-time views of a batch and their weights (summing to 1).

    ``x``: float ``[n, c, h, w]``. Without ``tta_translate``: ``x`` (and its mirror image with
    ``tta_flip``), equal weights. With ``tta_translate = r``: airbench94's ``tta_level=2``: half
    the weight on those views of ``x``, a quarter each on those of ``x`` shifted by ``r`` pixels
    up-left and down-right (reflect padding). Each view is float ``[n, c, h, w]``.
    """
    h, w = x.shape[-2:]
    shifted = [(1.0, x)]
    if tta_translate > 0:
        r = tta_translate
        padded = F.pad(x, (r, r, r, r), mode="reflect")
        shifted = [(0.5, x), (0.25, padded[..., :h, :w]),  # up-left
                   (0.25, padded[..., 2 * r:2 * r + h, 2 * r:2 * r + w])]  # down-right
    if not tta_flip:
        return shifted
    return [(wt / 2, v) for wt, u in shifted for v in (u, u.flip(3))]


@torch.no_grad()
def encode_images(model: nn.Module, images: np.ndarray, *, batch_size: int = 500,
                  tta_flip: bool = False, progress: bool = False, device: str = "cpu",
                  precision: str = "fp32", tta_translate: int = 0) -> Encoded:
    """Encode ``uint8[n, h, w, c]`` images with a hashing model in eval mode.

    No training augmentation is ever applied. With ``tta_flip`` each image is encoded as
    the mean of its own and its mirror image's features and latent activations (the same
    deterministic transform for queries and database); ``tta_translate = r`` adds the
    image shifted by ``r`` pixels (:func:`tta_views`: 2 forward passes per image become 6).
    The code thresholds the averaged latent activations. ``precision="bf16"`` runs the
    forward pass under bf16 autocast (as the model was trained); outputs are float32.
    """
    if images.ndim != 4 or images.dtype != np.uint8:
        raise ValueError(f"images must be uint8 [n, h, w, c], got {images.dtype} {images.shape}")
    if tta_translate < 0 or (tta_translate and tta_translate >= min(images.shape[1:3])):
        raise ValueError(f"--tta-translate {tta_translate} must be between 0 and the image side less one "
                         f"({min(images.shape[1:3]) - 1} px for {images.shape[1]}x{images.shape[2]} images)")
    model.eval()
    threshold = float(getattr(model, "threshold", 0.5))
    feats, lats = [], []
    batches = range(0, len(images), batch_size)
    for i in tqdm(batches, desc="encode", disable=None if progress else True, leave=False):
        x = torch.from_numpy(np.array(images[i:i + batch_size].transpose(0, 3, 1, 2), order="C"))
        x = x.to(device).float().div_(255).contiguous(memory_format=torch.channels_last)
        with autocast(device, precision):
            if tta_translate:
                f = z = 0.0  # type: ignore[assignment]
                for wt, view in tta_views(x, tta_flip=tta_flip, tta_translate=tta_translate):
                    fv = model.forward_features(view.contiguous(memory_format=torch.channels_last)).float()
                    f = f + wt * fv
                    z = z + wt * model.forward_latent(fv).float()
            else:  # the original arithmetic, bit for bit
                f = model.forward_features(x).float()
                z = model.forward_latent(f).float()
                if tta_flip:
                    f2 = model.forward_features(x.flip(3)).float()
                    z = (z + model.forward_latent(f2).float()) / 2
                    f = (f + f2) / 2
        feats.append(f.float().cpu().numpy())
        lats.append(z.float().cpu().numpy())
    bits = model.config.bits
    latent = np.concatenate(lats) if lats else np.zeros((0, bits), np.float32)
    features = np.concatenate(feats) if feats else np.zeros((0, model.feature_dim), np.float32)
    return Encoded(pack_activations(latent, threshold), features, latent)
