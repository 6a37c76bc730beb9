"""faiss-ivf (approximate) and recall_at_k."""

from __future__ import annotations

import numpy as np
import pytest

from hashret.index import (
    MISSING_DISTANCE,
    MISSING_INDEX,
    FaissIVFIndex,
    FlatIndex,
    HammingIndex,
    create_index,
    recall_at_k,
)


def clustered(seed: int, n: int, bits: int, n_queries: int = 50) -> tuple[np.ndarray, np.ndarray]:
    """Codes near 16 random centres (a few bits flipped), as real hash codes cluster by class."""
    rng = np.random.default_rng(seed)
    centres = rng.integers(0, 2, size=(16, bits), dtype=np.uint8)
    bits01 = centres[rng.integers(0, 16, size=n + n_queries)]
    bits01 ^= (rng.random(bits01.shape) < 0.08).astype(np.uint8)
    codes = np.packbits(bits01, axis=1, bitorder="little")
    return codes[:n], codes[n:]


def pair(db: np.ndarray, bits: int, **options: int) -> tuple[FaissIVFIndex, FlatIndex]:
    index = FaissIVFIndex(bits, **options)
    index.add(db)
    ref = FlatIndex(bits)
    ref.add(db)
    return index, ref


@pytest.mark.parametrize("bits", [16, 64])
def test_probing_every_list_gives_recall_one(bits):
    db, q = clustered(bits, 4000, bits)
    index, ref = pair(db, bits, nlist=16, nprobe=16)
    for k in (1, 10, 100):
        assert recall_at_k(index, ref, q, k) == 1.0
        np.testing.assert_array_equal(index.search(q, k)[0], ref.search(q, k)[0])  # same distances


def test_recall_grows_with_nprobe():
    db, q = clustered(1, 4000, 64)
    index, ref = pair(db, 64, nlist=32, nprobe=1)
    recalls = []
    for nprobe in (1, 4, 32):
        index.nprobe = nprobe
        recalls.append(recall_at_k(index, ref, q, 50))
    assert 0.0 <= recalls[0] <= recalls[1] <= recalls[2] == 1.0


def test_short_rows_are_padded():
    db, q = clustered(2, 400, 32)
    index, _ = pair(db, 32, nlist=16, nprobe=1)  # about 25 codes per list
    dist, idx = index.search(q, 300)
    assert dist.shape == (len(q), 300)
    missing = idx == MISSING_INDEX
    assert missing.any() and (dist[missing] == MISSING_DISTANCE).all()


def test_training():
    db, q = clustered(3, 1000, 32)
    index = FaissIVFIndex(32, nlist=8)
    assert not index.is_trained and index.nprobe == 8
    with pytest.raises(ValueError, match=r"first add, which needs at least 8 codes \(got 5\)"):
        index.add(db[:5])
    with pytest.raises(ValueError, match="needs at least 8 codes, got 3"):
        index.train(db[:3])
    index.train(db)
    assert index.is_trained and len(index) == 0
    index.add(db[:5])  # trained: any batch size
    with pytest.raises(ValueError, match="train before adding, or reset"):
        index.train(db)
    index.reset()
    assert index.is_trained and len(index) == 0
    index.add(db)
    assert recall_at_k(index, pair(db, 32)[1], q, 10) > 0
    with pytest.raises(ValueError, match="nprobe=9 exceeds nlist=8"):
        index.nprobe = 9
    assert create_index("faiss-ivf", 32, nlist=4).nprobe == 4


class Canned(HammingIndex):
    """An 'approximate' index that answers with fixed ids, to check how recall counts."""

    name = "canned"
    exact = False

    def __init__(self, bits: int, n: int, answer: list[list[int]]) -> None:
        super().__init__(bits)
        self.n, self.answer = n, np.array(answer, dtype=np.int64)

    def __len__(self) -> int:
        return self.n

    def _add(self, codes):  # pragma: no cover - never called
        raise NotImplementedError

    def _search(self, queries, k):
        idx = self.answer[:, :k]
        return np.where(idx == MISSING_INDEX, MISSING_DISTANCE, 0).astype(np.int32), idx

    def _range_search(self, queries, radius):  # pragma: no cover - never called
        raise NotImplementedError

    def _reset(self):  # pragma: no cover - never called
        raise NotImplementedError


def test_recall_counts_ties_at_the_boundary_as_found():
    # database distances to the query (all zeros): ids 0..5 -> 0, 1, 1, 1, 2, 3
    db = np.array([[0b0], [0b1], [0b10], [0b100], [0b11], [0b111]], np.uint8)
    ref = FlatIndex(8)
    ref.add(db)
    q = np.zeros((1, 1), np.uint8)
    assert ref.search(q, 2)[1].tolist() == [[0, 1]]  # true 2nd distance t = 1
    assert recall_at_k(Canned(8, 6, [[0, 3]]), ref, q, 2) == 1.0  # id 3 is tied with id 1
    assert recall_at_k(Canned(8, 6, [[3, 2]]), ref, q, 2) == 1.0
    assert recall_at_k(Canned(8, 6, [[0, 4]]), ref, q, 2) == 0.5  # id 4 is at distance 2 > t
    assert recall_at_k(Canned(8, 6, [[5, -1]]), ref, q, 2) == 0.0
    assert recall_at_k(Canned(8, 6, [[2, 2]]), ref, q, 2) == 0.5  # a repeated id counts once
    two = np.zeros((2, 1), np.uint8)
    assert recall_at_k(Canned(8, 6, [[0, 1], [4, 5]]), ref, two, 2) == 0.5  # mean over queries


def test_recall_errors():
    db, q = clustered(4, 200, 16)
    ref = FlatIndex(16)
    ref.add(db)
    index, _ = pair(db, 16, nlist=4)
    assert recall_at_k(ref, ref, q, 5) == 1.0
    with pytest.raises(ValueError, match="reference must be an exact index"):
        recall_at_k(ref, index, q, 5)
    short, _ = pair(db[:100], 16, nlist=4)
    with pytest.raises(ValueError, match="must hold the same codes"):
        recall_at_k(short, ref, q, 5)
    with pytest.raises(ValueError, match="at least one query"):
        recall_at_k(index, ref, q[:0], 5)
    with pytest.raises(ValueError, match="k must be an integer >= 1"):
        recall_at_k(index, ref, q, 0)
