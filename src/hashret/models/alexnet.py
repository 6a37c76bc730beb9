"""AlexNet as plain PyTorch, with torchvision's ``state_dict`` keys (DLBHC's original backbone).

The layers and their indices are torchvision's (``features.{0,3,6,8,10}`` convolutions,
``classifier.{1,4}`` the 4096-d fc6 and fc7, ``classifier.6`` the 1000-class fc8), so
torchvision's ``alexnet-owt-7be5be79.pth`` loads unchanged.

As a backbone (``num_classes=None``) the classifier stops after fc7's ReLU: ``forward``
returns ``float[n, 4096]``, the layer whose role DLBHC's latent layer follows. The
dropout of fc6/fc7 is active in training mode, as in the paper.

Inputs smaller than 63 px shrink to nothing before the last pooling: use 224 px (the
ImageNet size) or at least :data:`MIN_INPUT`.
"""

from __future__ import annotations

import torch
from torch import nn

#: smallest square input the convolution stack accepts (the third max pool needs 3x3)
MIN_INPUT = 63


class AlexNet(nn.Module):
    """torchvision's AlexNet (the "one weird trick" variant: 64-192-384-256-256 channels).

    Args:
        in_channels: image channels (3; 1 for grey).
        num_classes: size of fc8 (``classifier.6``); ``None`` for a backbone ending at fc7.
        dropout: of fc6 and fc7.

    ``forward(x: float[n, c, h, w]) -> float[n, 4096]`` (``[n, num_classes]`` with fc8).
    """

    def __init__(self, in_channels: int = 3, num_classes: int | None = None,
                 dropout: float = 0.5) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, 64, kernel_size=11, stride=4, padding=2),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2),
            nn.Conv2d(64, 192, kernel_size=5, padding=2),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2),
            nn.Conv2d(192, 384, kernel_size=3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(384, 256, kernel_size=3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(256, 256, kernel_size=3, padding=1),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2),
        )
        self.avgpool = nn.AdaptiveAvgPool2d((6, 6))
        head: list[nn.Module] = [
            nn.Dropout(p=dropout),
            nn.Linear(256 * 6 * 6, 4096),  # fc6
            nn.ReLU(inplace=True),
            nn.Dropout(p=dropout),
            nn.Linear(4096, 4096),  # fc7
            nn.ReLU(inplace=True),
        ]
        if num_classes:
            head.append(nn.Linear(4096, num_classes))  # fc8
        self.classifier = nn.Sequential(*head)
        self.feature_dim = 4096

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if min(x.shape[-2:]) < MIN_INPUT:
            raise ValueError(
                f"AlexNet needs inputs of at least {MIN_INPUT} px, got {tuple(x.shape[-2:])}: "
                "use --input-size 224 (or a resnet18-cifar backbone for 32 px images)"
            )
        x = self.avgpool(self.features(x)).flatten(1)  # [n, 256 * 6 * 6]
        return self.classifier(x)
