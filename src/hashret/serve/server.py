"""Run the retrieval service on an index directory (what ``hashret serve`` calls).

The service is read-only unless it is given a write key; it binds 127.0.0.1 unless told
otherwise, and answers only requests that name an allowed host (see
:mod:`hashret.serve.security`). uvicorn runs it with the guarded h11 protocol
(:mod:`hashret.serve.connections`: header and body deadlines, a connection cap), and the
kernels of the index's code width are compiled before it listens, so no request waits on
a compile.

Queries are encoded by one model thread per process that micro-batches concurrent uploads
(:mod:`hashret.serve.batcher`), with the index's torch model or ONNX Runtime
(:mod:`hashret.serve.runtime`). ``workers > 1`` starts that many processes (spawned, so no
torch threads are forked) that accept connections on one listening socket, each with the
index open read-only and its own model thread; the parent restarts a worker that dies and
stops them all on Ctrl-C or SIGTERM. An index has one writer (its writer lock), so workers
are always read-only: run one writable ``hashret serve`` (one worker) on another port for
``POST /items``; the readers pick up its commits within ``refresh_seconds``. The same works
across machines or with a balancer in front: N ``hashret serve --read-only`` on different
ports over one index directory. Rate limits and connection caps are per process.
"""

from __future__ import annotations

import os
import resource
import socket
import tempfile
from pathlib import Path
from typing import Any

from hashret.index.popcount import search_kernels_cached
from hashret.indexing import load_index_model
from hashret.serve.limits import ServeLimits
from hashret.serve.retriever import Retriever
from hashret.serve.runtime import RuntimeChoice, choose_runtime
from hashret.serve.security import AccessPolicy
from hashret.serve.sources import SourceView
from hashret.store import Collection, IndexLockedError, is_milvus_location, open_collection
from hashret.threads import choose_threads

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


#: numba's threads per search in the service (``NUMBA_NUM_THREADS``, unless set already).
SEARCH_THREADS = 1


def one_thread_per_search() -> int:
    """Make this process's (and its workers') numba kernels search with one thread; returns the count.

    The service searches one query per request, and the Hamming kernels share their work out by
    query block, so a second thread has nothing to do but join the parallel region and its end
    barrier. On shared cores that barrier waits for the other thread to be scheduled: a one-query
    top-k or range search that takes 0.03-0.3 ms with one thread took 3-16 ms (median) with two
    on 2 busy cores (``benchmarks/results/load-cpu2.md``). Concurrency comes from requests and
    ``--workers`` instead. An operator's own ``NUMBA_NUM_THREADS`` is kept, and so is a thread pool
    this process started already (numba sizes it once).
    """
    import numba

    if "NUMBA_NUM_THREADS" in os.environ:
        return int(numba.config.NUMBA_NUM_THREADS)
    os.environ["NUMBA_NUM_THREADS"] = str(SEARCH_THREADS)  # spawned workers read it at import
    try:
        numba.config.reload_config()  # numba is imported already; its thread pool starts on first use
    except RuntimeError:  # the pool runs already (a search ran in this process): keep its size
        del os.environ["NUMBA_NUM_THREADS"]  # unchanged config: numba's compiler reloads it later
    return int(numba.config.NUMBA_NUM_THREADS)


def open_index(location: str | Path, *, read_only: bool = False, token: str | None = None) -> Collection:
    """Open a collection for serving (an index directory or a Milvus collection,
    :func:`hashret.store.open_collection`): writable (the server is its writer, so POST /items
    works) unless ``read_only`` (then other processes may write, and the server picks up their
    commits).

    Raises:
        FileNotFoundError / LookupError: no collection at ``location``.
        RuntimeError: another process is writing the index directory and ``read_only`` is False.
    """
    try:
        return open_collection(location, writable=not read_only, token=token)
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


