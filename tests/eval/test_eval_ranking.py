from __future__ import annotations

import numpy as np
import pytest

from hashret.codes import pack
from hashret.eval import hamming_ranking, relevance


def test_hand_ranking_breaks_ties_by_database_order(hand_set):
    q, _, db, _ = hand_set
    idx, dist = hamming_ranking(q, db, None)
    assert idx.dtype == np.int64 and dist.dtype == np.int32
    assert idx.tolist() == [[0, 1, 5, 2, 3, 4], [4, 3, 2, 1, 5, 0], [0, 4, 1, 5, 2, 3]]
    assert dist.tolist() == [[0, 1, 1, 2, 3, 8], [0, 5, 6, 7, 7, 8], [4, 4, 5, 5, 6, 7]]
    idx3, dist3 = hamming_ranking(q, db, 3)
    assert idx3.shape == (3, 3) and dist3.shape == (3, 3)
    assert idx3.tolist() == [[0, 1, 5], [4, 3, 2], [0, 4, 1]]


@pytest.mark.parametrize("k", [1, 7, 199, 200, None])
@pytest.mark.parametrize("chunk_size", [None, 7])
def test_matches_naive_stable_sort_with_many_ties(k, chunk_size, naive_ranking, random_codes):
    rng = np.random.default_rng(0)
    # 8-bit codes over 200 items: only 9 distinct distances, so ties everywhere;
    # a few exact duplicates of the first query make distance-0 ties too.
    q = random_codes(rng, 31, 8)
    db = random_codes(rng, 200, 8)
    db[[3, 50, 120]] = q[0]
    order, d = naive_ranking(q, db)
    idx, dist = hamming_ranking(q, db, k, chunk_size=chunk_size)
    kk = 200 if k is None else k
    assert idx.shape == (31, kk)
    assert idx.tolist() == [row[:kk] for row in order]
    assert np.array_equal(dist, np.take_along_axis(d, idx, axis=1))
    zeros = np.flatnonzero(d[0] == 0)  # the planted duplicates and any random ones
    assert {3, 50, 120} <= set(zeros.tolist())
    assert idx[0, : len(zeros)].tolist() == zeros[:kk].tolist()


def test_wide_codes_match_naive(naive_ranking, random_codes):
    rng = np.random.default_rng(1)
    q, db = random_codes(rng, 5, 20), random_codes(rng, 64, 20)  # 20 bits: padded 3rd byte
    order, _ = naive_ranking(q, db)
    assert hamming_ranking(q, db, None)[0].tolist() == order


def test_k_and_code_errors(hand_set):
    q, _, db, _ = hand_set
    with pytest.raises(ValueError, match="out of range"):
        hamming_ranking(q, db, 0)
    with pytest.raises(ValueError, match="k=None"):
        hamming_ranking(q, db, 7)
    with pytest.raises(ValueError, match="hashret.codes.pack"):
        hamming_ranking(q.astype(np.float32), db, 1)
    with pytest.raises(ValueError, match="same"):
        hamming_ranking(q, np.zeros((4, 2), np.uint8), 1)
    with pytest.raises(ValueError, match="empty"):
        hamming_ranking(q, db[:0], None)
    with pytest.raises(ValueError, match="chunk_size"):
        hamming_ranking(q, db, 1, chunk_size=0)


def test_relevance_single_label():
    idx = np.array([[0, 2, 1], [1, 1, 3]])
    rel = relevance(np.array([5, 7]), np.array([5, 7, 5, 9]), idx)
    assert rel.dtype == np.bool_
    assert rel.tolist() == [[True, True, False], [True, True, False]]


def test_relevance_multi_label_shares_at_least_one_label():
    db = np.array([[1, 0, 0], [0, 1, 1], [0, 0, 0], [1, 1, 0]])
    qs = np.array([[0, 1, 0], [1, 0, 1]])
    idx = np.array([[0, 1, 2, 3], [3, 2, 1, 0]])
    assert relevance(qs, db, idx).tolist() == [
        [False, True, False, True],
        [True, False, True, True],
    ]


def test_relevance_errors():
    with pytest.raises(ValueError, match="indices"):
        relevance(np.array([0]), np.array([0, 1]), np.array([[2]]))
    with pytest.raises(ValueError, match="both 1-D"):
        relevance(np.array([0]), np.array([[0, 1]]), np.array([[0]]))
    with pytest.raises(ValueError, match="0/1"):
        relevance(np.array([[2, 0]]), np.array([[0, 1]]), np.array([[0]]))
    with pytest.raises(ValueError, match="queries"):
        relevance(np.array([0, 1]), np.array([0, 1]), np.array([[0]]))


def test_codes_built_with_pack_are_lsb_first():
    # bit 0 set vs bit 7 set: distance 2 whatever the packing, but the bytes differ
    codes = pack(np.array([[1, 0, 0, 0, 0, 0, 0, 0], [0, 0, 0, 0, 0, 0, 0, 1]], np.uint8))
    assert codes[:, 0].tolist() == [1, 128]
    assert hamming_ranking(codes[:1], codes, None)[1].tolist() == [[0, 2]]
