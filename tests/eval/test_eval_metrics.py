from __future__ import annotations

import numpy as np
import pytest

from hashret.codes import pack
from hashret.eval import (
    average_precision_at_k,
    hamming_ranking,
    ideal_precision_at_k,
    mean_average_precision,
    precision_at_k,
    precision_within_radius,
    relevance,
)


def test_ap_hand_values():
    rel = np.array(
        [
            [1, 0, 1, 0],  # (1/2) * (1/1 + 2/3)
            [0, 0, 0, 1],  # (1/1) * (1/4)
            [0, 0, 0, 0],  # nothing relevant in the top 4: 0
            [1, 1, 0, 0],  # (1/2) * (1 + 1)
            [0, 1, 0, 1],  # (1/2) * (1/2 + 2/4)
        ],
        dtype=bool,
    )
    ap = average_precision_at_k(rel)
    assert ap.dtype == np.float64 and ap.shape == (5,)
    np.testing.assert_allclose(ap, [5 / 6, 0.25, 0.0, 1.0, 0.5], rtol=0, atol=1e-15)


def test_query_without_relevant_item_scores_zero_and_stays_in_the_mean():
    rel = np.array([[1, 0, 1, 0], [0, 0, 0, 0]], dtype=bool)
    assert mean_average_precision(rel) == pytest.approx(5 / 12, abs=1e-15)  # 0.41666...


def test_ap_at_k_normalizes_by_relevant_found_in_top_k():
    # DLBHC convention: the top 3 holds one relevant item at rank 1, so AP@3 = 1 even
    # though two more relevant items come later in the full ranking.
    full = np.array([[1, 0, 0, 1, 1]], dtype=bool)
    assert average_precision_at_k(full[:, :3])[0] == 1.0
    assert average_precision_at_k(full)[0] == pytest.approx((1 + 2 / 4 + 3 / 5) / 3)


def test_ap_accepts_0_1_integers():
    ints = average_precision_at_k(np.array([[1, 0, 1, 0]], dtype=np.int64))
    np.testing.assert_allclose(ints, [5 / 6], atol=1e-15)


def test_full_ranking_map_matches_naive_loop(naive_ap, random_codes):
    rng = np.random.default_rng(2)
    q, db = random_codes(rng, 25, 12), random_codes(rng, 300, 12)
    ql, dl = rng.integers(0, 5, 25), rng.integers(0, 5, 300)
    idx, _ = hamming_ranking(q, db, None)
    rel = relevance(ql, dl, idx)
    expected = [naive_ap(row) for row in rel.tolist()]
    np.testing.assert_allclose(average_precision_at_k(rel), expected, rtol=1e-12)
    assert mean_average_precision(rel) == pytest.approx(np.mean(expected), rel=1e-12)
    for k in (1, 10, 100):
        top = rel[:, :k]
        want = np.mean([naive_ap(row) for row in top.tolist()])
        assert mean_average_precision(top) == pytest.approx(want, rel=1e-12)


def test_precision_at_k_hand_values():
    rel = np.array([[1, 0, 1, 0], [0, 0, 0, 0], [0, 1, 1, 1]], dtype=bool)
    # P@1 = (1 + 0 + 0)/3; P@2 = (1/2 + 0 + 1/2)/3; P@3 = (2/3 + 0 + 2/3)/3; P@4 = (2/4 + 0 + 3/4)/3
    p = precision_at_k(rel, [1, 2, 3, 4])
    assert p.dtype == np.float64
    np.testing.assert_allclose(p, [1 / 3, 1 / 3, 4 / 9, 5 / 12], atol=1e-15)
    np.testing.assert_allclose(precision_at_k(rel, [4, 1]), [5 / 12, 1 / 3], atol=1e-15)
    np.testing.assert_allclose(precision_at_k(rel, 2), [1 / 3], atol=1e-15)


def test_precision_at_k_errors():
    rel = np.zeros((2, 4), dtype=bool)
    with pytest.raises(ValueError, match=r"k=5 is out of range"):
        precision_at_k(rel, [1, 5])
    with pytest.raises(ValueError, match=r"k=0 is out of range"):
        precision_at_k(rel, [0])
    with pytest.raises(ValueError, match="non-empty"):
        precision_at_k(rel, [])
    with pytest.raises(ValueError, match="at least one query"):
        precision_at_k(rel[:0], [1])


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (np.array([1, 0, 1]), "2-D"),
        (np.zeros((3, 0), dtype=bool), "k >= 1"),
        (np.array([[1, 2]]), "0/1"),
        (np.array([["a", "b"]]), "dtype"),
    ],
)
def test_relevance_validation(bad, message):
    with pytest.raises(ValueError, match=message):
        average_precision_at_k(bad)


