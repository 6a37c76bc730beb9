"""Loading a dataset by name: the one entry point the CLI and the training code use."""

from __future__ import annotations

import dataclasses
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from hashret.data.arrays import DatasetSplits
from hashret.data.cache import CacheDir
from hashret.data.cifar import CIFAR10_URL, META_FILE, TEST_BATCH, TRAIN_BATCHES, find_batch_dir, read_cifar10
from hashret.data.cub import CUB_LAYOUT, read_cub200
from hashret.data.digits import read_digits
from hashret.data.dogs import DOGS_LAYOUT, read_dogs
from hashret.data.folder import LAYOUT, check_on_bad_image, read_image_folder
from hashret.data.mnist import MNIST_FILES, read_mnist

_EXPECTED = {
    "mnist": "the folder holding the four MNIST IDX files "
    + ", ".join(f"{n}[.gz]" for pair in MNIST_FILES.values() for n in pair)
    + " (`hashret download mnist --out DIR` fetches them)",
    "cifar10": "the cifar-10-batches-py folder of the python version (or its parent; from "
    f"{CIFAR10_URL}; `hashret download cifar10 --out DIR` fetches it), or an image folder / .zip with "
    "train/<class>/ and test/<class>/ such as cifar10-jpeg.zip",
    "folder": LAYOUT,
    "cub200": CUB_LAYOUT,
    "dogs": DOGS_LAYOUT,
}


#: files a user may pass instead of the folder holding them
_MEMBERS = {
    "mnist": {n for pair in MNIST_FILES.values() for n in pair},
    "cifar10": {*TRAIN_BATCHES, TEST_BATCH, META_FILE},
}
_ARCHIVES = (".zip", ".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tar.xz")


def _check_file(name: str, path: Path) -> None:
    """``path`` is a file: fine for a .zip of an image folder (folder, cifar10); otherwise say
    it is a file, not a folder, and what the dataset needs instead."""
    archive = path.name.lower().endswith(_ARCHIVES)
    if name in ("folder", "cifar10") and path.suffix.lower() == ".zip":
        if zipfile.is_zipfile(path):
            return
        raise ValueError(f"{path} is not a readable .zip archive (damaged, cut short or not a zip): "
                         "download it again, or pass the extracted image folder as --data-dir")
    if name == "cifar10" and path.name.endswith((".tar.gz", ".tgz")):
        raise ValueError(
            f"{path} is a compressed archive: extract it (tar xzf {path.name}) or run "
            "`hashret download cifar10 --out DIR`, then pass the cifar-10-batches-py folder as --data-dir"
        )
    if path.name.removesuffix(".gz") in _MEMBERS.get(name, ()):
        fix = f": pass the folder that holds it, --data-dir {path.parent}"
    elif archive:
        fix = f"; extract {path.name} and pass the extracted folder: {_EXPECTED[name]}"
    else:
        fix = f"; --data-dir takes {_EXPECTED[name]}"
    raise FileNotFoundError(f"{path} is a file, not a folder{fix}")


def _has_split_folders(path: Path) -> bool:
    """``path/{train,test}/`` exist, or ``path/<one folder>/{train,test}/`` do."""
    candidates = [path, *(p for p in path.iterdir() if p.is_dir() and not p.name.startswith("."))]
    return any((c / "train").is_dir() and (c / "test").is_dir() for c in candidates)


def _load_cifar10(path: Path, **folder_options: object) -> DatasetSplits:
    if path.is_dir() and find_batch_dir(path) is not None:
        return read_cifar10(path)
    if path.is_file() or _has_split_folders(path):
        splits = read_image_folder(path, **folder_options)  # type: ignore[arg-type]
        return dataclasses.replace(splits, name="cifar10")
    zips = sorted(p.name for p in path.glob("*.zip"))
    hint = f" (it holds {', '.join(zips)}: pass that file's path)" if zips else ""
    raise FileNotFoundError(
        f"{path} is not a CIFAR-10 directory{hint}; expected {_EXPECTED['cifar10']}"
    )


@dataclass(frozen=True)
class LoadOptions:
    """What a reader may be told besides the path (see :func:`load_dataset`)."""

    seed: int = 0
    test_fraction: float = 0.2
    on_bad_image: str = "error"
    size: int | tuple[int, int] | None = None
    cache_dir: CacheDir = None
    class_names: Sequence[str] | None = None

    def folder(self) -> dict[str, object]:
        """The keyword arguments of :func:`read_image_folder`."""
        return dict(seed=self.seed, test_fraction=self.test_fraction, size=self.size,
                    on_bad_image=self.on_bad_image, cache_dir=self.cache_dir)


@dataclass(frozen=True)
class DatasetSpec:
    """A dataset hashret can load by name.

    Attributes:
        name: what ``--dataset`` takes.
        read: ``read(path, options) -> DatasetSplits`` (``path`` is None when not ``needs_dir``).
        expected: what ``--data-dir`` must point at, for messages.
        needs_dir: whether a ``--data-dir`` is needed (the bundled digits need none).
        fixed_size: the one size the images come in (``"8x8"``), where ``--image-size`` does not
            apply; None where it does.
        class_names: whether ``--class-names`` applies (IDX files hold only numbers).
    """

    name: str
    read: Callable[[Path | None, LoadOptions], DatasetSplits]
    expected: str
    needs_dir: bool = True
    fixed_size: str | None = None
    class_names: bool = False


_DATASETS: dict[str, DatasetSpec] = {}


def register_dataset(spec: DatasetSpec) -> DatasetSpec:
    """Add a dataset to the registry (a reader file + this call is all a new dataset needs).

    Raises:
        ValueError: the name is taken.
    """
    if spec.name in _DATASETS:
        raise ValueError(f"a dataset named {spec.name!r} is registered already: choose another name")
    _DATASETS[spec.name] = spec
    return spec


