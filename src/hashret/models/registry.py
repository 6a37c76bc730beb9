"""Method registry: ``create_model("dlbhc", backbone=..., bits=..., ...)``."""

from __future__ import annotations

from typing import Any

from torch import nn

from hashret.models.config import ModelConfig
from hashret.models.hashnet import DLBHC

METHODS: dict[str, type[nn.Module]] = {"dlbhc": DLBHC}


def list_methods() -> list[str]:
    return sorted(METHODS)


def build_model(cfg: ModelConfig) -> nn.Module:
    """Build the model a :class:`ModelConfig` describes (random weights)."""
    if cfg.method not in METHODS:
        raise ValueError(f"unknown method {cfg.method!r}: choose one of {', '.join(list_methods())}")
    return METHODS[cfg.method](cfg)


def create_model(method: str = "dlbhc", **kwargs: Any) -> nn.Module:
    """``create_model("dlbhc", backbone="convnet", bits=48, num_classes=10, in_channels=3,
    input_size=(32, 32))``: keyword arguments are the fields of :class:`ModelConfig`."""
    return build_model(ModelConfig(method=method, **kwargs))
