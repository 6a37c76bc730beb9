"""The numba popcount backend returns exactly the numpy reference's answer, ties included."""

from __future__ import annotations

import numba
import numpy as np
import pytest

from hashret.codes import pack
from hashret.index import FlatIndex, PopcountIndex, create_index
from hashret.index import _popcount_kernels as kernels


def both(bits: int, db: np.ndarray, **options) -> tuple[PopcountIndex, FlatIndex]:
    fast, ref = PopcountIndex(bits, **options), FlatIndex(bits)
    fast.add(db)
    ref.add(db)
    return fast, ref


def assert_same_search(fast, ref, queries: np.ndarray, k: int) -> None:
    dist, idx = fast.search(queries, k)
    ref_dist, ref_idx = ref.search(queries, k)
    assert dist.dtype == np.int32 and idx.dtype == np.int64
    np.testing.assert_array_equal(dist, ref_dist)
    np.testing.assert_array_equal(idx, ref_idx)


def assert_same_range(fast, ref, queries: np.ndarray, radius) -> None:
    got, want = fast.range_search(queries, radius), ref.range_search(queries, radius)
    assert len(got) == len(want) == len(queries)
    for (d, i), (rd, ri) in zip(got, want, strict=True):
        assert d.dtype == np.int32 and i.dtype == np.int64
        np.testing.assert_array_equal(i, ri)
        np.testing.assert_array_equal(d, rd)


def few_distinct(seed: int, n: int, bits: int, distinct: int, n_queries: int = 20) -> tuple[np.ndarray, ...]:
    """Codes drawn from ``distinct`` patterns: thousands of codes tie at every distance."""
    rng = np.random.default_rng(seed)
    patterns = pack(rng.integers(0, 2, size=(distinct, bits), dtype=np.uint8))
    db = patterns[rng.integers(0, distinct, size=n)]
    q = np.concatenate([patterns[:2], pack(rng.integers(0, 2, size=(n_queries - 2, bits), dtype=np.uint8))])
    return db, q


@pytest.mark.parametrize("bits", [8, 12, 48, 64, 100, 128, 256])
def test_search_equals_the_reference_with_ties(bits, tied_codes):
    # 5,000 codes = 78 full chunks and a partial one; 37 queries = two full blocks of 16 and a partial one
    db, q = tied_codes(bits, 5000, bits, n_queries=37)
    fast, ref = both(bits, db)
    for k in (1, 2, 7, 60, 100, 1000, 4999, 5000, 5001, 10**6):
        assert_same_search(fast, ref, q, k)


@pytest.mark.parametrize("n", [1, 2, 63, 64, 65, 200])
def test_small_databases(n, tied_codes):
    db, q = tied_codes(n, n, 64, n_queries=17)
    fast, ref = both(64, db)
    for k in (1, 3, n, n + 1):
        assert_same_search(fast, ref, q, k)


@pytest.mark.parametrize("bits", [16, 64, 200])
def test_heavy_ties_and_the_overflow_pass(bits):
    # 6 patterns in 40,000 codes: about 6,700 codes at each distance a query sees. Every chunk's
    # minimum is the nearest pattern's distance, so for k up to the 625 chunks the bound stops
    # the rescan after k codes at that distance; beyond 625 the bound is the code length, every
    # code is a hit, more than the 4 k + 4096 buffer holds, and the placement recomputes instead.
    db, q = few_distinct(bits, 40_000, bits, distinct=6)
    fast, ref = both(bits, db)
    for k in (1, 10, 500, 1000, 6000, 7000, 20_000):
        assert_same_search(fast, ref, q, k)
    assert 1000 > 40_000 // kernels.CHUNK and 40_000 > 4 * 7000 + kernels.MIN_HIT_BUFFER


