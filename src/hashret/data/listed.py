"""A labelled collection given as lists: image paths, their classes and their split.

The fine-grained sets ship their official split as files that list images
(:mod:`hashret.data.cub`, :mod:`hashret.data.dogs`); their readers parse those files into a
:class:`Listing` and this module decodes the images once (resized to a common size, since
their photos differ in size) into a cached :class:`DatasetSplits`.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hashret.data.arrays import DatasetSplits, ImageArray
from hashret.data.cache import CacheDir, cached
from hashret.data.folder import check_on_bad_image, decode_tree
from hashret.data.image import check_size
from hashret.data.tree import ImageTree

#: side the fine-grained sets are resized to when no size is given (the ImageNet nets' input)
DEFAULT_SIZE = 224


@dataclass(frozen=True)
class Listing:
    """What a dataset's list files say.

    Attributes:
        images_dir: the folder the paths are relative to.
        paths: image paths (POSIX, relative to ``images_dir``).
        labels: class index of each path, in ``[0, len(classes))``.
        is_train: whether each path is in the training split (else the test split).
        classes: class names.
        list_files: the files the listing was read from (their contents key the cache).
    """

    images_dir: Path
    paths: tuple[str, ...]
    labels: np.ndarray
    is_train: np.ndarray
    classes: tuple[str, ...]
    list_files: tuple[Path, ...]


def _stat(path: Path) -> tuple[int, int]:
    try:
        st = os.stat(path)
    except OSError:
        return (-1, -1)  # missing: decoding reports it (or skips it with on_bad_image="skip")
    return (st.st_size, st.st_mtime_ns)


def _digest(files: tuple[Path, ...]) -> list[str]:
    return [hashlib.sha256(f.read_bytes()).hexdigest() for f in files]


def read_listing(listing: Listing, *, name: str, size: int | tuple[int, int] | None = None,
                 on_bad_image: str = "error", cache_dir: CacheDir = None) -> DatasetSplits:
    """Decode the images of a :class:`Listing` into train / test :class:`ImageArray`.

    Args:
        listing: the parsed list files.
        name: the dataset name (``"cub200"``, ``"dogs"``).
        size: ``(h, w)`` or a side to resize every image to (``None``: :data:`DEFAULT_SIZE`).
        on_bad_image: ``"error"`` or ``"skip"`` for missing or unreadable images.
        cache_dir: as in :func:`hashret.data.cached` (None: the default cache, False: none).

    Returns:
        ``DatasetSplits(name=name, natural=True)``; ids are the listed paths.

    Raises:
        ValueError: an unreadable image (``on_bad_image="error"``), or an empty split.
    """
    check_on_bad_image(on_bad_image)
    hw = check_size(DEFAULT_SIZE if size is None else size)
    root = listing.images_dir.resolve()
    tree = ImageTree(root=root, is_zip=False, prefix="", paths=listing.paths,
                     stats=tuple(_stat(root / p) for p in listing.paths))
    key = {"reader": name, "source": str(root), "fingerprint": tree.fingerprint(),
           "lists": _digest(listing.list_files), "size": hw, "on_bad_image": on_bad_image}

    def build() -> DatasetSplits:
        images, kept = decode_tree(tree, listing.paths, hw, on_bad_image)
        if images.shape[3] == 1:  # an all-grey collection: the nets take RGB
            images = np.ascontiguousarray(np.repeat(images, 3, axis=3))
        full = ImageArray(images=images, labels=listing.labels[kept].astype(np.int64),
                          ids=np.array(listing.paths)[kept], classes=listing.classes)
        is_train = listing.is_train[kept]
        if is_train.all() or not is_train.any():
            raise ValueError(
                f"{name}: the {'test' if is_train.all() else 'training'} split is empty "
                f"({len(kept)} readable images); check the split files {[str(f) for f in listing.list_files]}"
            )
        return DatasetSplits(name=name, train=full.subset(np.flatnonzero(is_train)),
                             test=full.subset(np.flatnonzero(~is_train)), natural=True,
                             source=f"{name} images in {root}")

    return cached(key, build, cache_dir)
