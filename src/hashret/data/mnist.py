"""MNIST from its four IDX files (plain or gzip-compressed), and a downloader.

The IDX format: a big-endian header, ``>u4`` magic 2051 for images followed by
``count, rows, cols`` (``>u4`` each), or magic 2049 for labels followed by ``count``;
then the raw ``uint8`` payload. The same reader works for Fashion-MNIST and KMNIST, which
use the same files (their class names are then the digits 0-9 too).
"""

from __future__ import annotations

import gzip
import zlib
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from hashret.data.arrays import DatasetSplits, ImageArray
from hashret.data.download import fetch_file

IMAGES_MAGIC = 2051
LABELS_MAGIC = 2049

#: split -> (image file, label file), without the optional ``.gz`` suffix.
MNIST_FILES: dict[str, tuple[str, str]] = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}

#: Base URLs serving the four ``.gz`` files (the same mirrors torchvision uses).
MNIST_MIRRORS: tuple[str, ...] = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
    "http://yann.lecun.com/exdb/mnist/",
)

CLASSES = tuple(str(d) for d in range(10))


def _file_names() -> list[str]:
    return [name for pair in MNIST_FILES.values() for name in pair]


def _layout_help() -> str:
    names = ", ".join(f"{n}[.gz]" for n in _file_names())
    return (
        f"an MNIST folder holds the four IDX files {names}; download them from "
        f"http://yann.lecun.com/exdb/mnist/ or a mirror such as {MNIST_MIRRORS[0]} "
        "(`hashret download mnist --out DIR` fetches them)"
    )


def _find(folder: Path, name: str) -> Path | None:
    """``name`` or ``name.gz`` in ``folder`` (also the ``train-images.idx3-ubyte`` spelling)."""
    alt = name.replace("-idx", ".idx")
    for candidate in (name, name + ".gz", alt, alt + ".gz"):
        path = folder / candidate
        if path.is_file():
            return path
    return None


def _resolve_folder(data_dir: Path) -> Path:
    """The folder holding the IDX files: ``data_dir``, or torchvision's ``MNIST/raw`` under it."""
    for folder in (data_dir, data_dir / "MNIST" / "raw", data_dir / "mnist"):
        if _find(folder, _file_names()[0]) is not None:
            return folder
    return data_dir


def _read_bytes(path: Path, gz: bool) -> bytes:
    if not gz:
        return path.read_bytes()
    try:
        with gzip.open(path, "rb") as f:
            return f.read()
    except (OSError, EOFError, zlib.error) as e:
        raise ValueError(
            f"{path} is not a valid gzip file or is truncated ({e}); download it again, "
            "or decompress it yourself and keep the plain file"
        ) from e


