"""Hierarchical search: coarse Hamming candidates, fine Euclidean re-rank."""

from __future__ import annotations

import numpy as np
import pytest

from hashret.codes import hamming_distances, pack
from hashret.index import FlatIndex, create_index
from hashret.search import HierarchicalSearcher, SearchResult

# Six 8-bit database codes (bit 0 first) and 2-D features.
#   id  bits        features  | q0 = 00000000, (0, 0)   | q1 = 11111111, (0, 3)
#                             |  hamming  euclidean     |  hamming  euclidean
#   0   00000000    (10, 0)   |  0        10            |  8        sqrt(109)
#   1   10000000    (1, 0)    |  1        1             |  7        sqrt(10)
#   2   11000000    (0, 0.5)  |  2        0.5           |  6        2.5
#   3   11100000    (1, 0)    |  3        1             |  5        sqrt(10)
#   4   11111111    (0, 0)    |  8        0             |  0        3
#   5   10000000    (1, 0)    |  1        1             |  7        sqrt(10)
# Hamming order: q0 -> 0 1 5 2 3 4 ; q1 -> 4 3 2 1 5 0
HAND_BITS = [
    [0, 0, 0, 0, 0, 0, 0, 0],
    [1, 0, 0, 0, 0, 0, 0, 0],
    [1, 1, 0, 0, 0, 0, 0, 0],
    [1, 1, 1, 0, 0, 0, 0, 0],
    [1, 1, 1, 1, 1, 1, 1, 1],
    [1, 0, 0, 0, 0, 0, 0, 0],
]
HAND_FEATURES = [[10, 0], [1, 0], [0, 0.5], [1, 0], [0, 0], [1, 0]]
HAND_QUERY_BITS = [[0] * 8, [1] * 8]
HAND_QUERY_FEATURES = [[0, 0], [0, 3]]


@pytest.fixture
def hand():
    index = FlatIndex(8)
    index.add(pack(np.array(HAND_BITS, np.uint8)))
    searcher = HierarchicalSearcher(index, np.array(HAND_FEATURES, np.float32))
    return searcher, pack(np.array(HAND_QUERY_BITS, np.uint8)), np.array(HAND_QUERY_FEATURES, np.float32)


def test_hand_rerank_reorders_the_hamming_order(hand):
    searcher, qc, qf = hand
    # q0 pool = Hamming top-4 = {0, 1, 5, 2}: euclidean 0.5 (2), 1 (1), 1 (5), 10 (0)
    # q1 pool = Hamming top-4 = {4, 3, 2, 1}: euclidean 2.5 (2), 3 (4), sqrt10 (3: h5), sqrt10 (1: h7)
    r0, r1 = searcher.search(qc, qf, 3, candidates=4)
    assert isinstance(r0, SearchResult) and len(r0) == 3
    assert r0.indices.tolist() == [2, 1, 5] and r0.hamming.tolist() == [2, 1, 1]
    np.testing.assert_allclose(r0.euclidean, [0.5, 1.0, 1.0])
    assert r1.indices.tolist() == [2, 4, 3] and r1.hamming.tolist() == [6, 0, 5]
    np.testing.assert_allclose(r1.euclidean, [2.5, 3.0, np.sqrt(10)], rtol=1e-6)
    assert r0.indices.dtype == np.int64 and r0.hamming.dtype == np.int32
    assert r0.euclidean.dtype == np.float32


def test_hand_euclidean_ties_break_by_hamming_then_index(hand):
    searcher, qc, qf = hand
    r0, r1 = searcher.search(qc, qf, 6, radius=8)  # every item
    # q0: euclid 1 for ids 1 (h1), 5 (h1), 3 (h3): Hamming first, then index
    assert r0.indices.tolist() == [4, 2, 1, 5, 3, 0]
    # q1: sqrt(10) for ids 1 (h7), 3 (h5), 5 (h7)
    assert r1.indices.tolist() == [2, 4, 3, 1, 5, 0]


def test_hand_candidates_versus_radius(hand):
    searcher, qc, qf = hand
    r0, r1 = searcher.search(qc, qf, 10, radius=1)
    assert r0.indices.tolist() == [1, 5, 0]  # pool {0, 1, 5}
    assert r1.indices.tolist() == [4]  # pool {4}: fewer than k
    r0, r1 = searcher.search(qc, qf, 10, radius=3)
    assert r0.indices.tolist() == [2, 1, 5, 3, 0]  # pool {0, 1, 5, 2, 3}
    r0, _ = searcher.search(qc, qf, 2, candidates=2)  # pool {0, 1}
    assert r0.indices.tolist() == [1, 0]
    r0, r1 = searcher.search(qc, qf, 10, radius=0)
    assert r0.indices.tolist() == [0] and r1.indices.tolist() == [4]