def test_random_codes_where_the_chunk_bound_prunes(rng, random_codes):
    # 200,000 random 64-bit codes: the bound leaves a few percent of the chunks to rescan
    db = random_codes(rng, 200_000, 64)
    q = np.concatenate([db[[5, 199_999]], random_codes(rng, 30, 64)])
    fast, ref = both(64, db)
    for k in (1, 10, 1000):
        assert_same_search(fast, ref, q, k)


@pytest.mark.parametrize("bits", [8, 12, 64, 100, 256])
def test_range_search_equals_the_reference(bits, tied_codes):
    db, q = tied_codes(bits + 1, 3000, bits, n_queries=21)
    fast, ref = both(bits, db)
    for radius in (0, 1, 2, bits // 4, bits // 2, bits, 10**12, np.arange(len(q)) % 5):
        assert_same_range(fast, ref, q, radius)


def test_threads_give_identical_results(tied_codes):
    db, q = tied_codes(7, 20_000, 48, n_queries=70)
    one = PopcountIndex(48, threads=1)
    every = PopcountIndex(48)  # all of numba's threads
    for index in (one, every):
        index.add(db)
    for k in (1, 50, 1000):
        for a, b in zip(one.search(q, k), every.search(q, k), strict=True):
            np.testing.assert_array_equal(a, b)
    for (da, ia), (db_, ib) in zip(one.range_search(q, 12), every.range_search(q, 12), strict=True):
        np.testing.assert_array_equal(da, db_)
        np.testing.assert_array_equal(ia, ib)


def test_thread_count_is_restored_after_a_search(random_codes, rng):
    before = numba.get_num_threads()
    index = PopcountIndex(32, threads=1)
    index.add(random_codes(rng, 100, 32))
    index.search(random_codes(rng, 3, 32), 5)
    index.range_search(random_codes(rng, 3, 32), 5)
    assert numba.get_num_threads() == before


def test_threads_option_errors():
    with pytest.raises(ValueError, match="threads must be an integer >= 1"):
        PopcountIndex(64, threads=0)
    too_many = numba.config.NUMBA_NUM_THREADS + 1
    with pytest.raises(ValueError, match="exceeds numba's thread pool.*NUMBA_NUM_THREADS"):
        PopcountIndex(64, threads=too_many)
    assert create_index("popcount", 64, threads=1).threads == 1


def test_codes_are_stored_as_zero_padded_words(random_codes, rng):
    db = random_codes(rng, 10, 100)  # 13 bytes -> 2 words
    index = PopcountIndex(100)
    index.add(db[:4])
    index.add(db[4:])
    words = index.code_words
    assert words.shape == (10, 2) and words.dtype == np.uint64
    as_bytes = words.view(np.uint8)
    np.testing.assert_array_equal(as_bytes[:, :13], db)
    assert not as_bytes[:, 13:].any()
    db[0] = 0  # the index keeps its own copy
    assert as_bytes[0, :13].any()


def test_search_kernels_cached_follows_numba_cache_files(tmp_path, monkeypatch):
    """The 'compiling the search kernels' notice appears exactly when an index file is missing."""
    from hashret.index import _popcount_kernels
    from hashret.index.popcount import search_kernels_cached

    index = PopcountIndex(64)
    index.add(np.zeros((3, 8), np.uint8))
    index.search(np.zeros((1, 8), np.uint8), 1)
    index.range_search(np.zeros((1, 8), np.uint8), 0)
    from hashret.index import _distance_kernels

    rows, out, which = np.zeros((2, 4), np.float32), np.zeros(2, np.float32), np.arange(2, dtype=np.int64)
    _distance_kernels.squared_l2_f32(rows, which, rows[0], out)
    _distance_kernels.squared_l2_f16(rows.astype(np.float16).view(np.uint16), which, rows[0], out)
    assert search_kernels_cached()
    cache = _popcount_kernels.top_k._cache._cache_file
    monkeypatch.setattr(cache, "_index_path", str(tmp_path / "missing.nbi"))
    assert not search_kernels_cached()
