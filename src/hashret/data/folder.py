"""A labelled collection from a folder of class folders (or a ``.zip`` of one).

Layouts (``ROOT`` is a folder or a ``.zip``, optionally with everything under one top-level
folder, as in ``cifar10-jpeg.zip: cifar10-jpeg/train/cat/0001.jpg``):

* ``ROOT/train/<class>/<image>`` and ``ROOT/test/<class>/<image>``: the given split;
* ``ROOT/<class>/<image>``: a seeded stratified split puts ``test_fraction`` of every
  class in the test set.

Classes are the class folder names sorted alphabetically (label ``i`` is ``classes[i]``);
files are sorted by path, so the result is deterministic. Decoded collections are cached
(:mod:`hashret.data.cache`), since decoding tens of thousands of JPEGs takes a while.
"""

from __future__ import annotations

import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hashret.data.arrays import DatasetSplits, ImageArray
from hashret.data.cache import CacheDir, cached, load_cached
from hashret.data.image import BadImageError, check_size, decode_image, image_to_array, is_grey
from hashret.data.splits import stratified_split
from hashret.data.tree import (
    IMAGE_EXTENSIONS,
    SPLIT_NAMES,
    ImageTree,
    scan_image_tree,
    zip_fingerprint,
)

ON_BAD_IMAGE = ("error", "skip")


def check_on_bad_image(value: str) -> str:
    """``value`` if it is one of :data:`ON_BAD_IMAGE`, else a ValueError in CLI terms."""
    if value not in ON_BAD_IMAGE:
        raise ValueError(f"--on-bad-image must be error or skip, got {value!r}")
    return value

#: what an image folder is, as a noun phrase (for "expected ...", "--data-dir: ...")
LAYOUT = (
    "an image folder ROOT/<class>/<image> (split into train and test by a seeded "
    "stratified split) or ROOT/train/<class>/<image> + ROOT/test/<class>/<image>; ROOT may be "
    "a .zip of such a tree, optionally under one top-level folder; image files end in "
    + ", ".join(sorted(IMAGE_EXTENSIONS))
)
LAYOUT_HELP = "expected " + LAYOUT


@dataclass(frozen=True)
class _Layout:
    paths: tuple[str, ...]  # image paths below the tree's prefix, sorted
    class_of: tuple[str, ...]  # class folder of each path
    split_of: tuple[str, ...]  # "train" / "test" of each path; "" for an unsplit folder
    classes: tuple[str, ...]  # sorted class names
    presplit: bool


def _layout(tree: ImageTree) -> _Layout:
    """Which files are images of which class (and split); warns about files it ignores."""
    parts = [p.split("/") for p in tree.paths]
    presplit = any(len(q) == 3 and q[0] in SPLIT_NAMES for q in parts)
    if presplit:
        chosen = [q for q in parts if len(q) == 3 and q[0] in SPLIT_NAMES]
        present = {q[0] for q in chosen}
        if present != set(SPLIT_NAMES):
            have, lack = sorted(present)[0], sorted(set(SPLIT_NAMES) - present)[0]
            raise ValueError(
                f"{tree.root} has images in {have}/<class>/ but none in {lack}/<class>/: add "
                f"the {lack} images, or move the class folders up into ROOT to get a seeded "
                "stratified split"
            )
    else:
        chosen = [q for q in parts if len(q) == 2]
    if not chosen:
        raise ValueError(f"found no images in class folders under {tree.root}: {LAYOUT_HELP}")
    if len(chosen) < len(parts):
        ignored = sorted({"/".join(q) for q in parts} - {"/".join(q) for q in chosen})
        warnings.warn(
            f"ignored {len(ignored)} image file(s) of {tree.root} outside the "
            f"{'train|test/<class>/<image>' if presplit else '<class>/<image>'} layout, "
            f"e.g. {', '.join(ignored[:3])}",
            stacklevel=3,
        )
    return _Layout(
        paths=tuple("/".join(q) for q in chosen),
        class_of=tuple(q[-2] for q in chosen),
        split_of=tuple(q[0] if presplit else "" for q in chosen),
        classes=tuple(sorted({q[-2] for q in chosen})),
        presplit=presplit,
    )


def _display_name(tree: ImageTree, path: str) -> str:
    if tree.is_zip:
        return f"{tree.prefix}{path} in {tree.root}"
    return str(tree.root / tree.prefix / path)