def test_hand_without_rerank(hand):
    searcher, qc, qf = hand
    r0, r1 = searcher.search(qc, None, 4, candidates=6, rerank=False)
    assert r0.indices.tolist() == [0, 1, 5, 2] and r0.hamming.tolist() == [0, 1, 1, 2]
    assert r1.indices.tolist() == [4, 3, 2, 1]
    assert np.isnan(r0.euclidean).all() and r0.euclidean.shape == (4,)
    r0, _ = searcher.search(qc, qf, 4, radius=1, rerank=False)
    assert r0.indices.tolist() == [0, 1, 5] and np.isnan(r0.euclidean).all()


def random_set(seed: int, n: int = 2000, bits: int = 32, d: int = 16, q: int = 20):
    rng = np.random.default_rng(seed)
    db = pack(rng.integers(0, 2, size=(n, bits), dtype=np.uint8))
    queries = pack(rng.integers(0, 2, size=(q, bits), dtype=np.uint8))
    queries[:5] = db[:5]
    return db, queries, rng.normal(size=(n, d)).astype(np.float32), rng.normal(size=(q, d)).astype(np.float32)


def brute_force(db, feats, qc, qf, k, n_candidates=None, radius=None):
    """For each query: the stable Hamming top-N (or ball), sorted by (euclidean, hamming, index)."""
    ham = hamming_distances(qc, db)  # [q, n]
    out = []
    for row in range(len(qc)):
        order = np.argsort(ham[row], kind="stable")
        pool = order[:n_candidates] if radius is None else order[ham[row][order] <= radius]
        eu = np.sqrt(((feats[pool].astype(np.float64) - qf[row]) ** 2).sum(axis=1))
        keys = sorted((e, int(ham[row, i]), int(i)) for e, i in zip(eu, pool, strict=True))
        out.append([i for _, _, i in keys[:k]])
    return out


@pytest.mark.parametrize("name", ["numpy", "faiss-flat"])
@pytest.mark.parametrize("n_candidates,k", [(100, 10), (30, 30), (7, 20), (2000, 5)])
def test_matches_brute_force_top_n(name, n_candidates, k):
    db, qc, feats, qf = random_set(n_candidates)
    index = create_index(name, 32)
    index.add(db)
    results = HierarchicalSearcher(index, feats).search(qc, qf, k, candidates=n_candidates)
    want = brute_force(db, feats, qc, qf, k, n_candidates=n_candidates)
    ham = hamming_distances(qc, db)
    for row, (res, w) in enumerate(zip(results, want, strict=True)):
        assert res.indices.tolist() == w
        np.testing.assert_array_equal(res.hamming, ham[row, res.indices])
        np.testing.assert_allclose(res.euclidean, np.linalg.norm(feats[res.indices] - qf[row], axis=1),
                                   rtol=1e-5)
        assert (np.diff(res.euclidean) >= 0).all()


@pytest.mark.parametrize("name", ["numpy", "faiss-flat", "faiss-hash", "faiss-multihash"])
@pytest.mark.parametrize("radius", [0, 2, 9])
def test_matches_brute_force_radius(name, radius):
    db, qc, feats, qf = random_set(radius)
    index = create_index(name, 32)
    index.add(db)
    results = HierarchicalSearcher(index, feats).search(qc, qf, 15, radius=radius)
    want = brute_force(db, feats, qc, qf, 15, radius=radius)
    assert [r.indices.tolist() for r in results] == want


@pytest.mark.parametrize("name", ["numpy", "faiss-flat"])
def test_without_rerank_equals_the_index_search(name):
    db, qc, feats, _ = random_set(5)
    index = create_index(name, 32)
    index.add(db)
    searcher = HierarchicalSearcher(index, feats)
    dist, idx = index.search(qc, 25)
    for n_candidates in (25, 100):
        results = searcher.search(qc, None, 25, candidates=n_candidates, rerank=False)
        np.testing.assert_array_equal(np.stack([r.indices for r in results]), idx)
        np.testing.assert_array_equal(np.stack([r.hamming for r in results]), dist)
    short = searcher.search(qc, None, 25, candidates=10, rerank=False)
    np.testing.assert_array_equal(np.stack([r.indices for r in short]), idx[:, :10])


