"""Backbone registry: name -> constructor of a feature extractor with ``feature_dim``."""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from hashret.models.convnet import ConvNet, LeNet

_BACKBONES: dict[str, Callable[[int], nn.Module]] = {
    # airbench-style widths: the CIFAR-10 recipe (about 470 images/s training on 2 CPU cores)
    "convnet": lambda c: ConvNet(c, (64, 256, 256)),
    # a quarter of the compute: MNIST, digits, quick runs
    "convnet-small": lambda c: ConvNet(c, (32, 64, 128)),
    "lenet": lambda c: LeNet(c),
}


def list_backbones() -> list[str]:
    """Names accepted by :func:`create_backbone`."""
    return sorted(_BACKBONES)


def register_backbone(name: str, factory: Callable[[int], nn.Module]) -> None:
    """Add a backbone ``factory(in_channels) -> nn.Module`` (with a ``feature_dim`` attribute)."""
    _BACKBONES[name] = factory


def create_backbone(name: str, in_channels: int) -> nn.Module:
    """Build a backbone by name.

    Raises:
        ValueError: unknown name (the message lists the known ones).
    """
    if name not in _BACKBONES:
        raise ValueError(f"unknown backbone {name!r}: choose one of {', '.join(list_backbones())}")
    net = _BACKBONES[name](in_channels)
    assert hasattr(net, "feature_dim"), f"backbone {name} must expose feature_dim"
    return net
