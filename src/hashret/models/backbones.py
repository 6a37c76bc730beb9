"""Backbone registry: name -> a feature extractor with ``feature_dim``, and what it expects.

Each entry is a :class:`BackboneSpec`: the constructor ``factory(in_channels)`` plus the
input the net is made for (default input side, ImageNet normalisation) and, for the
ImageNet nets, where torchvision publishes their weights (:mod:`hashret.models.pretrained`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from torch import nn

from hashret.models.alexnet import MIN_INPUT as ALEXNET_MIN_INPUT
from hashret.models.alexnet import AlexNet
from hashret.models.convnet import ConvNet, LeNet
from hashret.models.resnet import resnet18, resnet50

#: ImageNet statistics of ``[0, 1]`` RGB pixels (torchvision's), and their grey counterpart
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
IMAGENET_GREY_MEAN, IMAGENET_GREY_STD = (0.449,), (0.226,)

_TORCHVISION = "https://download.pytorch.org/models/"


@dataclass(frozen=True)
class BackboneSpec:
    """A registered backbone.

    Attributes:
        factory: ``factory(in_channels) -> nn.Module`` with a ``feature_dim`` attribute;
            ``forward(float[n, c, h, w]) -> float[n, feature_dim]``.
        input_size: the model input side it is made for (``None``: the images' own size).
        min_input_size: the smallest input side it accepts.
        imagenet_norm: normalise with ImageNet's statistics (what pretrained weights expect)
            instead of the training images' own.
        weights_url: torchvision's ImageNet weight file (``None``: no published weights).
        drop_keys: key prefixes of the ImageNet classifier, dropped from a weight file.
        first_conv: key of the first convolution's weight (summed over RGB for grey input).
        init_keys: keys whose shapes differ from the weight file by design; they keep their
            random initialisation (the 3x3 stem of the 32 px variants).
    """

    factory: Callable[[int], nn.Module]
    input_size: int | None = None
    min_input_size: int = 8
    imagenet_norm: bool = False
    weights_url: str | None = None
    drop_keys: tuple[str, ...] = ()
    first_conv: str | None = None
    init_keys: tuple[str, ...] = ()


_BACKBONES: dict[str, BackboneSpec] = {
    # airbench-style widths: the CIFAR-10 recipe (about 470 images/s training on 2 CPU cores)
    "convnet": BackboneSpec(lambda c: ConvNet(c, (64, 256, 256))),
    # a quarter of the compute: MNIST, digits, quick runs
    "convnet-small": BackboneSpec(lambda c: ConvNet(c, (32, 64, 128))),
    "lenet": BackboneSpec(lambda c: LeNet(c)),
    # DLBHC's own backbone: 4096-d fc7 features, 224 px
    "alexnet": BackboneSpec(
        lambda c: AlexNet(c), input_size=224, min_input_size=ALEXNET_MIN_INPUT, imagenet_norm=True,
        weights_url=_TORCHVISION + "alexnet-owt-7be5be79.pth", drop_keys=("classifier.6.",),
        first_conv="features.0.weight"),
    # the seed's backbone: 512-d pooled features, 224 px
    "resnet18": BackboneSpec(
        lambda c: resnet18(c), input_size=224, min_input_size=32, imagenet_norm=True,
        weights_url=_TORCHVISION + "resnet18-f37072fd.pth", drop_keys=("fc.",),
        first_conv="conv1.weight"),
    "resnet50": BackboneSpec(
        lambda c: resnet50(c), input_size=224, min_input_size=32, imagenet_norm=True,
        weights_url=_TORCHVISION + "resnet50-0676ba61.pth", drop_keys=("fc.",),
        first_conv="conv1.weight"),
    # 32 px variants: 3x3 stride-1 stem, no max pool (pretrained weights load except conv1)
    "resnet18-cifar": BackboneSpec(
        lambda c: resnet18(c, small_input=True), input_size=32, imagenet_norm=True,
        weights_url=_TORCHVISION + "resnet18-f37072fd.pth", drop_keys=("fc.",),
        init_keys=("conv1.weight",)),
    "resnet50-cifar": BackboneSpec(
        lambda c: resnet50(c, small_input=True), input_size=32, imagenet_norm=True,
        weights_url=_TORCHVISION + "resnet50-0676ba61.pth", drop_keys=("fc.",),
        init_keys=("conv1.weight",)),
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
    """``(mean, std)`` a backbone prescribes (ImageNet's, for ``in_channels`` 3 or 1), or
    ``None`` when the training images' own statistics are used."""
    if not get_backbone_spec(name).imagenet_norm:
        return None
    if in_channels == 3:
        return IMAGENET_MEAN, IMAGENET_STD
    return IMAGENET_GREY_MEAN * in_channels, IMAGENET_GREY_STD * in_channels
