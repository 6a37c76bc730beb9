"""faiss-flat returns exactly the numpy reference's answer, whatever faiss does with ties."""

from __future__ import annotations

import numpy as np
import pytest

from hashret.index import FaissFlatIndex, FlatIndex


def reference(db: np.ndarray, bits: int) -> FlatIndex:
    ref = FlatIndex(bits)
    ref.add(db)
    return ref


class TieScramblingFaiss:
    """Wraps a faiss IndexBinaryFlat; its top-k is correct in distances but, among items
    tied at a distance, prefers the *largest* ids and lists them in a random order:
    the worst case faiss's top-k is allowed to produce."""

    def __init__(self, index, seed: int = 0) -> None:
        self.index = index
        self.rng = np.random.default_rng(seed)
        self.searched_k: list[int] = []

    def __getattr__(self, name):
        return getattr(self.index, name)

    def __setattr__(self, name, value):
        if name in ("index", "rng", "searched_k"):
            object.__setattr__(self, name, value)
        else:
            setattr(self.index, name, value)

    def search(self, queries, k):
        self.searched_k.append(k)
        n = self.index.ntotal
        dist, idx = self.index.search(queries, n)  # everything
        out_d, out_i = np.empty((len(queries), k), np.int32), np.empty((len(queries), k), np.int64)
        for r in range(len(queries)):
            noise = self.rng.random(n)
            order = np.lexsort((noise, -idx[r], dist[r]))[:k]  # ties: largest id first
            order = order[np.lexsort((self.rng.random(k), dist[r][order]))]  # shuffle within ties
            out_d[r], out_i[r] = dist[r][order], idx[r][order]
        return out_d, out_i


@pytest.mark.parametrize("bits", [8, 16])
@pytest.mark.parametrize("use_heap", [None, True, False])
def test_scrambled_faiss_ties_are_repaired(bits, use_heap, tied_codes):
    db, q = tied_codes(bits, 700, bits)
    ref = reference(db, bits)
    index = FaissFlatIndex(bits, use_heap=use_heap)
    index.add(db)
    fake = TieScramblingFaiss(index._index)
    index._index = fake
    for k in (1, 3, 50, 699, 700, 800):
        dist, idx = index.search(q, k)
        ref_dist, ref_idx = ref.search(q, k)
        np.testing.assert_array_equal(dist, ref_dist)
        np.testing.assert_array_equal(idx, ref_idx)
    assert fake.searched_k == [2, 4, 51, 700, 700, 700]  # k + 1 shows a tied boundary


@pytest.mark.parametrize("bits", [8, 12, 16, 64])
@pytest.mark.parametrize("use_heap", [True, False])
def test_equals_reference_on_heavy_ties(bits, use_heap, tied_codes):
    db, q = tied_codes(100 + bits, 5000, bits, n_queries=40)
    ref = reference(db, bits)
    index = FaissFlatIndex(bits, use_heap=use_heap)
    index.add(db[:1234])
    index.add(db[1234:])
    for k in (1, 2, 10, 100, 1000, 4999):
        dist, idx = index.search(q, k)
        ref_dist, ref_idx = ref.search(q, k)
        np.testing.assert_array_equal(dist, ref_dist)
        np.testing.assert_array_equal(idx, ref_idx)


def test_all_identical_codes_keep_insertion_order():
    db = np.full((300, 2), 0b1010_0101, np.uint8)
    index = FaissFlatIndex(16)
    index.add(db)
    dist, idx = index.search(db[:4], 17)
    assert (dist == 0).all()
    assert idx.tolist() == [list(range(17))] * 4


def test_untied_boundary_needs_no_range_search(monkeypatch):
    # distances 0, 1, 2, ..., 8 from the zero query: no tie at any boundary
    db = np.array([[(1 << i) - 1] for i in range(9)], np.uint8)[::-1].copy()  # ids 0..8 at 8..0
    index = FaissFlatIndex(8)
    index.add(db)
    calls = []
    monkeypatch.setattr(index, "_range_search", lambda q, r: calls.append(r) or [])
    dist, idx = index.search(np.zeros((1, 1), np.uint8), 4)
    assert dist.tolist() == [[0, 1, 2, 3]] and idx.tolist() == [[8, 7, 6, 5]]
    assert calls == []


def test_use_heap_choice():
    index = FaissFlatIndex(256)
    index.add(np.zeros((2000, 32), np.uint8))
    index.search(np.zeros((1, 32), np.uint8), 3)
    assert not index._index.use_heap  # small k: faiss's counting top-k
    dist, idx = index.search(np.zeros((1, 32), np.uint8), 1500)
    assert index._index.use_heap  # its counting buffer would exceed 64 MiB
    assert idx.tolist() == [list(range(1500))]
    assert FaissFlatIndex(64, use_heap=True).use_heap is True
