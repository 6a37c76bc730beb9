"""The training side of each hashing method: its loss, its batches, how a run selects its epoch.

The model of a method comes from :data:`hashret.models.METHODS`; this registry (same keys)
says how the one training loop (:mod:`hashret.training.loop`) trains it:

* ``dlbhc``: softmax cross-entropy (:class:`~hashret.losses.SoftmaxLoss`), random batches,
  the epoch with the best validation accuracy;
* ``triplet``: the triplet ranking loss (:class:`~hashret.losses.TripletRankingLoss`),
  class-balanced P x K batches (:class:`~hashret.training.sampler.ClassBalancedBatches`),
  the epoch with the best validation mAP (half of the validation images query the other
  half; the method has no classifier to score), and 0.15 times the dataset's default
  learning rate: its loss, in bits, has larger gradients than a cross-entropy (on MNIST,
  16 and 64 bits, 0.03 trained well where DLBHC's 0.2 left tanh units saturated).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import numpy as np

from hashret.losses import HashLoss, SoftmaxLoss, TripletRankingLoss
from hashret.training.sampler import ClassBalancedBatches, RandomBatches, resolve_pk

if TYPE_CHECKING:
    from hashret.training.config import TrainConfig

SAMPLERS = ("random", "class-balanced")


@dataclass(frozen=True)
class TrainingMethod:
    """How the loop trains one method.

    Attributes:
        make_loss: ``TrainConfig -> HashLoss``.
        sampler: ``"random"`` batches or ``"class-balanced"`` (P classes x K images).
        select_by: the validation statistic whose best epoch the run keeps
            (``"val_acc"`` or ``"val_map"``).
        lr_scale: multiplies the recipe's and dataset's default learning rate (an explicit
            ``lr`` is used as given).
    """

    make_loss: Callable[[TrainConfig], HashLoss]
    sampler: str
    select_by: str
    lr_scale: float = 1.0


TRAINING_METHODS: dict[str, TrainingMethod] = {
    "dlbhc": TrainingMethod(lambda cfg: SoftmaxLoss(cfg.label_smoothing), "random", "val_acc"),
    "triplet": TrainingMethod(
        lambda cfg: TripletRankingLoss(cfg.bits, cfg.margin, cfg.mining, cfg.quant_weight),
        "class-balanced", "val_map", lr_scale=0.15),
}


def get_training_method(name: str) -> TrainingMethod:
    """The :class:`TrainingMethod` of ``name``.

    Raises:
        ValueError: unknown method (the message lists the known ones).
    """
    if name not in TRAINING_METHODS:
        raise ValueError(f"unknown method {name!r}: choose one of {', '.join(sorted(TRAINING_METHODS))}")
    return TRAINING_METHODS[name]


def create_loss(cfg: TrainConfig) -> HashLoss:
    """The loss of ``cfg.method``."""
    return get_training_method(cfg.method).make_loss(cfg)


def resolve_batches(cfg: TrainConfig, labels: np.ndarray) -> TrainConfig:
    """A copy of a resolved config with the batch composition of its method filled in:
    P (``classes_per_batch``) and K (``images_per_class``) for class-balanced batches."""
    if get_training_method(cfg.method).sampler != "class-balanced":
        return cfg
    p, k = resolve_pk(len(np.unique(labels)), cfg.batch_size, cfg.classes_per_batch,
                      cfg.images_per_class)
    return replace(cfg, classes_per_batch=p, images_per_class=k)


def create_sampler(cfg: TrainConfig, labels: np.ndarray) -> RandomBatches | ClassBalancedBatches:
    """The batch sampler of ``cfg.method`` over training labels ``int[n]`` (config from
    :func:`resolve_batches`)."""
    if get_training_method(cfg.method).sampler == "class-balanced":
        assert cfg.classes_per_batch and cfg.images_per_class, "call resolve_batches first"
        return ClassBalancedBatches(labels, cfg.classes_per_batch, cfg.images_per_class)
    return RandomBatches(len(labels), cfg.batch_size)
