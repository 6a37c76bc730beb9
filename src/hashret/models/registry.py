"""Method registry: ``create_model("dlbhc", backbone=..., bits=..., ...)``."""

from __future__ import annotations

from typing import Any

from hashret.models.config import ModelConfig
from hashret.models.hashnet import DLBHC, HashModel
from hashret.models.projection import PROJECTION_METHODS, ProjectionHash
from hashret.models.triplet import TripletHash

#: method name -> model class; the training side of each method (loss, batch sampler, model
#: selection) is in :mod:`hashret.training.methods`; the projection methods (``itq``,
#: ``pca-sign``, ``lsh``) are fitted without labels instead (:mod:`hashret.unsupervised`)
METHODS: dict[str, type[HashModel]] = {"dlbhc": DLBHC, "triplet": TripletHash,
                                       **{m: ProjectionHash for m in PROJECTION_METHODS}}


def list_methods() -> list[str]:
    return sorted(METHODS)


def build_model(cfg: ModelConfig) -> HashModel:
    """Build the model a :class:`ModelConfig` describes (random weights)."""
    if cfg.method not in METHODS:
        raise ValueError(f"unknown method {cfg.method!r}: choose one of {', '.join(list_methods())}")
    return METHODS[cfg.method](cfg)


def create_model(method: str = "dlbhc", **kwargs: Any) -> HashModel:
    """``create_model("dlbhc", backbone="convnet", bits=48, num_classes=10, in_channels=3,
    input_size=(32, 32))``: keyword arguments are the fields of :class:`ModelConfig`."""
    return build_model(ModelConfig(method=method, **kwargs))
