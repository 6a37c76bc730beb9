"""CIFAR-10 from the official python pickles (``cifar-10-batches-py``), and a downloader.

Each batch pickle is a dict with bytes keys: ``b"data"`` ``uint8[n, 3072]`` (the red, then
green, then blue 32x32 plane of each image, row-major) and ``b"labels"`` (a list of ints);
``batches.meta`` holds ``b"label_names"``. The pickles are read with a restricted unpickler
that only rebuilds numpy arrays and plain containers, so a tampered file cannot run code.
"""

from __future__ import annotations

import pickle
import tarfile
from pathlib import Path
from typing import Any

import numpy as np

from hashret.data.arrays import DatasetSplits, ImageArray
from hashret.data.download import fetch_file

CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
BATCH_DIR = "cifar-10-batches-py"
TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_BATCH = "test_batch"
META_FILE = "batches.meta"
SIDE = 32


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickles dicts, lists, bytes and numpy arrays; refuses every other global."""

    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
        ("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer"),
        ("numpy", "ndarray"), ("numpy", "dtype"),
        # how Python 3 writes bytes in protocol <= 2 pickles (re-saved copies of the files)
        ("_codecs", "encode"), ("builtins", "bytes"),
    }

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(
                f"refusing to load {module}.{name}: a CIFAR-10 batch holds only numpy arrays "
                "and lists"
            )
        if module == "numpy":
            return getattr(np, name)
        if module in ("_codecs", "builtins"):
            return super().find_class(module, name)
        from numpy._core import multiarray, numeric  # numpy.core.* are deprecated aliases

        return getattr(multiarray if module.endswith("multiarray") else numeric, name)


def _layout_help() -> str:
    files = ", ".join((*TRAIN_BATCHES, TEST_BATCH, META_FILE))
    return (
        f"the CIFAR-10 python version is a folder {BATCH_DIR}/ with {files}; download and "
        f"extract {CIFAR10_URL} (`hashret download cifar10 --out DIR` does both); an image "
        "folder or .zip with train/<class>/ and test/<class>/ also works"
    )


def find_batch_dir(data_dir: str | Path) -> Path | None:
    """The ``cifar-10-batches-py`` folder: ``data_dir`` itself or its child, else None."""
    data_dir = Path(data_dir).expanduser()
    for folder in (data_dir, data_dir / BATCH_DIR):
        if (folder / TRAIN_BATCHES[0]).is_file():
            return folder
    return None


def _unpickle(path: Path) -> dict:
    try:
        with open(path, "rb") as f:
            obj = _ArrayUnpickler(f, encoding="bytes").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError) as e:
        raise ValueError(
            f"{path} is not a readable CIFAR-10 pickle ({type(e).__name__}: {e}); "
            f"download and extract {CIFAR10_URL} again"
        ) from e
    if not isinstance(obj, dict):
        raise ValueError(f"{path} does not hold a dict, so it is not a CIFAR-10 batch")
    return obj


def _read_batch(path: Path, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """``(images uint8[n, 32, 32, 3], labels int64[n])`` of one batch file."""
    batch = _unpickle(path)
    if b"data" not in batch or b"labels" not in batch:
        raise ValueError(
            f"{path} lacks the b'data' / b'labels' entries of a CIFAR-10 batch "
            f"(keys: {sorted(batch)}); is this CIFAR-100 or another file?"
        )
    data = np.asarray(batch[b"data"])
    labels = np.asarray(batch[b"labels"], dtype=np.int64)
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * SIDE * SIDE:
        raise ValueError(
            f"{path}: b'data' is {data.dtype} {data.shape}, expected uint8 [n, {3 * SIDE * SIDE}]"
        )
    if labels.shape != (len(data),):
        raise ValueError(
            f"{path}: {len(labels)} labels for {len(data)} images; download the data again"
        )
    if len(labels) and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(f"{path}: labels outside 0..{num_classes - 1}")
    # channel-major planes -> [n, 3, 32, 32] -> channels last [n, 32, 32, 3]
    images = np.ascontiguousarray(data.reshape(-1, 3, SIDE, SIDE).transpose(0, 2, 3, 1))
    return images, labels


def _read_classes(folder: Path) -> tuple[str, ...]:
    path = folder / META_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{folder} lacks {META_FILE}: {_layout_help()}")
    names = _unpickle(path).get(b"label_names")
    if not isinstance(names, list) or not names:
        raise ValueError(f"{path} has no b'label_names' list; download the data again")
    return tuple(n.decode() if isinstance(n, bytes) else str(n) for n in names)


def _read_split(folder: Path, batches: tuple[str, ...], classes: tuple[str, ...]) -> ImageArray:
    images, labels, ids = [], [], []
    for name in batches:
        x, y = _read_batch(folder / name, len(classes))
        images.append(x)
        labels.append(y)
        ids.extend(f"cifar10/{name}/{i}" for i in range(len(y)))
    return ImageArray(
        images=np.concatenate(images), labels=np.concatenate(labels), ids=np.array(ids),
        classes=classes,
    )


def read_cifar10(data_dir: str | Path) -> DatasetSplits:
    """Read CIFAR-10 from the python pickles.

    Args:
        data_dir: the ``cifar-10-batches-py`` folder or the folder that contains it.

    Returns:
        ``DatasetSplits(name="cifar10", natural=True)``: train ``uint8[50000, 32, 32, 3]``
        (``data_batch_1`` .. ``data_batch_5`` in order), test ``uint8[10000, 32, 32, 3]``,
        classes from ``batches.meta``, ids ``"cifar10/<batch>/<i>"``.

    Raises:
        FileNotFoundError: the folder or one of the batch files is missing.
        ValueError: a batch file is corrupt or not a CIFAR-10 batch.
    """
    data_dir = Path(data_dir).expanduser()
    if not data_dir.is_dir():
        raise FileNotFoundError(f"CIFAR-10 folder {data_dir} does not exist: {_layout_help()}")
    folder = find_batch_dir(data_dir)
    missing = [] if folder is None else [
        n for n in (*TRAIN_BATCHES, TEST_BATCH) if not (folder / n).is_file()
    ]
    if folder is None or missing:
        raise FileNotFoundError(
            f"{data_dir} lacks the CIFAR-10 batch file(s) "
            f"{', '.join(missing or (TRAIN_BATCHES[0],))}: {_layout_help()}"
        )
    classes = _read_classes(folder)
    return DatasetSplits(
        name="cifar10",
        train=_read_split(folder, TRAIN_BATCHES, classes),
        test=_read_split(folder, (TEST_BATCH,), classes),
        natural=True,
        source=str(folder.resolve()),
    )


def _safe_extract(archive: Path, dest: Path) -> None:
    """Extract the ``cifar-10-batches-py/`` regular files of ``archive`` into ``dest``.

    Raises:
        ValueError: a member would land outside ``dest`` or is a link / device file.
    """
    root = dest.resolve()
    with tarfile.open(archive, "r:gz") as tar:
        members = []
        for m in tar.getmembers():
            target = (root / m.name).resolve()
            if m.name.startswith(("/", "\\")) or not target.is_relative_to(root):
                raise ValueError(f"{archive} has an unsafe member path {m.name!r}; not extracting")
            if not (m.isfile() or m.isdir()):
                raise ValueError(f"{archive} has a link or special file {m.name!r}; not extracting")
            if Path(m.name).parts[:1] == (BATCH_DIR,):
                members.append(m)
        tar.extractall(dest, members=members, filter="data")


def download_cifar10(dest: str | Path, url: str = CIFAR10_URL, *, timeout: float = 60.0) -> Path:
    """Download and extract the CIFAR-10 python version into ``dest``.

    Does nothing when ``dest/cifar-10-batches-py`` is already complete. The archive is kept
    as ``dest/cifar-10-python.tar.gz``.

    Args:
        dest: the folder to extract into (created if needed).
        url: where to fetch ``cifar-10-python.tar.gz`` (``file://`` URLs work too).
        timeout: seconds to wait for the connection.

    Returns:
        the ``cifar-10-batches-py`` folder, ready for :func:`read_cifar10`.

    Raises:
        RuntimeError: the download failed (offline?); the message says what to fetch by hand.
        ValueError: the archive is corrupt or has unsafe member paths.
    """
    dest = Path(dest).expanduser()
    folder = dest / BATCH_DIR
    if all((folder / n).is_file() for n in (*TRAIN_BATCHES, TEST_BATCH, META_FILE)):
        return folder
    archive = dest / "cifar-10-python.tar.gz"
    if not archive.is_file():
        try:
            fetch_file([url], archive, timeout=timeout)
        except RuntimeError as e:
            raise RuntimeError(
                f"{e}\nOr download {url} elsewhere, extract it, and pass the "
                f"{BATCH_DIR} folder as the data directory"
            ) from None
    try:
        _safe_extract(archive, dest)
    except (tarfile.TarError, OSError, EOFError) as e:
        raise ValueError(
            f"{archive} is not a readable .tar.gz ({e}); delete it and download again"
        ) from e
    if find_batch_dir(dest) is None:
        raise ValueError(f"{archive} does not contain {BATCH_DIR}/; is it the right archive?")
    return folder
