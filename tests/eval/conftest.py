"""Shared fixtures for the eval tests: a hand-made 8-bit code set and naive references."""

from __future__ import annotations

import numpy as np
import pytest

from hashret.codes import hamming_distances_reference, pack

# Database of six 8-bit codes, given as explicit bit patterns (bit 0 first).
#   index: bits                    label
#   0 a  : 0 0 0 0 0 0 0 0         0
#   1 b  : 1 0 0 0 0 0 0 0         1
#   2 c  : 1 1 0 0 0 0 0 0         0
#   3 d  : 1 1 1 0 0 0 0 0         0
#   4 e  : 1 1 1 1 1 1 1 1         0
#   5 f  : 1 0 0 0 0 0 0 0  (= b)  0
HAND_DB_BITS = [
    [0, 0, 0, 0, 0, 0, 0, 0],
    [1, 0, 0, 0, 0, 0, 0, 0],
    [1, 1, 0, 0, 0, 0, 0, 0],
    [1, 1, 1, 0, 0, 0, 0, 0],
    [1, 1, 1, 1, 1, 1, 1, 1],
    [1, 0, 0, 0, 0, 0, 0, 0],
]
HAND_DB_LABELS = [0, 1, 0, 0, 0, 0]
# Queries:
#   q0: all zeros, label 0 -> distances a0 b1 c2 d3 e8 f1 -> ranking a b f c d e
#   q1: all ones,  label 1 -> distances a8 b7 c6 d5 e0 f7 -> ranking e d c b f a
#   q2: 0000 1111, label 0 -> distances a4 b5 c6 d7 e4 f5 -> ranking a e b f c d
HAND_Q_BITS = [
    [0, 0, 0, 0, 0, 0, 0, 0],
    [1, 1, 1, 1, 1, 1, 1, 1],
    [0, 0, 0, 0, 1, 1, 1, 1],
]
HAND_Q_LABELS = [0, 1, 0]


@pytest.fixture
def hand_set() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(query_codes, query_labels, db_codes, db_labels) of the hand-made set above."""
    return (
        pack(np.array(HAND_Q_BITS, dtype=np.uint8)),
        np.array(HAND_Q_LABELS),
        pack(np.array(HAND_DB_BITS, dtype=np.uint8)),
        np.array(HAND_DB_LABELS),
    )


def _naive_ranking(q_codes: np.ndarray, db_codes: np.ndarray) -> tuple[list, np.ndarray]:
    d = hamming_distances_reference(q_codes, db_codes)
    order = [sorted(range(len(db_codes)), key=lambda j, row=row: (row[j], j)) for row in d]
    return order, d


def _naive_ap(row) -> float:
    hits, total = 0, 0.0
    for i, r in enumerate(row, start=1):
        if r:
            hits += 1
            total += hits / i
    return total / hits if hits else 0.0


@pytest.fixture
def naive_ranking():
    """Reference full ranking ``f(q_codes, db_codes) -> (orders, distances)``: Python's
    sort on (distance, database index) over loop-computed distances."""
    return _naive_ranking


@pytest.fixture
def naive_ap():
    """Reference AP of one ranked 0/1 list: (1 / hits) * sum of P@i at relevant ranks."""
    return _naive_ap


@pytest.fixture
def random_codes():
    """``f(rng, n, bits) -> uint8[n, ceil(bits/8)]`` packed random codes."""

    def make(rng: np.random.Generator, n: int, bits: int) -> np.ndarray:
        return pack(rng.integers(0, 2, size=(n, bits), dtype=np.uint8))

    return make
