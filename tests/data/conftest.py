"""Builders of small dataset files (IDX, CIFAR pickles, image trees) for the data tests."""

from __future__ import annotations

import gzip
import io
import os
import pickle
import zipfile
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

#: Root of the real datasets (HASHRET_DATA, else the shared folder next to the repository).
DATA_ROOT = Path(
    os.environ.get("HASHRET_DATA") or Path(__file__).resolve().parents[3] / "shared" / "data"
)

CIFAR_CLASSES = ("airplane", "automobile", "bird", "cat", "deer",
                 "dog", "frog", "horse", "ship", "truck")


@pytest.fixture(autouse=True)
def _private_default_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No test writes to ~/.cache/hashret: the default cache folder lives in tmp_path."""
    monkeypatch.setenv("HASHRET_CACHE", str(tmp_path / "default-cache"))


@pytest.fixture
def real_data_root() -> Path:
    return DATA_ROOT


def idx_bytes(array: np.ndarray, magic: int) -> bytes:
    """An IDX file: >u4 magic, >u4 dims, raw uint8."""
    header = np.array([magic, *array.shape], dtype=">u4").tobytes()
    return header + np.ascontiguousarray(array, dtype=np.uint8).tobytes()


@pytest.fixture
def make_mnist() -> Callable[..., dict[str, np.ndarray]]:
    """``make(folder, n_train=6, n_test=4, gz=True)`` writes the four MNIST files."""

    def make(folder: Path, n_train: int = 6, n_test: int = 4, gz: bool = True,
             seed: int = 0) -> dict[str, np.ndarray]:
        rng = np.random.default_rng(seed)
        folder.mkdir(parents=True, exist_ok=True)
        arrays = {
            "train_images": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
            "train_labels": (np.arange(n_train) % 10).astype(np.uint8),
            "test_images": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
            "test_labels": (np.arange(n_test)[::-1] % 10).astype(np.uint8),
        }
        files = {
            "train-images-idx3-ubyte": idx_bytes(arrays["train_images"], 2051),
            "train-labels-idx1-ubyte": idx_bytes(arrays["train_labels"], 2049),
            "t10k-images-idx3-ubyte": idx_bytes(arrays["test_images"], 2051),
            "t10k-labels-idx1-ubyte": idx_bytes(arrays["test_labels"], 2049),
        }
        for name, data in files.items():
            if gz:
                (folder / (name + ".gz")).write_bytes(gzip.compress(data))
            else:
                (folder / name).write_bytes(data)
        return arrays

    return make


def cifar_rows(images: np.ndarray) -> np.ndarray:
    """uint8[n, 32, 32, 3] -> the pickles' uint8[n, 3072] (R plane, G plane, B plane)."""
    return images.transpose(0, 3, 1, 2).reshape(len(images), -1)


@pytest.fixture
def make_cifar() -> Callable[..., dict[str, np.ndarray]]:
    """``make(folder, n=3)`` writes a tiny cifar-10-batches-py (n images per batch)."""

    def make(folder: Path, n: int = 3, seed: int = 0) -> dict[str, np.ndarray]:
        rng = np.random.default_rng(seed)
        folder.mkdir(parents=True, exist_ok=True)
        out = {}
        for k, name in enumerate([f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]):
            images = rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)
            labels = [(k + i) % 10 for i in range(n)]
            batch = {b"batch_label": name.encode(), b"labels": labels,
                     b"data": cifar_rows(images), b"filenames": [b"x.png"] * n}
            with open(folder / name, "wb") as f:
                pickle.dump(batch, f, protocol=2)  # like the official (Python 2) files
            out[name] = images
            out[name + "_labels"] = np.array(labels)
        meta = {b"label_names": [c.encode() for c in CIFAR_CLASSES], b"num_vis": 3072}
        with open(folder / "batches.meta", "wb") as f:
            pickle.dump(meta, f, protocol=2)
        return out

    return make


def png_bytes(array: np.ndarray, fmt: str = "PNG") -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array.squeeze(-1) if array.shape[-1] == 1 else array).save(buf, format=fmt)
    return buf.getvalue()


def solid(value: int, h: int = 4, w: int = 5, channels: int = 3) -> np.ndarray:
    """A small image whose pixels encode ``value`` (distinct per image, exact in PNG)."""
    base = (np.arange(h * w * channels).reshape(h, w, channels) + value * 7) % 256
    return base.astype(np.uint8)


@pytest.fixture
def make_tree() -> Callable[..., dict[str, np.ndarray]]:
    """``make(root, {"cat/0.png": array, ...})`` writes PNG files; returns the dict."""

    def make(root: Path, files: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        for rel, array in files.items():
            path = root / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(png_bytes(array))
        return files

    return make


@pytest.fixture
def make_zip() -> Callable[..., Path]:
    """``make(path, {"member": bytes | array})`` writes a zip (arrays become PNGs)."""

    def make(path: Path, members: dict[str, bytes | np.ndarray]) -> Path:
        with zipfile.ZipFile(path, "w") as zf:
            for name, data in members.items():
                zf.writestr(name, data if isinstance(data, bytes) else png_bytes(data))
        return path

    return make


@pytest.fixture
def flat_tree(tmp_path: Path, make_tree) -> tuple[Path, dict[str, np.ndarray]]:
    """ROOT/<class>/<i>.png for classes cat (5), dog (4), emu (3): no train/test split."""
    files = {}
    for c, (cls, count) in enumerate([("dog", 4), ("cat", 5), ("emu", 3)]):
        for i in range(count):
            files[f"{cls}/{i:02d}.png"] = solid(10 * c + i)
    root = tmp_path / "flat"
    make_tree(root, files)
    return root, files


@pytest.fixture
def build() -> SimpleNamespace:
    """The plain helpers above, for tests (importing conftest itself is fragile)."""
    return SimpleNamespace(png_bytes=png_bytes, solid=solid, idx_bytes=idx_bytes,
                           cifar_rows=cifar_rows, classes=CIFAR_CLASSES)
