"""A real Milvus server (standalone, 2.3.5) as a child process, for tests and benchmarks.

The PyPI package ``milvus`` 2.3.5 (``pip install 'hashret[milvus-server]'``, Linux and
macOS) ships the Milvus standalone binary with its embedded etcd and local storage, so a
server runs without Docker. From a shell::

    milvus-server --data /path/to/milvus-data --proxy-port 19530   # Ctrl+C stops it

and hashret connects with ``--milvus http://127.0.0.1:19530`` (or
``milvus://127.0.0.1:19530/COLLECTION``). From Python, :func:`start_milvus_server` starts one
on a free loopback port with its own data folder and returns when it answers.

Milvus 2.3 keeps one vector field per collection, so a hashret collection with re-rank
features is made in the ``"array"`` layout there (see :mod:`hashret.index.milvus`).
"""

from __future__ import annotations

import socket
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

_INSTALL = "pip install 'hashret[milvus-server]'"


@dataclass
class MilvusServerProcess:
    """A running Milvus server started by :func:`start_milvus_server`.

    Attributes:
        uri: ``"http://127.0.0.1:PORT"``, what :class:`hashret.index.milvus.MilvusIndex` takes.
        port: the gRPC / HTTP port it listens on (loopback only).
        data_dir: its data, configuration and logs (``logs/milvus-stderr.log``).
        start_seconds: how long it took to answer.
    """

    uri: str
    port: int
    data_dir: Path
    start_seconds: float
    _server: Any = field(repr=False)

    def stop(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL after a second). Idempotent."""
        self._server.stop()

    @property
    def running(self) -> bool:
        """Whether the server process is still alive."""
        proc = self._server.server_proc
        return proc is not None and proc.poll() is None

    def __enter__(self) -> MilvusServerProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _config(milvus: Any, data_dir: Path) -> Any:
    """The package's configuration, with the embedded etcd on free ports of its own.

    The package leaves etcd on its defaults (2379 for clients, 2380 for peers), so a second
    server on the machine (another test session) would fail to start; an etcd configuration
    file (``etcd.config.path``, which the package's template lacks) moves them.
    """
    package = Path(milvus.__file__).parent / "data"
    template = (package / "config.yaml.template").read_text()
    anchor = "  use:\n    embed: true"
    configs = data_dir / "configs"
    configs.mkdir(parents=True, exist_ok=True)
    if anchor not in template:  # another package layout: its defaults as they are
        return milvus.MilvusServerConfig(data_dir=str(data_dir))
    client, peer = free_port(), free_port()
    (configs / "etcd.yaml").write_text(
        f"name: default\nlisten-client-urls: http://127.0.0.1:{client}\n"
        f"advertise-client-urls: http://127.0.0.1:{client}\nlisten-peer-urls: http://127.0.0.1:{peer}\n"
        f"initial-advertise-peer-urls: http://127.0.0.1:{peer}\n"
        f"initial-cluster: default=http://127.0.0.1:{peer}\n")
    path = configs / "milvus.yaml.template"
    path.write_text(template.replace(anchor, "  config:\n    path: {{ etcd_config_path }}\n" + anchor))
    config = milvus.MilvusServerConfig(data_dir=str(data_dir), template=str(path))
    config.glog_conf_file = str(package / "glog.conf")  # set by the package only for its own template
    config.set("etcd_config_path", str(configs / "etcd.yaml"))
    # every port a free one of the system's choosing: the package counts up from Milvus's defaults
    # (53100, 19531, ...), so two servers starting at once would take the same ones
    ports = {key: free_port() for key in config.configurable_items if key.endswith("_port")}
    config.update(**{**ports, "etcd_port": client})
    return config


def start_milvus_server(data_dir: str | Path, *, port: int | None = None,
                        timeout: float = 120.0) -> MilvusServerProcess:
    """Start the bundled Milvus standalone server and wait until it answers.

    Args:
        data_dir: folder for its binaries (unpacked there, about 200 MB), data and logs.
        port: port to listen on (``None``: a free one).
        timeout: seconds to wait for the server's health check.

    Raises:
        ImportError: the ``milvus`` package is not installed (names the extra).
        RuntimeError: the server exited or did not answer in time (with its log's tail).
    """
    try:
        import milvus
    except ImportError as e:
        raise ImportError(f"a local Milvus server needs the milvus package (2.3.5): {_INSTALL}") from e
    if not hasattr(milvus, "MilvusServer"):
        raise ImportError(f"`import milvus` found {milvus.__file__}, not the Milvus server package: run from "
                          f"another folder, or {_INSTALL}")
    data_dir = Path(data_dir).resolve()
    config = _config(milvus, data_dir)
    if port is not None:
        config.update(proxy_port=int(port))
    server = milvus.MilvusServer(config, wait_for_started=False)
    server.webservice_port = free_port()  # its health check (the package counts up from 9091)
    t0 = time.perf_counter()
    server.start()
    try:
        server.wait_started(timeout=int(timeout * 1000))
    except (TimeoutError, RuntimeError) as e:
        server.stop()
        log = data_dir / "logs" / "milvus-stderr.log"
        tail = log.read_text(errors="replace")[-2000:] if log.exists() else "(no log)"
        raise RuntimeError(f"the Milvus server in {data_dir} did not start ({e}); its log ends:\n"
                           f"{tail}") from e
    port = int(server.config.get("proxy_port"))
    return MilvusServerProcess(f"http://127.0.0.1:{port}", port, data_dir, time.perf_counter() - t0, server)
