"""Indexes of the bundled digits for the service tests (built once, copied per test that writes)."""

from __future__ import annotations

import io
import shutil

import numpy as np
import pytest
from PIL import Image

from hashret.index.store import IndexStore
from hashret.indexing import build_index, load_index_model
from hashret.run import load_run_dataset, open_run
from hashret.serve import create_app


def _png(image: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image).save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture(scope="session")
def png():
    """``png(uint8[h, w, 1|3]) -> bytes``: an image as a PNG file's bytes."""
    return _png


@pytest.fixture(scope="session")
def digits_data(digits_run):
    return load_run_dataset(open_run(digits_run))


@pytest.fixture(scope="session")
def digits_index(digits_run, digits_data, tmp_path_factory):
    """A 1438-item index of the digits training set, with thumbnails (never written to)."""
    out = tmp_path_factory.mktemp("serve") / "digits-index"
    build_index(open_run(digits_run), out, digits_data.train, collection="digits", split="train").close()
    return out


@pytest.fixture
def index_copy(digits_index, tmp_path):
    """A private copy of the digits index, for tests that add to it."""
    dst = tmp_path / "index"
    shutil.copytree(digits_index, dst)
    return dst


@pytest.fixture
def make_app():
    """``make_app(index_dir, writable=..., **limits)`` -> (app, store); stores are closed after the test."""
    stores = []

    def make(index_dir, *, writable=False, **kw):
        store = IndexStore.open(index_dir, writable=writable)
        stores.append(store)
        return create_app(store, load_index_model(store), **kw), store

    yield make
    for s in stores:
        s.close()
