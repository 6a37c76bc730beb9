"""Stanford Dogs (120 breeds, 20,580 photos) with its official split.

Layout, as ``images.tar`` and ``lists.tar`` extract (``ROOT`` holds both)::

    ROOT/Images/<wnid>-<breed>/<image>.jpg       e.g. Images/n02085620-Chihuahua/n02085620_5927.jpg
    ROOT/train_list.mat, ROOT/test_list.mat      (or in ROOT/lists/; 12,000 / 8,580 images)

The ``.mat`` lists are read with SciPy (their ``file_list`` field); plain-text
``train_list.txt`` / ``test_list.txt`` with one path below ``Images/`` per line (optionally
followed by a label) work too. A breed is its folder name; classes are the folders sorted,
which is the order of the official 1-based labels. The training images are the retrieval
database, the test images the queries. Photos differ in size: they are resized (224 px by
default).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from hashret.data.arrays import DatasetSplits
from hashret.data.cache import CacheDir
from hashret.data.listed import Listing, read_listing

DOGS_URL = "http://vision.stanford.edu/aditya86/ImageNetDogs/"
DOGS_LAYOUT = (
    "a folder with Images/<breed>/<image>.jpg (images.tar) and train_list.mat + test_list.mat "
    f"(lists.tar), both from {DOGS_URL}"
)


def _split_file(root: Path, split: str) -> Path:
    for folder in (root, root / "lists"):
        for ext in (".mat", ".txt"):
            if (folder / f"{split}_list{ext}").is_file():
                return folder / f"{split}_list{ext}"
    raise FileNotFoundError(
        f"Stanford Dogs split file {split}_list.mat is missing from {root} (and {root / 'lists'}): "
        f"download lists.tar from {DOGS_URL} and extract it next to Images/ (hashret uses the "
        "official train/test split, never its own)"
    )


def _read_list(path: Path) -> list[str]:
    """Image paths below ``Images/`` listed in a ``.mat`` (``file_list``) or ``.txt`` file."""
    if path.suffix == ".mat":
        try:
            from scipy.io import loadmat
        except ImportError as e:  # scipy comes with scikit-learn, a hashret dependency
            raise ImportError(f"reading {path} needs SciPy: pip install scipy") from e
        try:
            entries = loadmat(str(path))["file_list"]
        except (KeyError, ValueError, OSError) as e:
            raise ValueError(f"{path} is not a Stanford Dogs list (no readable file_list: {e})") from e
        # a MATLAB cell array [n, 1] of 1-element string arrays
        return [str(np.asarray(e).ravel()[0]).strip() for e in np.asarray(entries).ravel()]
    lines = [line.split()[0] for line in path.read_text().splitlines() if line.strip()]
    return [p.removeprefix("Images/") for p in lines]


def list_dogs(root: str | Path) -> Listing:
    """Parse the split lists of Stanford Dogs into a :class:`Listing` (no image is read).

    Raises:
        FileNotFoundError: no ``Images/`` folder, or a split list is missing.
        ValueError: a path that is not ``<breed>/<image>``, or one listed in both splits.
    """
    root = Path(root).expanduser()
    if not (root / "Images").is_dir():
        raise FileNotFoundError(f"{root} is not a Stanford Dogs folder (no Images/): expected {DOGS_LAYOUT}")
    files = (_split_file(root, "train"), _split_file(root, "test"))
    train, test = (_read_list(f) for f in files)
    both = set(train) & set(test)
    if both:
        raise ValueError(
            f"{len(both)} image(s) are in both {files[0].name} and {files[1].name} (e.g. {sorted(both)[0]}): "
            "the lists come from different copies; re-extract lists.tar"
        )
    paths = train + test
    bad = [p for p in paths if p.count("/") != 1]
    if bad:
        raise ValueError(f"{files[0].parent}: listed paths must be <breed>/<image>, got {bad[0]!r}")
    classes = tuple(sorted({p.split("/")[0] for p in paths}))
    index = {c: k for k, c in enumerate(classes)}
    return Listing(
        images_dir=root / "Images",
        paths=tuple(paths),
        labels=np.array([index[p.split("/")[0]] for p in paths], dtype=np.int64),
        is_train=np.arange(len(paths)) < len(train),
        classes=classes,
        list_files=files,
    )


def read_dogs(root: str | Path, *, size: int | tuple[int, int] | None = None,
              on_bad_image: str = "error", cache_dir: CacheDir = None) -> DatasetSplits:
    """Stanford Dogs with its official split: train = database, test = queries.

    Args:
        root: the folder holding ``Images/`` and the split lists.
        size: resize every photo to ``(h, w)`` or a square side (``None``: 224).
        on_bad_image: ``"error"`` or ``"skip"`` for a missing or unreadable photo.
        cache_dir: decoded-image cache (None: default folder, False: none).

    Returns:
        ``DatasetSplits(name="dogs")`` with ``uint8[n, h, w, 3]`` images.
    """
    return read_listing(list_dogs(root), name="dogs", size=size, on_bad_image=on_bad_image,
                        cache_dir=cache_dir)