def test_map_needs_a_query():
    with pytest.raises(ValueError, match="at least one query"):
        mean_average_precision(np.zeros((0, 3), dtype=bool))


def test_precision_within_radius_hand_set(hand_set):
    q, ql, db, dl = hand_set
    # radius 2: q0's ball {a, b, f, c} holds 3 relevant of 4; q1's ball {e} holds none;
    # q2's ball is empty (nearest items at distance 4) and scores 0.
    assert precision_within_radius(q, ql, db, dl, radius=2) == pytest.approx((3 / 4) / 3)
    # radius 0: q0 {a} -> 1; q1 {e} -> 0 (label 0 vs 1); q2 empty -> 0
    assert precision_within_radius(q, ql, db, dl, radius=0) == pytest.approx(1 / 3)
    # radius 8 covers everything: q0 5/6, q1 1/6, q2 5/6
    assert precision_within_radius(q, ql, db, dl, radius=8) == pytest.approx(11 / 18)
    assert precision_within_radius(q, ql, db, dl, 2, chunk_size=1) == pytest.approx(1 / 4)


def test_precision_within_radius_multi_label():
    bits = np.array([[0, 0, 0, 0, 0, 0, 0, 0], [1, 0, 0, 0, 0, 0, 0, 0], [1, 1, 1, 0, 0, 0, 0, 0]])
    db = pack(bits.astype(np.uint8))
    db_labels = np.array([[1, 0], [0, 1], [1, 1]])
    q = pack(np.zeros((1, 8), np.uint8))
    # ball of radius 1 = {0, 1}; labels [1, 0] share with item 0 only -> 1/2
    assert precision_within_radius(q, np.array([[1, 0]]), db, db_labels, radius=1) == 0.5
    # radius 3 adds item 2, which shares label 0 -> 2/3
    assert precision_within_radius(q, np.array([[1, 0]]), db, db_labels, radius=3) == (
        pytest.approx(2 / 3)
    )


def test_precision_within_radius_errors(hand_set):
    q, ql, db, dl = hand_set
    with pytest.raises(ValueError, match="radius"):
        precision_within_radius(q, ql, db, dl, radius=-1)
    with pytest.raises(ValueError, match="query_labels has 2 rows"):
        precision_within_radius(q, ql[:2], db, dl)
    with pytest.raises(ValueError, match="at least one query"):
        precision_within_radius(q[:0], ql[:0], db, dl)


def test_ideal_precision_at_k_by_hand():
    db = np.array([0, 0, 0, 1, 1, 2])
    # query 0 has 3 relevant items, query 1 has 2, a query of an absent class 0
    got = ideal_precision_at_k(np.array([0, 1, 3]), db, [1, 2, 3, 4, 6])
    np.testing.assert_allclose(got, [2 / 3, 2 / 3, 5 / 9, 5 / 12, 5 / 18])
    # balanced (2 per class): min(1, 2 / k)
    np.testing.assert_allclose(ideal_precision_at_k(np.array([0, 1]), np.array([0, 1, 1, 0]), [1, 2, 3, 4]),
                               [1, 1, 2 / 3, 1 / 2])
    # multi-label: 2 items share a label with query 0, 1 with query 1
    ml = ideal_precision_at_k(np.array([[1, 0], [0, 1]]), np.array([[1, 1], [1, 0], [0, 0]]), [1, 2, 3])
    np.testing.assert_allclose(ml, [1, 3 / 4, 1 / 2])


def test_ideal_precision_is_a_perfect_rankings_precision():
    rng = np.random.default_rng(0)
    ql, dl = rng.integers(0, 4, 7), rng.integers(0, 4, 30)
    rel = ql[:, None] == dl[None, :]
    perfect = np.sort(rel, axis=1)[:, ::-1]  # every relevant item first
    ks = list(range(1, 31))
    np.testing.assert_allclose(ideal_precision_at_k(ql, dl, ks), precision_at_k(perfect, ks))
    with pytest.raises(ValueError, match="out of range"):
        ideal_precision_at_k(ql, dl, [31])
