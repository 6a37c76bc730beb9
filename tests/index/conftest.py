"""Shared helpers for the index and search tests: small random codes, one faiss thread."""

from __future__ import annotations

import numpy as np
import pytest

from hashret.codes import pack
from hashret.index import create_index

try:  # keep faiss on one core in the tests
    import faiss

    faiss.omp_set_num_threads(1)
except ImportError:  # pragma: no cover - faiss is a dependency
    pass

# Options that make every backend usable on a few thousand codes.
SMALL_OPTIONS: dict[str, dict[str, int]] = {"faiss-ivf": {"nlist": 8, "nprobe": 2}}


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


def _build(name: str, bits: int, codes: np.ndarray, **options: int):
    """An index of backend ``name`` holding ``codes``."""
    index = create_index(name, bits, **{**SMALL_OPTIONS.get(name, {}), **options})
    index.add(codes)
    return index


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


@pytest.fixture
def build_index():
    """``build_index(name, bits, codes, **options)`` -> an index holding ``codes``."""
    return _build
