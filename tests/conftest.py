import os
from pathlib import Path

import pytest
import torch

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
