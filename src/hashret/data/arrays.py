"""In-memory labelled image collections: :class:`ImageArray` and :class:`DatasetSplits`.

Every reader in :mod:`hashret.data` returns a :class:`DatasetSplits`; everything downstream
(training, encoding, evaluation) consumes these two types and nothing else.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True, repr=False)
class ImageArray:
    """A labelled set of equally sized images, held in memory.

    Attributes:
        images: ``uint8[n, h, w, c]``, C-contiguous; ``c`` is 1 (grey) or 3 (RGB).
        labels: ``int64[n]``, class indices in ``[0, len(classes))``.
        ids: numpy unicode array ``str[n]``: a stable identifier of each item's source,
            e.g. ``"train/cat/0001.jpg"``, ``"mnist/train/123"``, ``"cifar10/data_batch_1/57"``.
        classes: the class names; ``classes[labels[i]]`` is the class of item ``i``.

    Raises:
        ValueError: on construction, when a field has the wrong type, dtype or shape, the
            lengths disagree, or a label is out of range. A non-contiguous ``images`` array
            is copied into a contiguous one, and ``classes`` becomes a tuple.
    """

    images: np.ndarray
    labels: np.ndarray
    ids: np.ndarray
    classes: tuple[str, ...]

    def __post_init__(self) -> None:
        images, labels, ids = self.images, self.labels, self.ids
        if not isinstance(images, np.ndarray) or images.dtype != np.uint8 or images.ndim != 4:
            raise ValueError(
                "ImageArray.images must be a uint8 numpy array [n, h, w, c], got "
                f"{_describe(images)}; "
                "convert with np.asarray(x, dtype=np.uint8) and add a channel axis for grey images"
            )
        if images.shape[3] not in (1, 3):
            raise ValueError(
                f"ImageArray.images has {images.shape[3]} channels (shape {images.shape}); "
                "it must be 1 (grey) or 3 (RGB), channels last"
            )
        if not images.flags.c_contiguous:
            object.__setattr__(self, "images", np.ascontiguousarray(images))
        n = images.shape[0]
        if not isinstance(labels, np.ndarray) or labels.dtype != np.int64 or labels.shape != (n,):
            raise ValueError(
                f"ImageArray.labels must be an int64 numpy array of shape ({n},) (one per image), "
                f"got {_describe(labels)}; convert with np.asarray(labels, dtype=np.int64)"
            )
        if not isinstance(ids, np.ndarray) or ids.dtype.kind != "U" or ids.shape != (n,):
            raise ValueError(
                f"ImageArray.ids must be a numpy unicode array of shape ({n},) (one per image), "
                f"got {_describe(ids)}; convert with np.asarray(ids, dtype=str)"
            )
        if isinstance(self.classes, str) or not isinstance(self.classes, Sequence):
            raise ValueError(
                f"ImageArray.classes must be a sequence of class names, got {self.classes!r}"
            )
        classes = tuple(self.classes)
        if not all(isinstance(c, str) for c in classes) or len(set(classes)) != len(classes):
            raise ValueError(
                f"ImageArray.classes must be distinct strings, got {classes!r}"
            )
        object.__setattr__(self, "classes", classes)
        if n and (labels.min() < 0 or labels.max() >= len(classes)):
            raise ValueError(
                f"ImageArray.labels must lie in [0, {len(classes)}) for {len(classes)} classes, "
                f"got values from {labels.min()} to {labels.max()}"
            )

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def __repr__(self) -> str:
        return (
            f"ImageArray(n={len(self)}, image_shape={tuple(self.images.shape[1:])}, "
            f"classes={len(self.classes)})"
        )

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """``(h, w, c)`` of every image."""
        h, w, c = self.images.shape[1:]
        return int(h), int(w), int(c)

    def subset(self, index: np.ndarray) -> ImageArray:
        """The items at ``index`` (integer positions ``int[m]`` or a boolean mask ``bool[n]``).

        Returns a new :class:`ImageArray` with copies of the selected rows, in ``index`` order,
        and the same ``classes``.
        """
        index = np.asarray(index)
        if index.dtype == bool:
            if index.shape != (len(self),):
                raise ValueError(
                    f"boolean subset mask has shape {index.shape}, expected ({len(self)},)"
                )
        elif index.size == 0:
            index = index.astype(np.int64)
        elif index.dtype.kind not in "iu" or index.ndim != 1:
            raise ValueError(
                "subset index must be a 1-D integer array or a boolean mask, got "
                f"{_describe(index)}"
            )
        return ImageArray(
            images=self.images[index], labels=self.labels[index], ids=self.ids[index],
            classes=self.classes,
        )


@dataclass(frozen=True, repr=False)
class DatasetSplits:
    """A dataset as the DLBHC protocol uses it.

    Attributes:
        name: ``"mnist"``, ``"cifar10"``, ``"digits"``, ``"folder"``, ``"cub200"`` or ``"dogs"``.
        train: the training set, which is also the retrieval database.
        test: the test set, whose items are the queries.
        natural: True for natural photos (flip / crop augmentation applies), False for digits.
        source: a human-readable description of where the data came from (a path).

    Raises:
        ValueError: when ``train`` and ``test`` disagree on classes or image shape.
    """

    name: str
    train: ImageArray
    test: ImageArray
    natural: bool
    source: str

    def __post_init__(self) -> None:
        if not isinstance(self.train, ImageArray) or not isinstance(self.test, ImageArray):
            raise ValueError("DatasetSplits.train and .test must both be ImageArray instances")
        if self.train.classes != self.test.classes:
            raise ValueError(
                f"{self.name}: train and test must share one class list, got "
                f"{self.train.classes!r} and {self.test.classes!r}"
            )
        if self.train.image_shape != self.test.image_shape:
            raise ValueError(
                f"{self.name}: train images are {self.train.image_shape} (h, w, c) but test "
                f"images are {self.test.image_shape}; resize them to one size"
            )

    @property
    def classes(self) -> tuple[str, ...]:
        """The class names shared by both splits."""
        return self.train.classes

    def __repr__(self) -> str:
        return (
            f"DatasetSplits(name={self.name!r}, train={self.train!r}, test={self.test!r}, "
            f"natural={self.natural}, source={self.source!r})"
        )


def _describe(x: object) -> str:
    if isinstance(x, np.ndarray):
        return f"{x.dtype} array of shape {x.shape}"
    return type(x).__name__
