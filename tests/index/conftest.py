"""Shared helpers for the index and search tests: small random codes, one faiss thread."""

from __future__ import annotations

import numpy as np
import pytest

from hashret.index import create_index

try:  # keep faiss on one core in the tests
    import faiss

    faiss.omp_set_num_threads(1)
except ImportError:  # pragma: no cover - faiss is a dependency
    pass

# Options that make every backend usable on a few thousand codes.
SMALL_OPTIONS: dict[str, dict[str, int]] = {"faiss-ivf": {"nlist": 8, "nprobe": 2}}


def _build(name: str, bits: int, codes: np.ndarray, **options: int):
    """An index of backend ``name`` holding ``codes``."""
    index = create_index(name, bits, **{**SMALL_OPTIONS.get(name, {}), **options})
    index.add(codes)
    return index


@pytest.fixture
def build_index():
    """``build_index(name, bits, codes, **options)`` -> an index holding ``codes``."""
    return _build