def serve(location: str | Path, *, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT,
          access: AccessPolicy | None = None, limits: ServeLimits | None = None,
          sources: SourceView | None = None, read_only: bool = False, log_level: str = "info",
          runtime: str = "auto", onnx_file: str | Path | None = None, workers: int = 1,
          token: str | None = None, model_file: str | Path | None = None) -> None:
    """Open a collection and its model and serve the API and the web page until interrupted.

    Args:
        location: an index directory (``hashret index build``) or a Milvus collection
            (``milvus://HOST:PORT/NAME``, ``FILE.db:NAME``).
        host, port: where to listen (127.0.0.1 unless told otherwise).
        access: keys and allowed hosts; the index is opened writable only when it holds a
            write key and ``read_only`` is False.
        limits: resource bounds.
        sources: how items' sources are shown.
        read_only: never write, even with a write key.
        log_level: uvicorn's log level.
        runtime: what encodes queries: ``auto``, ``torch`` or ``onnx``
            (:func:`hashret.serve.runtime.choose_runtime`).
        onnx_file: an export of the index's model (``hashret export-onnx``) for ``onnx``; else one
            is exported at start into a temporary folder.
        workers: processes answering on the one socket, each with its own model thread; more than
            one serves read-only (one writer only: the index's writer lock).
        token: credentials for a Milvus server.
        model_file: the model that made the codes, where the collection cannot reach it (a Milvus
            collection made on another machine); checked against the recorded SHA-256.

    Raises:
        ValueError: ``workers > 1`` with a write key and not ``read_only``, or over a Milvus Lite
            file (one process at a time opens one).
    """
    access = access or AccessPolicy()
    if workers < 1:
        raise ValueError(f"--workers {workers}: give 1 or more processes")
    if workers > 1 and access.writable and not read_only:
        raise ValueError(f"--workers {workers} serves the index read-only from every process (an index has "
                         "one writer): add --read-only, and run one writable `hashret serve` (one worker) "
                         "on another port for POST /items")
    if workers > 1 and is_milvus_location(location) and "://" not in str(location):
        raise ValueError(f"--workers {workers}: a Milvus Lite database ({location}) is opened by one process "
                         "at a time: serve it with one worker, or load it into a Milvus server "
                         "(milvus://HOST:PORT/NAME) for several")
    writable = access.writable and not read_only
    one_thread_per_search()
    opts = {"host": host, "port": port, "access": access, "limits": limits, "sources": sources,
            "log_level": log_level}
    store = open_index(location, read_only=not writable, token=token)
    try:
        model = load_index_model(store, model_file=model_file)
        tmp = tempfile.TemporaryDirectory(prefix="hashret-onnx-")
        with tmp:
            choice = choose_runtime(runtime, model, store.model_record.get("sha256"), onnx_file=onnx_file,
                                    workdir=tmp.name)
            if not search_kernels_cached():
                print("compiling the search kernels (first start after installing only; about a minute)...",
                      flush=True)
            mode = "writable with the write key" if writable else "read-only"
            keys = ", reads need the read key" if access.read_protected else ""
            what = f"{store.location} ({len(store)} items, {store.bits} bits, {mode}{keys}"
            if workers == 1:
                _serve_here(store, model, choice, opts, what)
            else:
                threads = max(1, choose_threads() // workers)
                warm = Retriever(store, model)  # compiles the kernels once, before the workers start
                warm.warm_up()
                warm.close()
                where = {"location": str(location), "token": token,
                         "model_file": None if model_file is None else str(model_file)}
                _serve_workers(where, choice, opts, what, workers, threads)
    finally:
        store.close()


def _query_encoder(choice: RuntimeChoice, threads: int | None = None) -> Any:
    """The OnnxEncoder of an ``onnx`` choice (None for torch: the index's model encodes)."""
    if choice.name != "onnx":
        return None
    from hashret.onnx_encoder import OnnxEncoder

    return OnnxEncoder(choice.onnx_file, threads=threads or choose_threads())  # type: ignore[arg-type]


def _serve_here(store: Collection, model: Any, choice: RuntimeChoice, opts: dict[str, Any], what: str,
                sockets: list[socket.socket] | None = None, threads: int | None = None) -> None:
    """Serve an open index in this process (on ``sockets`` when given, else on host:port)."""
    from hashret.serve.app import create_app

    app = create_app(store, model, limits=opts["limits"], access=opts["access"], sources=opts["sources"],
                     query_encoder=_query_encoder(choice, threads))
    try:
        seconds = app.state.retriever.warm_up()
        config = uvicorn_config(app, host=opts["host"], port=opts["port"], log_level=opts["log_level"])
        if sockets is None:
            limits = app.state.limits
            print(f"serving {what}; queries encoded by {choice.note}, up to {limits.max_batch} at once; "
                  f"kernels ready in {seconds:.1f} s) on http://{opts['host']}:{opts['port']}/ for hosts "
                  f"{', '.join(opts['access'].allowed_hosts)}", flush=True)
        make_server(config).run(sockets=sockets)
    finally:
        app.state.retriever.close()


def _worker(where: dict[str, Any], choice: RuntimeChoice, opts: dict[str, Any], sock: socket.socket,
            threads: int) -> None:
    """One worker process of :func:`_serve_workers`: the collection read-only, its own model thread."""
    from hashret.threads import apply_threads

    apply_threads(threads)
    store = open_index(where["location"], read_only=True, token=where["token"])
    try:
        model = load_index_model(store, model_file=where["model_file"])
        _serve_here(store, model, choice, opts, "", sockets=[sock], threads=threads)
    finally:
        store.close()


def _check_port_free(host: str, port: int) -> None:
    """RuntimeError naming the fix when ``host:port`` is taken: checked with a plain bind, since
    sockets with ``SO_REUSEPORT`` would join another server of this user on that port."""
    probe = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    try:
        probe.bind((host, port))
    except OSError as e:
        raise RuntimeError(f"cannot listen on {host}:{port} ({e.strerror}): choose another --port, or stop "
                           "the server using it") from None
    finally:
        probe.close()


def _reuseport_socket(host: str, port: int) -> socket.socket:
    """A TCP socket bound to ``host:port`` with ``SO_REUSEPORT`` (one per worker; only sockets of
    this user can join the port), inheritable by a spawned worker.

    Raises:
        RuntimeError: the port is taken (names the fix).
    """
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.bind((host, port))
    except OSError as e:
        sock.close()
        raise RuntimeError(f"cannot listen on {host}:{port} ({e.strerror}): choose another --port, or stop "
                           "the server using it") from None
    sock.set_inheritable(True)
    return sock


def _serve_workers(where: dict[str, Any], choice: RuntimeChoice, opts: dict[str, Any], what: str,
                   workers: int, threads: int) -> None:
    """``workers`` processes (spawned: no forked torch threads), each accepting on its own listening
    socket of one port (``SO_REUSEPORT``: the kernel spreads new connections over them; one shared
    socket let one worker's event loop take nearly every connection of a burst); a worker that dies
    is started again on its socket; Ctrl-C or SIGTERM stops them all."""
    import multiprocessing
    import signal
    import time

    _check_port_free(opts["host"], opts["port"])  # a port shared by reuse would join another server
    socks = [_reuseport_socket(opts["host"], opts["port"]) for _ in range(workers)]
    ctx = multiprocessing.get_context("spawn")

    def start(i: int) -> Any:
        p = ctx.Process(target=_worker, args=(where, choice, opts, socks[i], threads), daemon=False)
        p.start()
        return p

    procs = [start(i) for i in range(workers)]
    print(f"serving {what}; {workers} worker processes, {threads} thread(s) each, queries encoded by "
          f"{choice.note}) on http://{opts['host']}:{opts['port']}/ for hosts "
          f"{', '.join(opts['access'].allowed_hosts)}", flush=True)
    stopping = False

    def stop(*_: Any) -> None:
        nonlocal stopping
        stopping = True

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        while not stopping:
            time.sleep(0.5)
            for i, p in enumerate(procs):
                if not p.is_alive() and not stopping:
                    print(f"worker {p.pid} exited with {p.exitcode}; starting another", flush=True)
                    procs[i] = start(i)
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
        for p in procs:
            if p.is_alive():
                os.kill(p.pid, signal.SIGTERM)
        for p in procs:
            p.join(30)
            if p.is_alive():
                p.kill()
        for sock in socks:
            sock.close()
