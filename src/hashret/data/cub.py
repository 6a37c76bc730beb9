"""CUB-200-2011 (Caltech-UCSD Birds, 200 species, 11,788 photos) with its official split.

Layout, as ``CUB_200_2011.tgz`` extracts (``ROOT`` is ``CUB_200_2011/`` or its parent)::

    ROOT/images.txt               "<image id> <path below images/>"
    ROOT/image_class_labels.txt   "<image id> <class id, 1-based>"
    ROOT/train_test_split.txt     "<image id> <1: train, 0: test>"   (5,994 / 5,794 images)
    ROOT/classes.txt              "<class id> <name>"  (optional: else the images' folder names)
    ROOT/images/<class folder>/<image>.jpg

The training images are the retrieval database, the test images the queries (the DNNH
protocol of the seed). Photos differ in size: they are resized (224 px by default).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from hashret.data.arrays import DatasetSplits
from hashret.data.cache import CacheDir
from hashret.data.listed import Listing, read_listing

CUB_URL = "https://data.caltech.edu/records/65de6-vp158 (CUB_200_2011.tgz)"
CUB_FILES = ("images.txt", "image_class_labels.txt", "train_test_split.txt")
CUB_LAYOUT = (
    "the extracted CUB_200_2011 folder (or its parent) with images.txt, image_class_labels.txt, "
    f"train_test_split.txt and images/<class>/<image>.jpg, from {CUB_URL}"
)


def find_cub_root(path: str | Path) -> Path:
    """``path`` or ``path/CUB_200_2011``, whichever holds ``images.txt``.

    Raises:
        FileNotFoundError: neither does (the message says what is expected).
    """
    path = Path(path).expanduser()
    for cand in (path, path / "CUB_200_2011"):
        if (cand / "images.txt").is_file():
            return cand
    if path.is_file():
        raise FileNotFoundError(f"{path} is a file: extract it (tar xzf) and pass {CUB_LAYOUT}")
    raise FileNotFoundError(f"{path} is not a CUB-200-2011 folder (no images.txt): expected {CUB_LAYOUT}")


def _table(path: Path, what: str) -> dict[int, str]:
    """``"<id> <value>"`` lines -> ``{id: value}``."""
    if not path.is_file():
        raise FileNotFoundError(
            f"CUB-200-2011 {what} file {path} is missing: it ships in CUB_200_2011.tgz ({CUB_URL}); "
            "extract the whole archive (hashret uses the official train/test split, never its own)"
        )
    out: dict[int, str] = {}
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        key, _, value = line.strip().partition(" ")
        if not key.isdigit() or not value:
            raise ValueError(f"{path}:{n}: expected '<image id> <value>', got {line!r}")
        out[int(key)] = value.strip()
    return out


def list_cub200(root: str | Path) -> Listing:
    """Parse the list files of CUB-200-2011 into a :class:`Listing` (no image is read).

    Raises:
        FileNotFoundError: the folder or one of :data:`CUB_FILES` is missing.
        ValueError: a malformed line, or ids that the files do not all list.
    """
    root = find_cub_root(root)
    files = {name: root / name for name in CUB_FILES}
    paths = _table(files["images.txt"], "image list")
    labels = _table(files["image_class_labels.txt"], "class label")
    split = _table(files["train_test_split.txt"], "train/test split")
    ids = sorted(paths)
    lacking = [i for i in ids if i not in labels or i not in split]
    if lacking:
        raise ValueError(
            f"{len(lacking)} image id(s) of {files['images.txt']} have no class label or split "
            f"(first: {lacking[0]}): the list files come from different copies; re-extract CUB_200_2011.tgz"
        )
    if any(split[i] not in ("0", "1") for i in ids):
        raise ValueError(f"{files['train_test_split.txt']}: the split column must be 0 (test) or 1 (train)")
    class_ids = sorted({int(labels[i]) for i in ids})
    names_file = root / "classes.txt"
    names = _table(names_file, "class name") if names_file.is_file() else {}
    folder = {int(labels[i]): paths[i].split("/")[0] for i in ids}
    classes = tuple(names.get(c, folder[c]) for c in class_ids)
    index = {c: k for k, c in enumerate(class_ids)}
    return Listing(
        images_dir=root / "images",
        paths=tuple(paths[i] for i in ids),
        labels=np.array([index[int(labels[i])] for i in ids], dtype=np.int64),
        is_train=np.array([split[i] == "1" for i in ids]),
        classes=classes,
        list_files=tuple(files.values()),
    )


def read_cub200(root: str | Path, *, size: int | tuple[int, int] | None = None,
                on_bad_image: str = "error", cache_dir: CacheDir = None) -> DatasetSplits:
    """CUB-200-2011 with its official split: train = database, test = queries.

    Args:
        root: the ``CUB_200_2011`` folder or its parent.
        size: resize every photo to ``(h, w)`` or a square side (``None``: 224).
        on_bad_image: ``"error"`` or ``"skip"`` for a missing or unreadable photo.
        cache_dir: decoded-image cache (None: default folder, False: none).

    Returns:
        ``DatasetSplits(name="cub200")`` with ``uint8[n, h, w, 3]`` images.
    """
    return read_listing(list_cub200(root), name="cub200", size=size, on_bad_image=on_bad_image,
                        cache_dir=cache_dir)
