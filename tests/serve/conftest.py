"""Indexes of the bundled digits for the service tests (built once, copied per test that writes)."""

from __future__ import annotations

import contextlib
import io
import shutil
import socket
import threading

import numpy as np
import pytest
from PIL import Image

from hashret.indexing import build_index, load_index_model
from hashret.run import load_run_dataset, open_run
from hashret.serve import create_app
from hashret.store.directory import IndexStore


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


@contextlib.contextmanager
def running(app):
    """Serve ``app`` with real uvicorn (its limits: the guarded protocol) on 127.0.0.1:<free port>,
    in a thread; yields ``(base_url, port)``."""
    from hashret.serve import make_server, uvicorn_config

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    srv = make_server(uvicorn_config(app, log_level="warning"))
    thread = threading.Thread(target=srv.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    for _ in range(200):
        if srv.started:
            break
        thread.join(0.05)
    assert srv.started, "uvicorn did not start"
    try:
        yield f"http://127.0.0.1:{port}", port
    finally:
        srv.should_exit = True
        thread.join(10)
        sock.close()


@pytest.fixture
def serve_app():
    """``serve_app(app) -> (base_url, port)``: the app served by real uvicorn until the test ends."""
    with contextlib.ExitStack() as stack:
        yield lambda app: stack.enter_context(running(app))
