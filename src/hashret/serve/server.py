"""Run the retrieval service on an index directory (what ``hashret serve`` calls)."""

from __future__ import annotations

from pathlib import Path

from hashret.index.store import IndexLockedError, IndexStore
from hashret.indexing import load_index_model
from hashret.serve.limits import DEFAULT_MAX_UPLOAD_BYTES

#: Loopback only unless told otherwise: the service has no authentication.
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000


def open_index(index_dir: str | Path, *, read_only: bool = False) -> IndexStore:
    """Open an index for serving: writable (the server is its writer, so POST /items works)
    unless ``read_only`` (then other processes may write, and the server picks up their commits).

    Raises:
        FileNotFoundError: no index at ``index_dir``.
        RuntimeError: another process is writing the index and ``read_only`` is False.
    """
    try:
        return IndexStore.open(index_dir, writable=not read_only)
    except IndexLockedError as e:
        raise RuntimeError(f"{e}; or serve it with --read-only (POST /items is then refused)") from None


def serve(index_dir: str | Path, *, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT,
          read_only: bool = False, max_upload_bytes: int = DEFAULT_MAX_UPLOAD_BYTES,
          log_level: str = "info") -> None:
    """Open ``index_dir`` and its model and serve the API and the web page until interrupted.

    Binds ``127.0.0.1`` unless ``host`` says otherwise (the service has no authentication:
    put it behind a proxy that has before binding another address).
    """
    import uvicorn

    from hashret.serve.app import create_app

    store = open_index(index_dir, read_only=read_only)
    try:
        model = load_index_model(store)
        app = create_app(store, model, max_upload_bytes=max_upload_bytes)
        app.state.retriever.warm_up()
        print(f"serving {store.root} ({len(store)} items, {store.bits} bits"
              f"{', read-only' if read_only else ''}) on http://{host}:{port}/", flush=True)
        uvicorn.run(app, host=host, port=port, log_level=log_level)
    finally:
        store.close()
