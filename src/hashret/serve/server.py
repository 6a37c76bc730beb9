"""Run the retrieval service on an index directory (what ``hashret serve`` calls).

The service is read-only unless it is given a write key; it binds 127.0.0.1 unless told
otherwise, and answers only requests that name an allowed host (see
:mod:`hashret.serve.security`). uvicorn runs it with the guarded h11 protocol
(:mod:`hashret.serve.connections`: header and body deadlines, a connection cap), and the
kernels of the index's code width are compiled before it listens, so no request waits on
a compile.
"""

from __future__ import annotations

import os
import resource
import socket
from pathlib import Path
from typing import Any

from hashret.index.popcount import search_kernels_cached
from hashret.index.store import IndexLockedError, IndexStore
from hashret.indexing import load_index_model
from hashret.serve.limits import ServeLimits
from hashret.serve.security import AccessPolicy
from hashret.serve.sources import SourceView

#: Loopback only unless told otherwise.
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000
#: Connections the event loop accepts per turn. asyncio takes the listen backlog as this
#: batch size, and a connection holds a file descriptor from its accept until the protocol
#: refuses it a few turns later: a batch of 2,048 (uvicorn's default) could run the process
#: out of descriptors in one burst ("Too many open files", accepting paused for 1 s).
ACCEPT_BATCH = 16
#: Completed connections the kernel queues for the server (the listen backlog proper).
LISTEN_BACKLOG = 2048
#: File descriptors kept free beyond those open at start-up (index files, logs, threads).
_FD_MARGIN = 16


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
        raise RuntimeError(f"{e}; or serve it without a write key (read-only: POST /items is then "
                           "refused)") from None


def connection_cap(wanted: int) -> int:
    """``wanted`` connections, lowered to fit the open-file limit (raised to its hard limit first),
    less the descriptors open now, a margin and four accept batches in flight."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard > soft:
        try:
            target = hard if hard != resource.RLIM_INFINITY else max(soft, 65536)
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass
    try:
        open_now = len(os.listdir("/proc/self/fd"))
    except OSError:
        open_now = 64
    return max(1, min(int(wanted), soft - open_now - _FD_MARGIN - 4 * ACCEPT_BATCH))


def make_server(config: Any) -> Any:
    """A ``uvicorn.Server`` for :func:`uvicorn_config`'s config whose listening sockets keep a
    queue of :data:`LISTEN_BACKLOG` connections while the event loop accepts them
    :data:`ACCEPT_BATCH` at a time (asyncio uses one number for both)."""
    import uvicorn

    class _Server(uvicorn.Server):
        async def startup(self, sockets: list[socket.socket] | None = None) -> None:
            await super().startup(sockets=sockets)
            for server in getattr(self, "servers", []):
                for s in server.sockets:
                    dup = socket.socket(fileno=os.dup(s.fileno()))  # the same socket, re-listened
                    try:
                        dup.listen(LISTEN_BACKLOG)
                    finally:
                        dup.close()

    return _Server(config)


def uvicorn_config(app: Any, *, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT,
                   log_level: str = "info", **kw: Any) -> Any:
    """A ``uvicorn.Config`` for an app of :func:`hashret.serve.create_app`, with its limits:
    the guarded protocol (deadlines, connection cap), keep-alive timeout, log filters; run it
    with :func:`make_server`.

    ``kw`` goes to ``uvicorn.Config`` (e.g. ``fd`` or nothing when serving given sockets).
    """
    import uvicorn

    from hashret.serve.connections import guarded_protocol
    from hashret.serve.logs import install_log_filters

    limits: ServeLimits = app.state.limits
    protocol = guarded_protocol(header_timeout=limits.header_timeout, body_timeout=limits.body_timeout,
                                max_connections=connection_cap(limits.max_connections),
                                max_client_connections=limits.max_client_connections,
                                refusals=app.state.refusals)
    config = uvicorn.Config(app, host=host, port=port, log_level=log_level, http=protocol,
                            backlog=ACCEPT_BATCH, timeout_keep_alive=max(1, round(limits.keep_alive)),
                            server_header=False, **kw)
    install_log_filters(limits.log_interval)
    return config


def serve(index_dir: str | Path, *, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT,
          access: AccessPolicy | None = None, limits: ServeLimits | None = None,
          sources: SourceView | None = None, read_only: bool = False, log_level: str = "info") -> None:
    """Open ``index_dir`` and its model and serve the API and the web page until interrupted.

    Args:
        index_dir: an index (``hashret index build``).
        host, port: where to listen (127.0.0.1 unless told otherwise).
        access: keys and allowed hosts; the index is opened writable only when it holds a
            write key and ``read_only`` is False.
        limits: resource bounds.
        sources: how items' sources are shown.
        read_only: never write, even with a write key.
        log_level: uvicorn's log level.
    """
    from hashret.serve.app import create_app

    access = access or AccessPolicy()
    writable = access.writable and not read_only
    store = open_index(index_dir, read_only=not writable)
    try:
        model = load_index_model(store)
        app = create_app(store, model, limits=limits, access=access, sources=sources)
        if not search_kernels_cached():
            print("compiling the search kernels (first start after installing only; about a minute)...",
                  flush=True)
        seconds = app.state.retriever.warm_up()
        config = uvicorn_config(app, host=host, port=port, log_level=log_level)
        mode = "writable with the write key" if writable else "read-only"
        keys = ", reads need the read key" if access.read_protected else ""
        print(f"serving {store.root} ({len(store)} items, {store.bits} bits, {mode}{keys}; kernels ready "
              f"in {seconds:.1f} s) on http://{host}:{port}/ for hosts {', '.join(access.allowed_hosts)}",
              flush=True)
        make_server(config).run()
    finally:
        store.close()
