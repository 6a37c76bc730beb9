"""One contract over the engines that hold a collection (:class:`hashret.store.base.Collection`):
the numpy reference (FlatIndex + HierarchicalSearcher), the index directory (IndexStore), Milvus
Lite 2.5 in both feature layouts, and a real Milvus 2.3.5 server (the "array" layout; marked slow),
each opened again from its location (``open_collection``) after the adds.

Every engine must give the reference's ids, Hamming distances, Euclidean distances and tie
order, for Hamming top-k, radius searches and the hierarchical re-rank with top-N pools (with
and without the tie widening) and radius pools. The data has many ties of both kinds:
duplicated codes, queries copied from the database, and small-integer features (so every
engine's float32 Euclidean distance is exact and equal distances are common).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest

from hashret.codes import pack
from hashret.index import FlatIndex
from hashret.search import HierarchicalSearcher

BITS, N, DIM, NQ = 16, 1200, 6, 12


def _data() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(12)
    db = pack(rng.integers(0, 2, size=(N, BITS), dtype=np.uint8))
    db[rng.integers(0, N, N // 4)] = db[rng.integers(0, N, N // 4)]  # duplicated codes
    feats = rng.integers(-2, 3, size=(N, DIM)).astype(np.float32)  # exact float32 distances, many ties
    pick = rng.integers(0, N, NQ)
    q = pack(rng.integers(0, 2, size=(NQ, BITS), dtype=np.uint8))
    q[: NQ // 2] = db[pick[: NQ // 2]]  # queries at distance 0 of one or more items
    qf = rng.integers(-2, 3, size=(NQ, DIM)).astype(np.float32)
    return db, feats, q, qf


@dataclass
class Engine:
    """What the contract asks of an engine, as (distances, ids) arrays or SearchResults."""

    name: str
    search: Any  # (q, k) -> (int32[q, k], int64[q, k])
    range_search: Any  # (q, radius) -> [(int32[m], int64[m])]
    hierarchical: Any  # (q, qf, k, **pool) -> [SearchResult]


def _reference(db: np.ndarray, feats: np.ndarray) -> Engine:
    index = FlatIndex(BITS)
    index.add(db)
    searcher = HierarchicalSearcher(index, feats)
    return Engine("numpy", index.search, index.range_search, searcher.search)


def _collection(name: str, coll) -> Engine:
    """The contract's calls on any Collection (written in two adds, then opened again by location)."""
    from hashret.store import open_collection

    db, feats, _, _ = _data()
    coll.add(db[:500], feats[:500])
    coll.add(db[500:], feats[500:])
    coll.close()
    coll = open_collection(coll.location)

    def search(q, k):
        res = coll.search(q, None, k)
        return np.stack([r.hamming for r in res]), np.stack([r.indices for r in res])

    def range_search(q, radius):
        return [(r.hamming, r.indices) for r in coll.search(q, None, N, radius=radius)]

    def hierarchical(q, qf, k, **pool):
        return coll.search(q, qf, k, rerank=True, **{"ties": False, **pool})

    return Engine(name, search, range_search, hierarchical)


def _store(root) -> Engine:
    from hashret.store.directory import IndexStore

    return _collection("store", IndexStore.create(root, bits=BITS, feature_dim=DIM, feature_storage="float32",
                                                  backend="numpy"))


def _milvus(name: str, location: str, layout: str | None) -> Engine:
    from hashret.store.milvus import MilvusCollection

    return _collection(name, MilvusCollection.create(location, bits=BITS, feature_dim=DIM, layout=layout,
                                                     overwrite=True))


ENGINES = ["numpy", "store", "milvus-lite", "milvus-lite-array",
           pytest.param("milvus-server", marks=pytest.mark.slow)]


@pytest.fixture(scope="module")
def data():
    return _data()


@pytest.fixture(scope="module")
def reference(data):
    db, feats, _, _ = data
    return _reference(db, feats)


@pytest.fixture(scope="module", params=ENGINES)
def engine(request, data, tmp_path_factory) -> Engine:
    db, feats, _, _ = data
    name = request.param
    if name == "numpy":
        return _reference(db, feats)
    if name == "store":
        return _store(tmp_path_factory.mktemp("store") / "index")
    pytest.importorskip("pymilvus", reason="the milvus extra is not installed: pip install 'hashret[milvus]'")
    if name == "milvus-server":
        server = request.getfixturevalue("milvus_server")
        return _milvus(name, f"milvus://{server.uri.removeprefix('http://')}/contract", None)
    pytest.importorskip("milvus_lite", reason="milvus-lite 2.5 is not installed: "
                                              "pip install 'hashret[milvus]'")
    layout = "array" if name.endswith("array") else None
    db_file = tmp_path_factory.mktemp("lite") / "contract.db"
    return _milvus(name, f"{db_file}:contract_{layout or 'auto'}", layout)


def test_hamming_top_k(engine, reference, data):
    _, _, q, _ = data
    for k in (1, 7, 40, 300, 2000):
        d, i = engine.search(q, k)
        rd, ri = reference.search(q, k)
        np.testing.assert_array_equal(i, ri, err_msg=f"{engine.name} k={k}")
        np.testing.assert_array_equal(d, rd, err_msg=f"{engine.name} k={k}")


def test_radius(engine, reference, data):
    _, _, q, _ = data
    for radius in (0, 2, 5, BITS):  # (per-query radii: test_index_contract.py, the backends)
        got, want = engine.range_search(q, radius), reference.range_search(q, radius)
        assert len(got) == len(want) == NQ
        for (d, i), (rd, ri) in zip(got, want, strict=True):
            np.testing.assert_array_equal(i, ri, err_msg=f"{engine.name} radius={radius}")
            np.testing.assert_array_equal(d, rd, err_msg=f"{engine.name} radius={radius}")


@pytest.mark.parametrize("pool", [{"candidates": 50}, {"candidates": 50, "ties": True},
                                  {"candidates": 3, "ties": True}, {"radius": 3}, {"radius": 0}],
                         ids=["top50", "top50-ties", "top3-ties", "radius3", "radius0"])
def test_hierarchical_rerank(engine, reference, data, pool):
    _, _, q, qf = data
    for k in (1, 10, 60):
        want = reference.hierarchical(q, qf, k, **pool)
        got = engine.hierarchical(q, qf, k, **pool)
        for w, g in zip(want, got, strict=True):
            np.testing.assert_array_equal(g.indices, w.indices, err_msg=f"{engine.name} k={k} {pool}")
            np.testing.assert_array_equal(g.hamming, w.hamming, err_msg=f"{engine.name} k={k} {pool}")
            np.testing.assert_array_equal(g.euclidean, w.euclidean, err_msg=f"{engine.name} k={k} {pool}")


def test_the_data_has_ties_of_both_kinds(reference, data):
    """Guard on the data: the contract is only as strict as its ties."""
    _, _, q, qf = data
    d, _ = reference.search(q, 300)
    assert (np.diff(d, axis=1) == 0).mean() > 0.5
    res = reference.hierarchical(q, qf, 60, candidates=300)
    assert sum(int((np.diff(r.euclidean) == 0).sum()) for r in res) > 100
    top3 = reference.hierarchical(q, qf, 60, candidates=3, ties=True)
    assert max(len(r) for r in top3) > 3, "the tie widening must widen some pool"