def test_float16_features_give_the_float32_order():
    # well separated: item i lies at distance 1 + 0.5 * rank[i] from the query, in a random
    # direction; float16 rounding moves a distance by < 0.1, far less than the 0.5 gaps
    rng = np.random.default_rng(0)
    n, d = 300, 8
    qf = rng.normal(size=(1, d)).astype(np.float32)
    rank = rng.permutation(n)
    direction = rng.normal(size=(n, d))
    direction /= np.linalg.norm(direction, axis=1, keepdims=True)
    feats32 = (qf + direction * (1 + 0.5 * rank)[:, None]).astype(np.float32)
    db = pack(rng.integers(0, 2, size=(n, 16), dtype=np.uint8))
    index = FlatIndex(16)
    index.add(db)
    qc = db[:1]
    r32, = HierarchicalSearcher(index, feats32).search(qc, qf, 40, candidates=120)
    r16, = HierarchicalSearcher(index, feats32.astype(np.float16)).search(qc, qf, 40, candidates=120)
    np.testing.assert_array_equal(r16.indices, r32.indices)
    assert r16.euclidean.dtype == np.float32
    np.testing.assert_allclose(r16.euclidean, r32.euclidean, atol=0.1)
    pool = index.search(qc, 120)[1][0]
    assert r32.indices.tolist() == pool[np.argsort(rank[pool])][:40].tolist()


def test_memmap_features(tmp_path):
    db, qc, feats, qf = random_set(6)
    np.save(tmp_path / "features.npy", feats)
    mm = np.load(tmp_path / "features.npy", mmap_mode="r")
    index = FlatIndex(32)
    index.add(db)
    a = HierarchicalSearcher(index, feats).search(qc, qf, 10, candidates=50)
    b = HierarchicalSearcher(index, mm).search(qc, qf, 10, candidates=50)
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x.indices, y.indices)
        np.testing.assert_array_equal(x.euclidean, y.euclidean)


def test_validation_errors(hand):
    searcher, qc, qf = hand
    index = searcher.index
    with pytest.raises(ValueError, match="features have 5 rows but the index holds 6 codes"):
        HierarchicalSearcher(index, np.zeros((5, 2), np.float32))
    with pytest.raises(ValueError, match="float array"):
        HierarchicalSearcher(index, np.zeros((6, 2), np.int64))
    with pytest.raises(ValueError, match="HammingIndex"):
        HierarchicalSearcher(object(), np.zeros((6, 2), np.float32))
    with pytest.raises(ValueError, match="exactly one of candidates= .* or radius="):
        searcher.search(qc, qf, 3)
    with pytest.raises(ValueError, match="exactly one of candidates="):
        searcher.search(qc, qf, 3, candidates=4, radius=1)
    with pytest.raises(ValueError, match="k must be an integer >= 1"):
        searcher.search(qc, qf, 0, candidates=4)
    with pytest.raises(ValueError, match="candidates must be an integer >= 1"):
        searcher.search(qc, qf, 3, candidates=0)
    with pytest.raises(ValueError, match="radius must be an integer >= 0"):
        searcher.search(qc, qf, 3, radius=-1)
    with pytest.raises(ValueError, match=r"query_features must have shape \[2, 2\]"):
        searcher.search(qc, np.zeros((2, 3), np.float32), 3, candidates=4)
    with pytest.raises(ValueError, match=r"query_features must have shape \[2, 2\]"):
        searcher.search(qc, qf[:1], 3, candidates=4)
    with pytest.raises(ValueError, match=r"query_codes must be uint8\[n, 1\]"):
        searcher.search(np.zeros((2, 2), np.uint8), qf, 3, candidates=4)
    index.add(qc)  # the index grew, the features did not
    with pytest.raises(ValueError, match="features have 6 rows but the index holds 8 codes"):
        searcher.search(qc, qf, 3, candidates=4)


def test_first_k_of_a_pool_equals_the_full_three_key_sort():
    """The re-rank sorts only the items not farther than the k-th distance: same positions as a
    full (euclidean, hamming, index) sort, with ties at that distance, NaN and -0.0."""
    from hashret.search import _first_k

    rng = np.random.default_rng(0)
    for trial in range(2000):
        m, k = int(rng.integers(1, 300)), int(rng.integers(1, 50))
        euclid = (rng.integers(0, 5, m) if trial % 2 else rng.random(m)).astype(np.float32)  # many ties
        if trial % 7 == 0:
            euclid[rng.integers(0, m, max(1, m // 3))] = np.nan
        if trial % 11 == 0:
            euclid[: m // 2] = -0.0
        hamming = rng.integers(0, 3, m).astype(np.int32)
        indices = rng.permutation(3 * m)[:m].astype(np.int64)
        np.testing.assert_array_equal(_first_k(euclid, hamming, indices, k),
                                      np.lexsort((indices, hamming, euclid))[:k])
