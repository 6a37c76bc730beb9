"""TrainConfig: the full training recipe, filled from the CLI and saved with every run."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

from hashret.codes import check_bits
from hashret.data.folder import check_on_bad_image
from hashret.data.mnist import check_class_names
from hashret.device import PRECISIONS, resolve_device, resolve_precision
from hashret.losses.triplet import MINING
from hashret.models import METHODS
from hashret.training.methods import get_training_method
from hashret.training.recipes import RECIPE_DEFAULTS, RECIPES

#: Per-dataset defaults: what trains well on 2 CPU cores (see benchmarks/quality.py).
DATASET_DEFAULTS: dict[str, dict[str, Any]] = {
    "digits": {"backbone": "convnet-small", "epochs": 30, "batch_size": 128, "lr": 0.2, "pad": 1},
    "mnist": {"backbone": "convnet-small", "epochs": 7, "batch_size": 256, "lr": 0.2, "pad": 2},
    "cifar10": {"backbone": "convnet", "epochs": 12, "batch_size": 512, "lr": 0.4, "pad": 2},
    "folder": {"backbone": "convnet", "epochs": 20, "batch_size": 256, "lr": 0.2, "pad": 2},
    # fine-grained sets (224 px images): ImageNet backbones, best with --pretrained
    "cub200": {"backbone": "resnet18", "epochs": 30, "batch_size": 64, "lr": 0.01, "pad": 16},
    "dogs": {"backbone": "resnet18", "epochs": 30, "batch_size": 64, "lr": 0.01, "pad": 16},
}


@dataclass
class TrainConfig:
    """How a hashing model is trained. ``None`` fields take :data:`DATASET_DEFAULTS`.

    Attributes:
        dataset: ``digits``, ``mnist``, ``cifar10``, ``folder``, ``cub200`` or ``dogs``.
        method: ``dlbhc`` or ``triplet`` (:mod:`hashret.training.methods`).
        backbone: a registered backbone (``None``: per dataset).
        data_dir: where the dataset lives (not needed for ``digits``).
        image_size: resize folder images to this square size when reading (``None``: as stored).
        input_size: the model's input side in px (``None``: the images' size, at least 16).
        val_fraction: share of the training set held out for model selection (never the test set).
        pad, flip: augmentation (random crop with reflect padding; horizontal flip for natural images).
        tta_flip: encode each image as the mean of it and its mirror image (both database and
            queries, deterministically); ``None``: on for natural images.
        alternate_flip: mirror each training image every other epoch (airbench94's schedule)
            instead of by a coin per epoch; ``None``: the recipe's choice (airbench94: on).
        tta_translate: also average the codes over the image shifted by this many pixels up-left
            and down-right (reflect padding; airbench94's test-time augmentation: half the weight
            on the unshifted views), for database and queries alike; ``0``: no shift; ``None``:
            the recipe's choice for natural images (airbench94: 1), else 0.
        recipe: ``sgd``, ``airbench`` or ``airbench94`` (:mod:`hashret.training.recipes`; the
            airbench ones read ``lr`` and ``weight_decay`` as decoupled values per 1024 examples).
        label_smoothing: of the softmax loss.
        patience: stop once the validation statistic has not improved for this many epochs
            (``epochs`` is then the most it trains); ``None``: train every epoch. With the
            one-cycle schedule the learning rate anneals only in the last epochs, so a short
            patience can stop before the best epoch: give it a few epochs.
        threads: torch CPU threads (``None``: the cores the load average leaves free,
            :mod:`hashret.threads`; ``0``: every core). A run-time knob, like ``device``:
            ``--resume`` may change it.
        device: ``auto`` (CUDA when present, else CPU), ``cpu``, ``cuda``, ``cuda:1``...
        precision: ``auto`` (bf16 autocast on CUDA and on CPUs with native bf16, else fp32),
            ``fp32`` or ``bf16``; the weights and the optimizer stay fp32.
        pretrained: ImageNet weights for the backbone: a weight file path, or ``"torchvision"``
            to download torchvision's file (:mod:`hashret.models.pretrained`); ``None``: from scratch.
        freeze_backbone: keep the backbone as loaded and train only the hash head (and
            classifier) on features computed once, without augmentation
            (:mod:`hashret.training.frozen`).
        margin: triplet margin in bits of Hamming distance (``None``: ``bits / 4``,
            :func:`hashret.losses.default_margin`).
        mining: triplet selection, ``all`` valid in-batch triplets or ``semi-hard`` ones.
        quant_weight: weight of the triplet method's quantization penalty.
        classes_per_batch, images_per_class: P and K of the triplet method's class-balanced
            batches (``None``: filled so that ``P * K`` is about ``batch_size``).
        class_names: names of the labels ``0 .. max`` of an IDX dataset (``mnist`` only), in label
            order (``None``: its ``classes.txt``, else the digits; :func:`hashret.data.read_mnist`).
    """

    dataset: str = "digits"
    data_dir: str | None = None
    method: str = "dlbhc"
    backbone: str | None = None
    bits: int = 48
    epochs: int | None = None
    patience: int | None = None
    batch_size: int | None = None
    lr: float | None = None
    momentum: float | None = None
    weight_decay: float | None = None
    recipe: str = "sgd"
    label_smoothing: float = 0.2
    val_fraction: float = 0.1
    seed: int = 0
    pad: int | None = None
    flip: bool | None = None
    tta_flip: bool | None = None
    alternate_flip: bool | None = None
    tta_translate: int | None = None
    image_size: int | None = None
    input_size: int | None = None
    channels_last: bool = True
    threads: int | None = None
    test_fraction: float = 0.2
    on_bad_image: str = "error"
    device: str = "auto"
    precision: str = "auto"
    pretrained: str | None = None
    freeze_backbone: bool = False
    margin: float | None = None
    mining: str = "all"
    quant_weight: float = 0.0
    classes_per_batch: int | None = None
    images_per_class: int | None = None
    class_names: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        check_bits(self.bits)
        if self.method not in METHODS:
            raise ValueError(f"unknown --method {self.method!r}: choose one of {', '.join(sorted(METHODS))}")
        if self.mining not in MINING:
            raise ValueError(f"--mining must be one of {', '.join(MINING)}, got {self.mining!r}")
        if self.margin is not None and not self.margin > 0:
            raise ValueError(f"--margin must be a positive number of bits, got {self.margin}")
        if not self.quant_weight >= 0:
            raise ValueError(f"--quant-weight must be >= 0, got {self.quant_weight}")
        for name in ("classes_per_batch", "images_per_class"):
            v = getattr(self, name)
            if v is not None and v < 2:
                raise ValueError(f"--{name.replace('_', '-')} must be >= 2 (a triplet needs two classes and "
                                 f"a positive pair), got {v}")
        if not 0.0 <= self.val_fraction < 0.5:
            raise ValueError(f"--val-fraction must be in [0, 0.5), got {self.val_fraction}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"--precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")
        if self.recipe not in RECIPES:
            raise ValueError(f"--recipe must be one of {', '.join(RECIPES)}, got {self.recipe!r}")
        check_on_bad_image(self.on_bad_image)
        if self.class_names is not None:
            if self.dataset != "mnist":
                raise ValueError(f"--class-names names the labels of IDX files (--dataset mnist); "
                                 f"{self.dataset} takes its class names from its own folders or files: "
                                 "drop --class-names")
            self.class_names = check_class_names(self.class_names, "--class-names")  # a JSON list -> tuple

    def resolved(self, natural: bool) -> TrainConfig:
        """A copy with every ``None`` filled in from the recipe and dataset defaults."""
        d = asdict(self)
        dataset = dict(DATASET_DEFAULTS.get(self.dataset, DATASET_DEFAULTS["folder"]))
        if self.recipe != "sgd":
            dataset.pop("lr")  # the datasets' learning rates are in the sgd recipe's units
        for k, v in {**dataset, **RECIPE_DEFAULTS[self.recipe]}.items():
            if d[k] is None:
                d[k] = v
        if self.lr is None:  # the defaults are DLBHC's; other losses have other gradient scales
            d["lr"] *= get_training_method(self.method).lr_scale
        if d["flip"] is None:
            d["flip"] = natural
        d["device"] = resolve_device(d["device"])
        d["precision"] = resolve_precision(d["precision"], d["device"])
        if d["tta_flip"] is None:
            d["tta_flip"] = natural and d["flip"]
        if d["alternate_flip"] is None:
            d["alternate_flip"] = False
        if self.tta_translate is None and not natural:
            d["tta_translate"] = 0
        d["tta_translate"] = int(d["tta_translate"] or 0)
        if d["tta_translate"] < 0:
            raise ValueError(f"--tta-translate must be >= 0 pixels, got {d['tta_translate']}")
        for k in ("epochs", "batch_size", "patience"):
            if d[k] is not None and d[k] < 1:
                raise ValueError(f"--{k.replace('_', '-')} must be >= 1, got {d[k]}")
        return TrainConfig(**d)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        """A saved config; options added since it was saved take the values that reproduce the
        run (:data:`ADDED_OPTIONS`)."""
        known = {f.name for f in fields(cls)}
        return cls(**{**ADDED_OPTIONS, **{k: v for k, v in d.items() if k in known}})


#: options added after runs were first saved, with what a run saved without them did
ADDED_OPTIONS: dict[str, Any] = {"alternate_flip": False, "tta_translate": 0}
