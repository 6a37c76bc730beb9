"""faiss-hash and faiss-multihash: exact range search, approximate (but true) top-k."""

from __future__ import annotations

import numpy as np
import pytest

from hashret.codes import hamming_distances, pack
from hashret.index import MISSING_INDEX, FaissHashIndex, FaissMultiHashIndex, FlatIndex


def near_duplicates(seed: int, n: int, bits: int, n_queries: int = 30) -> tuple[np.ndarray, np.ndarray]:
    """Random codes plus, for each query, copies with 0..4 bits flipped: every radius has hits."""
    rng = np.random.default_rng(seed)
    bits01 = rng.integers(0, 2, size=(n + n_queries, bits), dtype=np.uint8)
    q01 = bits01[n:]
    db01 = bits01[:n]
    for j, row in enumerate(rng.choice(n, size=(n_queries, 5), replace=False)):
        for flips, r in enumerate(row):
            db01[r] = q01[j]
            db01[r, rng.choice(bits, size=flips, replace=False)] ^= 1
    return pack(db01), pack(q01)


def assert_same_ranges(got, want):
    assert len(got) == len(want)
    for (d, i), (rd, ri) in zip(got, want, strict=True):
        np.testing.assert_array_equal(i, ri)
        np.testing.assert_array_equal(d, rd)


@pytest.mark.parametrize("bits,b", [(16, 8), (16, 16), (24, 10), (64, 16), (64, 20)])
def test_hash_range_search_is_exact_for_small_radii(bits, b):
    db, q = near_duplicates(bits + b, 3000, bits)
    ref = FlatIndex(bits)
    ref.add(db)
    index = FaissHashIndex(bits, b=b)
    index.add(db)
    for radius in range(4):
        want = ref.range_search(q, radius)
        assert sum(len(i) for _, i in want) >= len(q) * (radius + 1)  # the planted copies
        assert_same_ranges(index.range_search(q, radius), want)
    assert index.nflip == 0  # range search raised the probing for itself only


@pytest.mark.parametrize("bits,nhash,b", [(16, 2, 8), (32, 4, 8), (64, 4, 16), (64, 3, 12), (24, 8, 3)])
def test_multihash_range_search_is_exact_for_small_radii(bits, nhash, b):
    db, q = near_duplicates(bits * nhash, 3000, bits)
    ref = FlatIndex(bits)
    ref.add(db)
    index = FaissMultiHashIndex(bits, nhash=nhash, b=b)
    index.add(db)
    for radius in range(4):
        assert_same_ranges(index.range_search(q, radius), ref.range_search(q, radius))


@pytest.mark.parametrize("cls", [FaissHashIndex, FaissMultiHashIndex])
@pytest.mark.parametrize("nflip", [0, 1, 2])
def test_approximate_search_returns_true_sorted_distances(cls, nflip):
    db, q = near_duplicates(nflip, 4000, 32)
    index = cls(32, b=8, nflip=nflip)
    index.add(db)
    true = hamming_distances(q, db)
    dist, idx = index.search(q, 20)
    assert dist.shape == idx.shape == (len(q), 20)
    for row, (d, i) in enumerate(zip(dist, idx, strict=True)):
        found = i != MISSING_INDEX
        np.testing.assert_array_equal(d[found], true[row, i[found]])
        keys = list(zip(d[found].tolist(), i[found].tolist(), strict=True))
        assert keys == sorted(keys)
        assert d[0] == 0  # the query's exact copy is always found


def test_hash_search_probing_every_bucket_finds_the_true_distances():
    db, q = near_duplicates(7, 2000, 16)
    ref = FlatIndex(16)
    ref.add(db)
    index = FaissHashIndex(16, b=6, nflip=6)
    index.add(db)
    dist, _ = index.search(q, 30)
    np.testing.assert_array_equal(dist, ref.search(q, 30)[0])


def test_multihash_search_is_exact_within_its_guaranteed_radius():
    # nhash=4, nflip=1: every code within distance 4 * 2 - 1 = 7 is found
    db, q = near_duplicates(11, 3000, 32)
    ref = FlatIndex(32)
    ref.add(db)
    index = FaissMultiHashIndex(32, nhash=4, b=8, nflip=1)
    index.add(db)
    ref_dist, _ = ref.search(q, 5)
    dist, _ = index.search(q, 5)
    assert (ref_dist <= 7).all()
    np.testing.assert_array_equal(dist, ref_dist)


def test_more_flips_find_more():
    db, q = near_duplicates(3, 3000, 32)
    counts = []
    for nflip in (0, 1, 2):
        index = FaissHashIndex(32, b=12, nflip=nflip)
        index.add(db)
        counts.append(int((index.search(q, 50)[1] != MISSING_INDEX).sum()))
    assert counts[0] <= counts[1] <= counts[2] and counts[0] < counts[2]


def test_option_errors():
    with pytest.raises(ValueError, match="b=17 hash bits is too many for 16-bit codes"):
        FaissHashIndex(16, b=17)
    with pytest.raises(ValueError, match="b must be an integer >= 1"):
        FaissHashIndex(16, b=0)
    with pytest.raises(ValueError, match="nflip=9 exceeds the b=8"):
        FaissHashIndex(16, b=8, nflip=9)
    with pytest.raises(ValueError, match=r"nhash \* b = 4 \* 5 key bits do not fit in 16-bit codes"):
        FaissMultiHashIndex(16, nhash=4, b=5)
    with pytest.raises(ValueError, match="nhash=17 tables need at least one bit each"):
        FaissMultiHashIndex(16, nhash=17)
    index = FaissMultiHashIndex(64)
    assert (index.nhash, index.b, index.nflip) == (4, 16, 0)
    with pytest.raises(ValueError, match="nflip must be an integer >= 0"):
        index.nflip = -1
    assert FaissHashIndex(12).b == 12 and FaissHashIndex(64).b == 16


@pytest.mark.parametrize("cls", [FaissHashIndex, FaissMultiHashIndex])
def test_eight_bit_codes_hash_safely(cls):
    # 1-byte codes: faiss reads 64-bit words from them (the backend pads its buffers)
    db = np.tile(np.arange(256, dtype=np.uint8), 3)[:, None]  # each code 3 times
    index = cls(8, b=4) if cls is FaissHashIndex else cls(8, nhash=2, b=4)
    index.add(db)
    (d, i), = index.range_search(np.array([[0b1111]], np.uint8), 0)
    assert d.tolist() == [0, 0, 0] and i.tolist() == [15, 271, 527]
