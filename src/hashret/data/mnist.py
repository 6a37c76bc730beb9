"""MNIST from its four IDX files (plain or gzip-compressed), and a downloader.

The IDX format: a big-endian header, ``>u4`` magic 2051 for images followed by
``count, rows, cols`` (``>u4`` each), or magic 2049 for labels followed by ``count``;
then the raw ``uint8`` payload. The same reader works for Fashion-MNIST, KMNIST and other
IDX datasets, which use the same files. Class names are the digits ``"0"`` .. ``"9"`` unless
a ``classes.txt`` beside the files names them (one name per line, in label order) or the
caller does (``class_names``, CLI ``--class-names a,b,c``).
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
#: class names beside the IDX files: one per line, in label order
CLASSES_FILE = "classes.txt"


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


def check_class_names(names: Sequence[str], where: str) -> tuple[str, ...]:
    """``names`` as a tuple of non-empty, distinct strings; ``where`` names their source in errors."""
    names = tuple(str(n).strip() for n in names)
    for i, n in enumerate(names):
        if not n:
            raise ValueError(f"{where}: the name of class {i} is empty: give one name per label, "
                             "in label order")
        if n in names[:i]:
            raise ValueError(f"{where}: class name {n!r} is given twice (classes {names.index(n)} and {i}): "
                             "names must differ")
    return names


def read_class_names(path: str | Path) -> tuple[str, ...]:
    """A ``classes.txt``: one class name per line, in label order (blank lines at the end ignored)."""
    lines = Path(path).read_text(encoding="utf-8").splitlines()
    while lines and not lines[-1].strip():
        lines.pop()
    return check_class_names(lines, str(path))


def _read_split(folder: Path, split: str) -> tuple[np.ndarray, np.ndarray, Path]:
    """``(images uint8[n, rows, cols], labels uint8[n], label file)`` of one split."""
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
    return images, labels, label_path


def _check_labels(splits: dict[str, tuple[np.ndarray, np.ndarray, Path]], classes: tuple[str, ...],
                  named_by: str | None) -> None:
    """Every label has a name; given names are exactly one per label ``0 .. max``."""
    top = max(((int(lab.max()), path) for _, lab, path in splits.values() if len(lab)), default=(-1, Path()))
    if named_by is None:
        if top[0] >= len(classes):
            raise ValueError(f"{top[1]} holds label {top[0]}; MNIST labels are 0-9 (another IDX dataset: "
                             f"name its classes in {CLASSES_FILE} beside the files, one per line in label "
                             "order)")
    elif top[0] + 1 != len(classes):
        raise ValueError(f"{named_by} gives {len(classes)} class names but the labels run 0..{top[0]}: give "
                         f"{top[0] + 1} names, one per label in label order")


def _array(images: np.ndarray, labels: np.ndarray, split: str, classes: tuple[str, ...]) -> ImageArray:
    return ImageArray(
        images=images[:, :, :, None],  # [n, rows, cols] -> [n, rows, cols, 1]
        labels=labels.astype(np.int64),
        ids=np.array([f"mnist/{split}/{i}" for i in range(len(labels))]),
        classes=classes,
    )


def read_mnist(data_dir: str | Path, class_names: Sequence[str] | None = None) -> DatasetSplits:
    """Read MNIST from a folder with its four IDX files (each plain or ``.gz``).

    Args:
        data_dir: the folder (or its parent, in torchvision's ``MNIST/raw`` layout).
        class_names: one name per label ``0 .. max``, in label order; ``None``: those of
            :data:`CLASSES_FILE` beside the files, else ``"0"`` .. ``"9"``.

    Returns:
        ``DatasetSplits(name="mnist", natural=False)``: train ``uint8[60000, 28, 28, 1]``,
        test ``uint8[10000, 28, 28, 1]``, classes ``("0", ..., "9")`` (or as named), ids
        ``"mnist/train/<i>"`` and ``"mnist/test/<i>"``.

    Raises:
        FileNotFoundError: the folder or one of the files is missing (the message lists the
            expected files and where to download them).
        ValueError: a file is corrupt (wrong magic number, truncated, label count mismatch), or
            the class names are not one per label (or empty, or repeated).
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
    named_by: str | None = None
    classes = CLASSES
    if class_names is not None:
        named_by, classes = "--class-names", check_class_names(class_names, "--class-names")
    elif (folder / CLASSES_FILE).is_file():
        named_by, classes = str(folder / CLASSES_FILE), read_class_names(folder / CLASSES_FILE)
    splits = {split: _read_split(folder, split) for split in MNIST_FILES}
    _check_labels(splits, classes, named_by)
    return DatasetSplits(
        name="mnist",
        train=_array(*splits["train"][:2], "train", classes),
        test=_array(*splits["test"][:2], "test", classes),
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