def list_datasets() -> list[str]:
    """The registered dataset names, in registration order."""
    return list(_DATASETS)


def get_dataset_spec(name: str) -> DatasetSpec:
    """The registered :class:`DatasetSpec` of ``name``.

    Raises:
        ValueError: no dataset of that name (the message lists the registered ones).
    """
    if name not in _DATASETS:
        raise ValueError(f"unknown dataset {name!r}: choose one of {', '.join(_DATASETS)}")
    return _DATASETS[name]


def _read_cifar10(path: Path | None, o: LoadOptions) -> DatasetSplits:
    assert path is not None
    if o.size is not None and path.is_dir() and find_batch_dir(path) is not None:
        raise ValueError("CIFAR-10 pickles are 32x32 as shipped: drop --image-size")
    return _load_cifar10(path, **o.folder())


register_dataset(DatasetSpec("digits", lambda _p, o: read_digits(seed=o.seed, test_fraction=o.test_fraction),
                             "nothing (they ship with scikit-learn)", needs_dir=False, fixed_size="8x8"))
register_dataset(DatasetSpec("mnist", lambda p, o: read_mnist(p, o.class_names), _EXPECTED["mnist"],
                             fixed_size="28x28", class_names=True))
register_dataset(DatasetSpec("cifar10", _read_cifar10, _EXPECTED["cifar10"]))
register_dataset(DatasetSpec("folder", lambda p, o: read_image_folder(p, **o.folder()),  # type: ignore[arg-type]
                             _EXPECTED["folder"]))
register_dataset(DatasetSpec("cub200", lambda p, o: read_cub200(p, size=o.size, on_bad_image=o.on_bad_image,
                                                                cache_dir=o.cache_dir), _EXPECTED["cub200"]))
register_dataset(DatasetSpec("dogs", lambda p, o: read_dogs(p, size=o.size, on_bad_image=o.on_bad_image,
                                                            cache_dir=o.cache_dir), _EXPECTED["dogs"]))
#: the registered dataset names (as of import; :func:`list_datasets` for later registrations)
DATASETS: tuple[str, ...] = tuple(_DATASETS)


def load_dataset(
    name: str,
    data_dir: str | Path | None = None,
    *,
    cache_dir: CacheDir = None,
    seed: int = 0,
    test_fraction: float = 0.2,
    on_bad_image: str = "error",
    size: int | tuple[int, int] | None = None,
    class_names: Sequence[str] | None = None,
) -> DatasetSplits:
    """Load a registered dataset (:func:`list_datasets`) as a train (= retrieval database) / test
    (= queries) split.

    * ``"digits"``: scikit-learn's 8x8 digits (``data_dir`` is ignored), split by ``seed`` and
      ``test_fraction``.
    * ``"mnist"``: the four IDX files in ``data_dir`` (plain or ``.gz``); the official split.
    * ``"cifar10"``: the python pickles (``cifar-10-batches-py`` or its parent), or an image
      folder / ``.zip`` with ``train/`` and ``test/`` class folders; the official split.
    * ``"folder"``: an image folder or ``.zip`` (``ROOT/<class>/<image>``, split by ``seed``
      and ``test_fraction``, or ``ROOT/{train,test}/<class>/<image>``).
    * ``"cub200"``: CUB-200-2011 (``images.txt``, ``image_class_labels.txt``,
      ``train_test_split.txt``, ``images/``); the official split, photos resized (224 px
      unless ``size`` says otherwise). :mod:`hashret.data.cub`
    * ``"dogs"``: Stanford Dogs (``Images/`` and ``train_list.mat`` / ``test_list.mat``); the
      official split, resized likewise. :mod:`hashret.data.dogs`

    Args:
        name: the dataset, one of :func:`list_datasets`.
        data_dir: where it lives (not needed for ``"digits"``).
        cache_dir: cache of decoded image folders and fine-grained sets; None for ``$HASHRET_CACHE`` or
            ``~/.cache/hashret``, False to decode every time. The other formats are fast to
            read and never cached.
        seed: seed of the stratified split (digits, unsplit folders).
        test_fraction: share of each class in the test set (digits, unsplit folders).
        on_bad_image: ``"error"`` or ``"skip"`` for unreadable images in a folder.
        size: resize images to ``(h, w)`` (or a square side); folders and fine-grained sets only.
        class_names: names of the labels ``0 .. max`` of an IDX dataset (``"mnist"`` only; the
            others are named by their folders or files); ``None``: ``classes.txt`` beside the
            IDX files, else the digits.

    Returns:
        a :class:`DatasetSplits` whose ``name`` is ``name``.

    Raises:
        ValueError: unknown ``name`` or option value, or unreadable data.
        FileNotFoundError: ``data_dir`` is missing or lacks the expected files.
    """
    spec = get_dataset_spec(name)
    check_on_bad_image(on_bad_image)
    if class_names is not None and not spec.class_names:
        raise ValueError(f"--class-names names the labels of IDX files (--dataset mnist); {name} takes its "
                         "class names from its own folders or files: drop --class-names")
    if size is not None and spec.fixed_size:
        raise ValueError(f"the {name} images are {spec.fixed_size} as shipped: drop --image-size")
    options = LoadOptions(seed=seed, test_fraction=test_fraction, on_bad_image=on_bad_image, size=size,
                          cache_dir=cache_dir, class_names=class_names)
    if not spec.needs_dir:
        return spec.read(None, options)
    if data_dir is None:
        raise FileNotFoundError(f"the {name} dataset needs --data-dir: {spec.expected}")
    path = Path(data_dir).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"{name} data directory {path} does not exist: expected {spec.expected}")
    if path.is_file():
        _check_file(name, path)
    return spec.read(path, options)