def decode_tree(
    tree: ImageTree, paths: tuple[str, ...], size: tuple[int, int] | None, on_bad_image: str
) -> tuple[np.ndarray, np.ndarray]:
    """Decode ``paths`` of ``tree`` into one array.

    Images are converted to RGB, or kept grey when every image is grey, and resized to
    ``size`` ``(h, w)`` (bilinear) when given.

    Returns:
        ``(images uint8[m, h, w, c], kept int64[m])``: ``kept`` are the positions in ``paths``
        that decoded (all of them unless ``on_bad_image == "skip"``).

    Raises:
        ValueError: an image is unreadable (``on_bad_image == "error"``), sizes differ while
            ``size`` is None, or no image is readable.
    """
    out: np.ndarray | None = None
    first = ""
    kept: list[int] = []
    bad: list[str] = []
    all_grey = True
    with tree.reader() as read:
        for i, path in enumerate(paths):
            name = _display_name(tree, path)
            try:
                try:
                    data = read(path)
                except (OSError, zipfile.BadZipFile, EOFError) as e:
                    raise BadImageError(f"cannot read {name} ({e})") from e
                img = decode_image(data, name)
            except BadImageError:
                if on_bad_image == "error":
                    raise
                bad.append(name)
                continue
            all_grey = all_grey and is_grey(img)
            arr = image_to_array(img, "RGB", size)  # uint8[h, w, 3]
            if out is None:
                out, first = np.empty((len(paths), *arr.shape), dtype=np.uint8), name
            elif arr.shape != out.shape[1:]:
                raise ValueError(
                    f"images differ in size: {name} is {arr.shape[1]}x{arr.shape[0]} (w x h) but "
                    f"{first} is {out.shape[2]}x{out.shape[1]}; pass --image-size N to resize every "
                    "image to N x N on reading"
                )
            out[len(kept)] = arr
            kept.append(i)
    if bad:
        more = " ..." if len(bad) > 5 else ""
        warnings.warn(
            f"skipped {len(bad)} unreadable image(s) of {tree.root}: {', '.join(bad[:5])}{more}",
            stacklevel=2,
        )
    if out is None:
        raise ValueError(f"none of the {len(paths)} image files of {tree.root} could be decoded")
    images = out[: len(kept)]
    # all grey -> keep one channel: [m, h, w, 3] -> [m, h, w, 1]
    images = np.ascontiguousarray(images[..., :1]) if all_grey else images
    if len(kept) < len(paths) and not all_grey:
        images = images.copy()  # drop the unused tail of the preallocated buffer
    return images, np.asarray(kept, dtype=np.int64)


def _build(
    tree: ImageTree, layout: _Layout, seed: int, test_fraction: float,
    size: tuple[int, int] | None, on_bad_image: str,
) -> DatasetSplits:
    images, kept = decode_tree(tree, layout.paths, size, on_bad_image)
    index = {c: i for i, c in enumerate(layout.classes)}
    labels = np.array([index[c] for c in layout.class_of], dtype=np.int64)[kept]
    ids = np.array(layout.paths)[kept]
    full = ImageArray(images=images, labels=labels, ids=ids, classes=layout.classes)
    if layout.presplit:
        is_test = np.array([s == "test" for s in layout.split_of])[kept]
        train_idx, test_idx = np.flatnonzero(~is_test), np.flatnonzero(is_test)
    else:
        train_idx, test_idx = stratified_split(labels, test_fraction, seed)
    if len(train_idx) == 0 or len(test_idx) == 0:
        raise ValueError(
            f"{tree.root} gives an empty {'training' if len(train_idx) == 0 else 'test'} set "
            f"({len(kept)} readable images); add images (a class needs at least 2 images to "
            f"appear in both sets): {LAYOUT_HELP}"
        )
    kind = "zip archive" if tree.is_zip else "folder"
    return DatasetSplits(
        name="folder",
        train=full.subset(train_idx),
        test=full.subset(test_idx),
        natural=images.shape[3] == 3,
        source=f"image {kind} {tree.root}" + (f" (under {tree.prefix})" if tree.prefix else ""),
    )


def read_image_folder(
    root: str | Path,
    *,
    seed: int = 0,
    test_fraction: float = 0.2,
    size: int | tuple[int, int] | None = None,
    on_bad_image: str = "error",
    cache_dir: CacheDir = None,
) -> DatasetSplits:
    """Read a labelled image collection from class folders (see the module docstring).

    Args:
        root: the folder, or a ``.zip`` holding the tree (read in place, not extracted).
        seed: seed of the stratified split (unsplit folders only).
        test_fraction: share of each class put in the test set (unsplit folders only).
        size: ``(h, w)`` (or one side for squares) to resize every image to, bilinear;
            None keeps the stored size, which must then be the same for all images.
        on_bad_image: ``"error"`` raises on an unreadable image; ``"skip"`` leaves it out
            and warns with the count and the first few names.
        cache_dir: where decoded collections are cached; None for ``$HASHRET_CACHE`` or
            ``~/.cache/hashret``, False to decode every time.

    Returns:
        ``DatasetSplits(name="folder")`` with ``uint8[n, h, w, 3]`` images (``[..., 1]`` when
        every image is greyscale), ids the image paths below ROOT (``"train/cat/0001.jpg"``)
        and ``natural`` True for colour images.

    Raises:
        FileNotFoundError: ``root`` does not exist.
        ValueError: the layout is not recognised, there are no images, an image is unreadable
            (with ``on_bad_image="error"``), or sizes differ while ``size`` is None.
    """
    check_on_bad_image(on_bad_image)
    hw = check_size(size)
    if not 0.0 < float(test_fraction) < 1.0:
        raise ValueError(f"test_fraction must be strictly between 0 and 1, got {test_fraction}")
    path = Path(root).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"image folder {root} does not exist: {LAYOUT_HELP}")
    path = path.resolve()

    def key_parts(fingerprint: list, presplit: bool) -> dict:
        parts = {
            "reader": "folder", "source": str(path), "fingerprint": fingerprint,
            "size": hw, "on_bad_image": on_bad_image,
        }
        if not presplit:  # the seed only matters for a seeded split
            parts |= {"seed": int(seed), "test_fraction": float(test_fraction)}
        return parts

    if cache_dir is not False and path.is_file():
        # a zip's fingerprint needs no listing of its 10^4+ members: look up both layouts
        for presplit in (True, False):
            hit = load_cached(key_parts(zip_fingerprint(path), presplit), cache_dir)
            if hit is not None:
                return hit
    tree = scan_image_tree(path)
    if not tree.paths:
        raise ValueError(f"found no image files in {tree.root}: {LAYOUT_HELP}")
    layout = _layout(tree)
    return cached(
        key_parts(tree.fingerprint(), layout.presplit),
        lambda: _build(tree, layout, seed, float(test_fraction), hw, on_bad_image),
        cache_dir,
    )
