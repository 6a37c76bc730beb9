"""A fast CNN that trains well from scratch on small images on a CPU.

The design follows the CIFAR-10 speed-record nets (hlb-CIFAR10, airbench): a 2x2
"whitening" convolution initialised from the eigenvectors of the training patches,
then three conv groups (conv3x3 -> maxpool -> BatchNorm -> GELU -> conv3x3 ->
BatchNorm -> GELU), a global max pool, and the pooled vector as the penultimate
features (the role fc7 plays in DLBHC's AlexNet). Any input size >= 8 px works.

``ConvNet(..., airbench94=True)`` is airbench94's net (KellerJordan/cifar10-airbench,
``airbench94.py``): BatchNorm ``eps=1e-12``, floor max pools (32 px: 31 -> 15 -> 7 -> 3, less
compute than the ceil pools' 16 -> 8 -> 4) and the whitening patches not centred.
``feature_scale=1/9`` adds airbench's logit scale, applied to the pooled features so that the
layer on them (DLBHC's latent layer, where airbench has its classifier) sees the scaled input:
``W (f / 9)`` has airbench's value and gradients, and the code's threshold (the sign of the
pre-activation) is unchanged. Under DLBHC's sigmoid latent + classifier it slowed learning
(2-epoch CIFAR-10 proxy, validation accuracy 0.695 with it, 0.773 without), so the
``convnet-airbench94`` backbone leaves it out and ``convnet-airbench94-scaled`` keeps it.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


class ConvGroup(nn.Module):
    """conv3x3 -> maxpool2 -> BN -> GELU -> conv3x3 -> BN -> GELU.

    ``float[n, cin, h, w] -> float[n, cout, ceil(h/2), ceil(w/2)]``.
    """

    def __init__(self, cin: int, cout: int, bn_momentum: float = 0.4, *, bn_eps: float = 1e-5,
                 ceil_mode: bool = True) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1, bias=False)
        self.pool = nn.MaxPool2d(2, ceil_mode=ceil_mode)
        self.norm1 = nn.BatchNorm2d(cout, eps=bn_eps, momentum=bn_momentum)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1, bias=False)
        self.norm2 = nn.BatchNorm2d(cout, eps=bn_eps, momentum=bn_momentum)
        self.act = nn.GELU()
        for conv in (self.conv1, self.conv2):  # identity-like start (airbench): a dirac per channel
            w = conv.weight.data
            nn.init.dirac_(w[: min(w.shape[0], w.shape[1])])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act(self.norm1(self.pool(self.conv1(x))))
        return self.act(self.norm2(self.conv2(x)))


class ConvNet(nn.Module):
    """Whitening conv + three :class:`ConvGroup` + global max pool.

    Args:
        in_channels: 1 (grey) or 3 (RGB); any positive count works.
        widths: output channels of the three conv groups.
        airbench94: airbench94's settings (BatchNorm eps 1e-12, floor pools, uncentred
            whitening patches); ``False`` keeps hashret's original net.
        feature_scale: multiplies the pooled features (airbench94's logit scale is ``1/9``).

    ``forward(x: float[n, c, h, w]) -> float[n, widths[-1]]``: the penultimate features.
    """

    def __init__(self, in_channels: int = 3, widths: Sequence[int] = (64, 256, 256), *,
                 airbench94: bool = False, feature_scale: float = 1.0) -> None:
        super().__init__()
        whiten_width = 2 * in_channels * 4  # +/- each eigenvector of the 2x2 patches
        self.whiten = nn.Conv2d(in_channels, whiten_width, 2, padding=0, bias=True)
        self.act = nn.GELU()
        chans = [whiten_width, *widths]
        group = dict(bn_eps=1e-12, ceil_mode=False) if airbench94 else {}
        self.groups = nn.Sequential(*[ConvGroup(a, b, **group)
                                      for a, b in zip(chans[:-1], chans[1:], strict=True)])
        self.pool = nn.AdaptiveMaxPool2d(1)
        self.feature_dim = int(widths[-1])
        self.center_patches = not airbench94
        self.feature_scale = float(feature_scale)

    @torch.no_grad()
    def init_from_data(self, images: torch.Tensor, eps: float = 5e-4) -> None:
        """Set the whitening conv from training images ``float[n, c, h, w]`` (normalised).

        Its filters become the eigenvectors of the 2x2 patch covariance scaled by
        ``1/sqrt(eigenvalue + eps)``, and their negatives (airbench's ``init_whiten``; the
        patches are centred first unless the net is airbench94's, which uses the raw second
        moment).
        """
        c = images.shape[1]
        patches = images.unfold(2, 2, 1).unfold(3, 2, 1)  # [n, c, h-1, w-1, 2, 2]
        patches = patches.permute(0, 2, 3, 1, 4, 5).reshape(-1, c * 4).double()
        if self.center_patches:
            patches = patches - patches.mean(0, keepdim=True)
        cov = patches.T @ patches / len(patches)
        eigval, eigvec = torch.linalg.eigh(cov)
        filt = (eigvec.T / torch.sqrt(eigval.clamp_min(0) + eps)[:, None]).reshape(-1, c, 2, 2)
        self.whiten.weight.copy_(torch.cat([filt, -filt]).float())
        self.whiten.bias.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act(self.whiten(x))
        x = self.groups(x)
        f = self.pool(x).flatten(1)  # [n, feature_dim]
        return f * self.feature_scale if self.feature_scale != 1.0 else f


class LeNet(nn.Module):
    """The plain two-conv-layer CNN (conv5-pool-conv5-pool-fc500), a reference baseline.

    ``forward(x: float[n, c, h, w]) -> float[n, 500]`` (post-ReLU fc features).
    """

    def __init__(self, in_channels: int = 1, feature_dim: int = 500) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(in_channels, 20, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2, ceil_mode=True),
            nn.Conv2d(20, 50, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2, ceil_mode=True),
            nn.AdaptiveAvgPool2d(4), nn.Flatten(),
        )
        self.fc = nn.Sequential(nn.Linear(50 * 16, feature_dim), nn.ReLU())
        self.feature_dim = feature_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.body(x))
