from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from hashret.eval import (
    PROTOCOLS,
    Protocol,
    evaluate_codes,
    get_protocol,
    hamming_ranking,
    mean_average_precision,
    precision_at_k,
    precision_within_radius,
    relevance,
)


def test_registry():
    assert set(PROTOCOLS) == {"mnist", "cifar10", "digits", "folder", "cub200", "dogs"}
    for name, p in PROTOCOLS.items():
        assert get_protocol(name) is p
        assert (p.name, p.queries, p.database, p.k, p.radius) == (name, "test", "train", 1000, 2)
        assert p.description
    assert "10,000" in PROTOCOLS["mnist"].description
    assert "5,794" in PROTOCOLS["cub200"].description and "8,580" in PROTOCOLS["dogs"].description
    with pytest.raises(ValueError, match="cifar10"):
        get_protocol("imagenet")
    with pytest.raises(dataclasses.FrozenInstanceError):
        PROTOCOLS["mnist"].k = 5  # type: ignore[misc]
    with pytest.raises(ValueError, match="k"):
        Protocol(name="x", k=0)
    with pytest.raises(ValueError, match="radius"):
        Protocol(name="x", radius=-1)


def test_hand_set_known_values(hand_set):
    q, ql, db, dl = hand_set
    # Rankings (see conftest): q0 a b f c d e -> rel 1 0 1 1 1 1 (b/f tie: b first)
    #                          q1 e d c b f a -> rel 0 0 0 1 0 0
    #                          q2 a e b f c d -> rel 1 1 0 1 1 1
    res = evaluate_codes(q, ql, db, dl, bits=8, protocol=Protocol(name="hand", k=3), pk_max=3)
    assert res["map@3"] == pytest.approx((5 / 6 + 0 + 1) / 3)
    ap0 = (1 + 2 / 3 + 3 / 4 + 4 / 5 + 5 / 6) / 5
    ap2 = (1 + 1 + 3 / 4 + 4 / 5 + 5 / 6) / 5
    assert res["map"] == pytest.approx((ap0 + 1 / 4 + ap2) / 3)
    assert res["precision@k"] == pytest.approx([2 / 3, 1 / 2, 4 / 9])
    assert res["precision@radius2"] == pytest.approx(1 / 4)
    assert (res["n_queries"], res["n_database"], res["bits"]) == (3, 6, 8)
    assert res["protocol"]["name"] == "hand"


def test_keys_with_the_mnist_protocol(random_codes):
    rng = np.random.default_rng(3)
    q, db = random_codes(rng, 20, 48), random_codes(rng, 1200, 48)
    res = evaluate_codes(
        q, rng.integers(0, 10, 20), db, rng.integers(0, 10, 1200), bits=48,
        protocol=get_protocol("mnist"),
    )  # fmt: skip
    assert set(res) == {
        "protocol", "bits", "n_queries", "n_database",
        "map@1000", "map", "precision@k", "precision@radius2",
    }  # fmt: skip
    assert len(res["precision@k"]) == 1000
    assert res["protocol"]["description"] == get_protocol("mnist").description
    assert all(type(res[k]) is float for k in ("map@1000", "map", "precision@radius2"))
    assert all(0.0 <= v <= 1.0 for v in res["precision@k"])


def test_k_is_capped_at_database_size(hand_set):
    q, ql, db, dl = hand_set
    res = evaluate_codes(q, ql, db, dl, bits=8, protocol=get_protocol("digits"))
    assert "map@6" in res and "map@1000" not in res
    assert res["map@6"] == res["map"]  # top 6 of 6 is the full ranking
    assert len(res["precision@k"]) == 6


@pytest.mark.parametrize("multi_label", [False, True])
def test_matches_the_metric_functions(multi_label, random_codes, naive_ranking, naive_ap):
    rng = np.random.default_rng(4)
    bits, nq, n = 12, 37, 250
    q, db = random_codes(rng, nq, bits), random_codes(rng, n, bits)
    if multi_label:
        ql, dl = rng.integers(0, 2, (nq, 4)), rng.integers(0, 2, (n, 4))
    else:
        ql, dl = rng.integers(0, 4, nq), rng.integers(0, 4, n)
    proto = Protocol(name="t", k=40, radius=3)
    res = evaluate_codes(q, ql, db, dl, bits=bits, protocol=proto, pk_max=100, chunk_size=8)

    idx, _ = hamming_ranking(q, db, None)
    rel = relevance(ql, dl, idx)
    assert res["map"] == pytest.approx(mean_average_precision(rel), rel=1e-12)
    assert res["map@40"] == pytest.approx(mean_average_precision(rel[:, :40]), rel=1e-12)
    np.testing.assert_allclose(res["precision@k"], precision_at_k(rel, range(1, 101)))
    assert res["precision@radius3"] == pytest.approx(
        precision_within_radius(q, ql, db, dl, radius=3), rel=1e-12
    )
    # and against the fully naive reference (Python sort, loop AP)
    order, _ = naive_ranking(q, db)
    if not multi_label:
        naive_rel = [[dl[j] == ql[i] for j in row] for i, row in enumerate(order)]
        assert res["map"] == pytest.approx(np.mean([naive_ap(r) for r in naive_rel]))
        assert res["map@40"] == pytest.approx(np.mean([naive_ap(r[:40]) for r in naive_rel]))

    # chunking and threads change nothing, bit for bit
    for chunk_size, workers in ((None, 1), (1, 3), (250, 2)):
        again = evaluate_codes(
            q, ql, db, dl, bits=bits, protocol=proto, pk_max=100,
            chunk_size=chunk_size, workers=workers,
        )  # fmt: skip
        assert again == res


def test_errors(hand_set):
    q, ql, db, dl = hand_set
    proto = get_protocol("folder")
    with pytest.raises(ValueError, match="shape"):
        evaluate_codes(q, ql, db, dl, bits=16, protocol=proto)
    with pytest.raises(ValueError, match="pk_max"):
        evaluate_codes(q, ql, db, dl, bits=8, protocol=proto, pk_max=0)
    with pytest.raises(ValueError, match="workers"):
        evaluate_codes(q, ql, db, dl, bits=8, protocol=proto, workers=0)
    with pytest.raises(ValueError, match="db_labels has 5 rows"):
        evaluate_codes(q, ql, db, dl[:5], bits=8, protocol=proto)
    with pytest.raises(ValueError, match="at least one query"):
        evaluate_codes(q[:0], ql[:0], db, dl, bits=8, protocol=proto)
