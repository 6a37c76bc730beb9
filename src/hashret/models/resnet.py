"""ResNet-18 / ResNet-50 as plain PyTorch, with torchvision's ``state_dict`` keys.

The module tree mirrors ``torchvision.models.resnet`` (``conv1``, ``bn1``, ``layer1..4`` of
``BasicBlock`` / ``Bottleneck`` with ``downsample.{0,1}``, ``fc``), so torchvision's weight
files load unchanged (:mod:`hashret.models.pretrained`). The stride of a bottleneck sits on
its 3x3 conv, as in torchvision (ResNet v1.5).

As a backbone (``num_classes=None``) there is no ``fc``: ``forward`` returns the globally
average-pooled ``float[n, 512 * expansion]`` features (the fc7 role in DLBHC).

``small_input=True`` is the usual 32 px variant (the CIFAR stem of He et al.): ``conv1`` is
a 3x3 stride-1 convolution and there is no max pool, so a 32 px image reaches ``layer4`` at
4x4 instead of 1x1. Its other keys still match torchvision's; only ``conv1.weight`` differs
in shape.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


def conv3x3(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)


def conv1x1(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 1, stride=stride, bias=False)


class BasicBlock(nn.Module):
    """Two 3x3 convs with a residual: ``float[n, cin, h, w] -> float[n, planes, h/s, w/s]``."""

    expansion = 1

    def __init__(self, cin: int, planes: int, stride: int = 1,
                 downsample: nn.Module | None = None) -> None:
        super().__init__()
        self.conv1 = conv3x3(cin, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    """1x1 -> 3x3 (stride) -> 1x1 with a residual; ``float[n, cin, h, w] -> [n, 4 planes, h/s, w/s]``."""

    expansion = 4

    def __init__(self, cin: int, planes: int, stride: int = 1,
                 downsample: nn.Module | None = None) -> None:
        super().__init__()
        self.conv1 = conv1x1(cin, planes)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = conv3x3(planes, planes, stride)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = conv1x1(planes, planes * self.expansion)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


class ResNet(nn.Module):
    """torchvision's ResNet.

    Args:
        block: :class:`BasicBlock` (ResNet-18/34) or :class:`Bottleneck` (ResNet-50+).
        layers: blocks per stage, ``(2, 2, 2, 2)`` for ResNet-18, ``(3, 4, 6, 3)`` for ResNet-50.
        in_channels: image channels (3; 1 for grey, see :func:`~hashret.models.pretrained.load_pretrained`).
        num_classes: size of the ``fc`` classifier; ``None`` for a backbone without it.
        small_input: the 32 px stem (3x3 stride-1 ``conv1``, no max pool).

    ``forward(x: float[n, c, h, w]) -> float[n, feature_dim]`` pooled features
    (``float[n, num_classes]`` logits when ``num_classes`` is set).
    """

    def __init__(self, block: type[BasicBlock | Bottleneck], layers: Sequence[int], *,
                 in_channels: int = 3, num_classes: int | None = None,
                 small_input: bool = False) -> None:
        super().__init__()
        self.inplanes = 64
        if small_input:
            self.conv1 = nn.Conv2d(in_channels, 64, 3, stride=1, padding=1, bias=False)
            self.maxpool: nn.Module = nn.Identity()
        else:
            self.conv1 = nn.Conv2d(in_channels, 64, 7, stride=2, padding=3, bias=False)
            self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.layer1 = self._make_layer(block, 64, layers[0])
        self.layer2 = self._make_layer(block, 128, layers[1], stride=2)
        self.layer3 = self._make_layer(block, 256, layers[2], stride=2)
        self.layer4 = self._make_layer(block, 512, layers[3], stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.feature_dim = 512 * block.expansion
        self.fc = nn.Linear(self.feature_dim, num_classes) if num_classes else None
        for m in self.modules():  # torchvision's initialisation
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def _make_layer(self, block: type[BasicBlock | Bottleneck], planes: int, blocks: int,
                    stride: int = 1) -> nn.Sequential:
        downsample = None
        if stride != 1 or self.inplanes != planes * block.expansion:
            downsample = nn.Sequential(conv1x1(self.inplanes, planes * block.expansion, stride),
                                       nn.BatchNorm2d(planes * block.expansion))
        layers = [block(self.inplanes, planes, stride, downsample)]
        self.inplanes = planes * block.expansion
        layers += [block(self.inplanes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        x = self.avgpool(x).flatten(1)  # [n, feature_dim]
        return x if self.fc is None else self.fc(x)


def resnet18(in_channels: int = 3, num_classes: int | None = None, *,
             small_input: bool = False) -> ResNet:
    """ResNet-18: 512-d features; 11,689,512 parameters with the 1000-class ``fc``."""
    return ResNet(BasicBlock, (2, 2, 2, 2), in_channels=in_channels, num_classes=num_classes,
                  small_input=small_input)


def resnet50(in_channels: int = 3, num_classes: int | None = None, *,
             small_input: bool = False) -> ResNet:
    """ResNet-50: 2048-d features; 25,557,032 parameters with the 1000-class ``fc``."""
    return ResNet(Bottleneck, (3, 4, 6, 3), in_channels=in_channels, num_classes=num_classes,
                  small_input=small_input)
