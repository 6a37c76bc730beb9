"""ModelConfig: everything needed to rebuild a hashing model from a checkpoint alone."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

from hashret.codes import check_bits

#: methods fitted without labels (no classifier, ``num_classes`` 0): :mod:`hashret.models.projection`
_UNLABELLED = ("itq", "pca-sign", "lsh")


@dataclass(frozen=True)
class ModelConfig:
    """Architecture of a hashing model (written into every checkpoint).

    Attributes:
        method: hashing method, a key of :data:`hashret.models.METHODS` (``"dlbhc"``, ``"triplet"``).
        backbone: a key of the backbone registry (``"convnet"``, ``"resnet18"``, ... see
            :func:`hashret.models.list_backbones`).
        bits: code length, 8..256.
        num_classes: classifier outputs; 0 for a model fitted without labels (``itq``,
            ``pca-sign``, ``lsh``: :mod:`hashret.models.projection`).
        in_channels: image channels the model takes (1 grey, 3 RGB).
        input_size: ``(h, w)`` the images are resized to before the backbone.
        mean, std: per-channel normalisation of ``[0, 1]`` pixels.
        classes: class names, index = label.
    """

    method: str
    backbone: str
    bits: int
    num_classes: int
    in_channels: int
    input_size: tuple[int, int]
    mean: tuple[float, ...] = field(default=())
    std: tuple[float, ...] = field(default=())
    classes: tuple[str, ...] = field(default=())

    def __post_init__(self) -> None:
        check_bits(self.bits)
        if self.num_classes < 2 and not (self.num_classes == 0 and self.method in _UNLABELLED):
            raise ValueError(f"num_classes={self.num_classes}: a hashing model needs >= 2 classes")
        if self.in_channels < 1:
            raise ValueError(f"in_channels must be >= 1, got {self.in_channels}")
        if len(self.input_size) != 2 or min(self.input_size) < 8:
            raise ValueError(f"input_size must be (h, w) with both >= 8, got {self.input_size}")
        for name in ("mean", "std"):
            v = getattr(self, name)
            if v and len(v) != self.in_channels:
                raise ValueError(f"{name} has {len(v)} values for {self.in_channels} channels")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["input_size"] = list(self.input_size)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModelConfig:
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"model config has unknown keys {sorted(unknown)}: not a hashret model?")
        d = dict(d)
        for key in ("input_size", "mean", "std", "classes"):
            if key in d:
                d[key] = tuple(d[key])
        return cls(**d)