def parse_idx(data: bytes, magic: int, name: str) -> np.ndarray:
    """Parse one uncompressed IDX file's bytes (see :func:`read_idx`); ``name`` is for errors."""
    header_len = 16 if magic == IMAGES_MAGIC else 8
    kind = "image" if magic == IMAGES_MAGIC else "label"
    found = int.from_bytes(data[:4], "big") if len(data) >= 4 else None
    if found is not None and found != magic:
        hint = ""
        if data[:2] == b"\x1f\x8b":
            hint = " (it is gzip-compressed: give it a .gz suffix)"
        elif found in (IMAGES_MAGIC, LABELS_MAGIC):
            hint = " (it is the other kind of IDX file: images and labels are swapped)"
        raise ValueError(
            f"{name} is not an MNIST {kind} file: magic number {found}, expected "
            f"{magic}{hint}; check the file names or download the files again"
        )
    if len(data) < header_len:
        raise ValueError(
            f"{name} is too short to be an MNIST {kind} file ({len(data)} bytes, the header "
            f"alone is {header_len}); download it again"
        )
    header = np.frombuffer(data, dtype=">u4", count=header_len // 4)
    shape = tuple(int(v) for v in header[1:])
    expected = header_len + int(np.prod(shape))
    if len(data) != expected:
        state = "truncated" if len(data) < expected else "longer than its header says"
        raise ValueError(
            f"{name} is {state}: its header announces {shape[0]} {kind}s of shape "
            f"{shape[1:] or ()} ({expected} bytes) but the file has {len(data)} bytes; "
            "download it again"
        )
    return np.frombuffer(data, dtype=np.uint8, offset=header_len).reshape(shape).copy()


def read_idx(path: str | Path, magic: int) -> np.ndarray:
    """Read one IDX file.

    Args:
        path: the file, plain or gzip-compressed (by its ``.gz`` suffix).
        magic: :data:`IMAGES_MAGIC` (2051) or :data:`LABELS_MAGIC` (2049).

    Returns:
        images ``uint8[n, rows, cols]`` or labels ``uint8[n]``.

    Raises:
        ValueError: wrong magic number, or the size disagrees with the header (truncated),
            naming the file.
    """
    path = Path(path)
    return parse_idx(_read_bytes(path, path.suffix == ".gz"), magic, str(path))


def _read_split(folder: Path, split: str) -> ImageArray:
    image_name, label_name = MNIST_FILES[split]
    image_path, label_path = _find(folder, image_name), _find(folder, label_name)
    assert image_path is not None and label_path is not None  # checked by read_mnist
    images = read_idx(image_path, IMAGES_MAGIC)
    labels = read_idx(label_path, LABELS_MAGIC)
    if len(labels) != len(images):
        raise ValueError(
            f"label file does not match the images: {label_path} has {len(labels)} labels but "
            f"{image_path} has {len(images)} images; download both files again"
        )
    if len(labels) and labels.max() >= len(CLASSES):
        raise ValueError(
            f"{label_path} holds label {int(labels.max())}; MNIST labels are 0-9"
        )
    return ImageArray(
        images=images[:, :, :, None],  # [n, rows, cols] -> [n, rows, cols, 1]
        labels=labels.astype(np.int64),
        ids=np.array([f"mnist/{split}/{i}" for i in range(len(labels))]),
        classes=CLASSES,
    )


def read_mnist(data_dir: str | Path) -> DatasetSplits:
    """Read MNIST from a folder with its four IDX files (each plain or ``.gz``).

    Returns:
        ``DatasetSplits(name="mnist", natural=False)``: train ``uint8[60000, 28, 28, 1]``,
        test ``uint8[10000, 28, 28, 1]``, classes ``("0", ..., "9")``, ids
        ``"mnist/train/<i>"`` and ``"mnist/test/<i>"``.

    Raises:
        FileNotFoundError: the folder or one of the files is missing (the message lists the
            expected files and where to download them).
        ValueError: a file is corrupt (wrong magic number, truncated, label count mismatch).
    """
    data_dir = Path(data_dir).expanduser()
    if data_dir.is_file():
        raise FileNotFoundError(f"{data_dir} is a file, not a folder: {_layout_help()}")
    if not data_dir.is_dir():
        raise FileNotFoundError(f"MNIST folder {data_dir} does not exist: {_layout_help()}")
    folder = _resolve_folder(data_dir)
    missing = [n for n in _file_names() if _find(folder, n) is None]
    if missing:
        raise FileNotFoundError(
            f"{data_dir} lacks the MNIST file(s) {', '.join(missing)} (plain or .gz): "
            f"{_layout_help()}"
        )
    return DatasetSplits(
        name="mnist",
        train=_read_split(folder, "train"),
        test=_read_split(folder, "test"),
        natural=False,
        source=str(folder.resolve()),
    )


def _check_idx(magic: int, name: str) -> Callable[[Path], None]:
    def check(path: Path) -> None:
        parse_idx(_read_bytes(path, gz=True), magic, name)

    return check


def download_mnist(
    dest: str | Path, *, mirrors: Sequence[str] = MNIST_MIRRORS, timeout: float = 60.0
) -> Path:
    """Download the four MNIST ``.gz`` files into ``dest`` (files already there are kept).

    Args:
        dest: the folder to fill (created if needed); pass it to :func:`read_mnist` afterwards.
        mirrors: base URLs tried in order; each must serve ``<base><file>.gz``
            (``file://`` URLs work too).
        timeout: seconds to wait for each connection.

    Returns:
        ``dest`` as a :class:`~pathlib.Path`.

    Raises:
        RuntimeError: a file could not be fetched from any mirror (offline?); the message
            names the files and URLs to fetch by hand.
    """
    dest = Path(dest).expanduser()
    dest.mkdir(parents=True, exist_ok=True)
    for name in _file_names():
        if _find(dest, name) is not None:
            continue
        magic = IMAGES_MAGIC if "images" in name else LABELS_MAGIC
        urls = [m.rstrip("/") + "/" + name + ".gz" for m in mirrors]
        try:
            check = _check_idx(magic, name + ".gz")
            fetch_file(urls, dest / (name + ".gz"), timeout=timeout, check=check)
        except RuntimeError as e:
            files = ", ".join(n + ".gz" for n in _file_names())
            raise RuntimeError(
                f"{e}\nMNIST needs the files {files} in {dest}; fetch them by hand from any of "
                f"{', '.join(mirrors)} when this machine is offline"
            ) from None
    return dest
