import os
from pathlib import Path

import numpy as np
import pytest
import torch

from hashret.codes import pack

# two threads on an idle machine; OMP_NUM_THREADS=1 when the machine is shared (two threads then
# wait on each other and run the training fixtures many times slower)
torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS") or min(2, os.cpu_count() or 1)))


@pytest.fixture(scope="session")
def digits_run(tmp_path_factory):
    """One short DLBHC training on the bundled digits, shared by the tests that only read it."""
    from hashret.training import TrainConfig, train

    out = tmp_path_factory.mktemp("runs") / "digits16"
    train(TrainConfig(dataset="digits", bits=16, epochs=4, seed=0), out, progress=False)
    return out


def shared_data_root() -> Path:
    return Path(os.environ.get("HASHRET_DATA", Path(__file__).resolve().parents[2] / "shared/data"))


@pytest.fixture(scope="session")
def milvus_server(tmp_path_factory):
    """A real Milvus 2.3.5 standalone server (the `milvus` package) on a free loopback port,
    started once per session with its own data folder and stopped at the end.

    Skipped, with the reason, only where the package is missing or its binary cannot run here.
    """
    pytest.importorskip("milvus", reason="the Milvus 2.3.5 server package is not installed: "
                                         "pip install 'hashret[milvus-server]'")
    pytest.importorskip("pymilvus", reason="the milvus extra is not installed: pip install 'hashret[milvus]'")
    from hashret.index.milvus_server import start_milvus_server

    try:
        server = start_milvus_server(tmp_path_factory.mktemp("milvus-server"), timeout=120)
    except (RuntimeError, OSError) as e:
        pytest.skip(f"the Milvus 2.3.5 server cannot run on this machine: {e}")
    print(f"\nMilvus 2.3.5 server at {server.uri}, answered after {server.start_seconds:.1f} s")
    yield server
    server.stop()


@pytest.fixture(scope="module", params=["lite", pytest.param("server", marks=pytest.mark.slow)])
def milvus_uri(request, tmp_path_factory) -> str:
    """Each Milvus engine in turn: one embedded Milvus Lite database file for the module (each new
    file starts a Milvus Lite server), then the session's Milvus 2.3.5 server (slow)."""
    if request.param == "server":
        return request.getfixturevalue("milvus_server").uri
    pytest.importorskip("milvus_lite", reason="milvus-lite 2.5 (the embedded engine) is not installed: "
                                              "pip install 'hashret[milvus]'")
    return str(tmp_path_factory.mktemp("milvus") / "test.db")


BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.fixture
def benchmark_module():
    """``benchmark_module("quality")``: a script of ``benchmarks/`` imported as a module, with its
    folder on ``sys.path`` during the test (for the scripts' own ``_machine`` / ``_pipeline``)."""
    import importlib
    import sys

    sys.path.insert(0, str(BENCHMARKS))
    try:
        yield importlib.import_module
    finally:
        sys.path.remove(str(BENCHMARKS))


# Small random codes for the index and store tests.
def _random_codes(rng: np.random.Generator, n: int, bits: int) -> np.ndarray:
    """``uint8[n, ceil(bits/8)]`` random packed codes (zero padding bits)."""
    return pack(rng.integers(0, 2, size=(n, bits), dtype=np.uint8))


def _tied_codes(seed: int, n: int, bits: int, n_queries: int = 25) -> tuple[np.ndarray, np.ndarray]:
    """Database and query codes with many ties: duplicated rows and queries copied from the database."""
    rng = np.random.default_rng(seed)
    db = _random_codes(rng, n, bits)
    dup = rng.integers(0, n, size=n // 5)
    db[rng.integers(0, n, size=n // 5)] = db[dup]  # exact duplicates, far apart
    q = _random_codes(rng, n_queries, bits)
    q[: n_queries // 2] = db[rng.integers(0, n, size=n_queries // 2)]  # queries at distance 0
    return db, q


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


@pytest.fixture
def random_codes():
    """``random_codes(rng, n, bits)`` -> ``uint8[n, nbytes]`` random packed codes."""
    return _random_codes


@pytest.fixture
def tied_codes():
    """``tied_codes(seed, n, bits, n_queries=25)`` -> (database, queries) with many ties."""
    return _tied_codes
