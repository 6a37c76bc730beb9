"""Contract tests over the index registry: every backend honours the HammingIndex interface."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from hashret.codes import hamming_distances
from hashret.index import (
    INDEXES,
    MISSING_DISTANCE,
    MISSING_INDEX,
    FlatIndex,
    HammingIndex,
    create_index,
    list_indexes,
)
from hashret.index import _faiss as faiss_glue

NAMES = list_indexes()
SMALL_OPTIONS = {"faiss-ivf": {"nlist": 8, "nprobe": 2}}  # as in conftest
EXACT = [n for n in NAMES if INDEXES[n].exact]
EXACT_RANGE = [n for n in NAMES if INDEXES[n].exact_range]


def check_rows(index: HammingIndex, queries: np.ndarray, db: np.ndarray, dist, idx, k: int) -> None:
    """Shapes, dtypes, sorting by (distance, index), true distances, distinct ids."""
    kk = min(k, len(db))
    assert dist.shape == idx.shape == (len(queries), kk)
    assert dist.dtype == np.int32 and idx.dtype == np.int64
    true = hamming_distances(queries, db)  # [q, n]
    for q, (d, i) in enumerate(zip(dist, idx, strict=True)):
        found = i != MISSING_INDEX
        n_found = int(found.sum())
        assert found[:n_found].all(), "empty slots come last"
        assert (d[~found] == MISSING_DISTANCE).all()
        assert ((0 <= i[found]) & (i[found] < len(db))).all()
        assert len(set(i[found].tolist())) == n_found
        np.testing.assert_array_equal(d[found], true[q, i[found]])
        keys = list(zip(d[found].tolist(), i[found].tolist(), strict=True))
        assert keys == sorted(keys), "sorted by distance, ties by index"
        if index.exact:
            assert n_found == kk


def test_registry_lists_the_backends():
    assert {"numpy", "faiss-flat", "faiss-hash", "faiss-multihash", "faiss-ivf"} <= set(NAMES)
    assert NAMES == sorted(NAMES)
    assert isinstance(create_index("numpy", 32), FlatIndex)
    assert "numpy" in EXACT and "faiss-flat" in EXACT


def test_create_index_errors():
    with pytest.raises(ValueError, match="unknown index 'annoy'.*faiss-flat"):
        create_index("annoy", 32)
    with pytest.raises(ValueError, match="takes no option nprobe: its options are b, nflip"):
        create_index("faiss-hash", 32, nprobe=3)
    with pytest.raises(ValueError, match="bits=300 is out of range"):
        create_index("faiss-flat", 300)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("bits", [8, 12, 64])
def test_shapes_dtypes_sorted_and_true_distances(name, bits, build_index, tied_codes):
    db, q = tied_codes(1, 600, bits)
    index = build_index(name, bits, db)
    assert len(index) == 600 and index.bits == bits and index.nbytes == db.shape[1]
    assert index.dim == 8 * db.shape[1]
    for k in (1, 7, 100, 600, 1000):
        dist, idx = index.search(q, k)
        check_rows(index, q, db, dist, idx, k)


@pytest.mark.parametrize("name", EXACT)
@pytest.mark.parametrize("bits", [8, 12, 16, 32])
@pytest.mark.parametrize("k", [1, 5, 64, 399, 400, 401, 10_000])
def test_exact_backends_equal_the_reference_with_ties(name, bits, k, build_index, tied_codes):
    db, q = tied_codes(bits + k, 400, bits)
    ref = build_index("numpy", bits, db)
    index = build_index(name, bits, db)
    dist, idx = index.search(q, k)
    ref_dist, ref_idx = ref.search(q, k)
    np.testing.assert_array_equal(dist, ref_dist)
    np.testing.assert_array_equal(idx, ref_idx)


@pytest.mark.parametrize("name", EXACT_RANGE)
@pytest.mark.parametrize("bits", [8, 16, 24, 64])
def test_exact_range_search_equals_the_reference(name, bits, build_index, tied_codes):
    db, q = tied_codes(bits, 1500, bits)
    ref = build_index("numpy", bits, db)
    index = build_index(name, bits, db)
    for radius in (0, 1, 2, 3, np.arange(len(q)) % 4):
        got, want = index.range_search(q, radius), ref.range_search(q, radius)
        assert len(got) == len(want) == len(q)
        for (d, i), (rd, ri) in zip(got, want, strict=True):
            assert d.dtype == np.int32 and i.dtype == np.int64
            np.testing.assert_array_equal(i, ri)
            np.testing.assert_array_equal(d, rd)
    huge = 10**12  # a radius beyond the code length holds everything
    for (d, i), (rd, ri) in zip(index.range_search(q[:3], huge), ref.range_search(q[:3], huge), strict=True):
        assert len(i) == len(db)
        np.testing.assert_array_equal(i, ri)
        np.testing.assert_array_equal(d, rd)


@pytest.mark.parametrize("name", NAMES)
def test_range_search_results_are_true_and_sorted(name, build_index, tied_codes):
    db, q = tied_codes(3, 800, 16)
    index = build_index(name, 16, db)
    true = hamming_distances(q, db)
    for row, (d, i) in enumerate(index.range_search(q, 4)):
        assert (d <= 4).all()
        np.testing.assert_array_equal(d, true[row, i])
        keys = list(zip(d.tolist(), i.tolist(), strict=True))
        assert keys == sorted(keys) and len(set(i.tolist())) == len(i)
        if index.exact_range:
            assert len(i) == int((true[row] <= 4).sum())


@pytest.mark.parametrize("name", NAMES)
def test_add_in_batches_equals_one_add(name, build_index, tied_codes):
    db, q = tied_codes(5, 900, 24)
    one = build_index(name, 24, db)
    several = create_index(name, 24, **SMALL_OPTIONS.get(name, {}))
    if name == "faiss-ivf":  # same centroids as `one`, which trained on its first (only) add
        several.train(db)
    several.add(db[:300])
    several.add(db[300:301])
    several.add(db[301:301])  # an empty batch is a no-op
    several.add(db[301:])
    assert len(several) == len(one) == 900
    for a, b in zip(one.search(q, 50), several.search(q, 50), strict=True):
        np.testing.assert_array_equal(a, b)
    for (da, ia), (db_, ib) in zip(one.range_search(q, 5), several.range_search(q, 5), strict=True):
        np.testing.assert_array_equal(da, db_)
        np.testing.assert_array_equal(ia, ib)


@pytest.mark.parametrize("name", NAMES)
def test_input_errors(name, build_index, random_codes, rng):
    index = create_index(name, 12, **({"nlist": 4} if name == "faiss-ivf" else {}))
    good = random_codes(rng, 50, 12)
    with pytest.raises(ValueError, match="the index is empty: add codes first"):
        index.search(good, 3)
    with pytest.raises(ValueError, match="the index is empty: add codes first"):
        index.range_search(good, 1)
    with pytest.raises(ValueError, match=r"uint8\[n, 2\] \(packed 12-bit codes\).*shape \(50, 3\)"):
        index.add(np.zeros((50, 3), np.uint8))
    with pytest.raises(ValueError, match="hashret.codes.pack"):
        index.add(good.astype(np.int64))
    with pytest.raises(ValueError, match="padding bits"):
        index.add(np.full((2, 2), 255, np.uint8))
    index.add(good)
    with pytest.raises(ValueError, match=r"queries must be uint8\[n, 2\].*bits=12"):
        index.search(np.zeros((3, 1), np.uint8), 3)
    with pytest.raises(ValueError, match=r"codes\[None\]"):
        index.search(good[0], 3)
    for bad_k in (0, -1, 2.0, True, None):
        with pytest.raises(ValueError, match="k must be an integer >= 1"):
            index.search(good, bad_k)
    for bad_radius in (-1, 1.5, np.array([1, 2]), np.full(50, -1)):
        with pytest.raises(ValueError, match="radius"):
            index.range_search(good, bad_radius)


@pytest.mark.parametrize("name", NAMES)
def test_k_capped_empty_queries_and_reset(name, build_index, random_codes, rng):
    db = random_codes(rng, 40, 16)
    index = build_index(name, 16, db)
    dist, idx = index.search(db[:3], 1000)
    assert dist.shape == idx.shape == (3, 40)
    dist, idx = index.search(db[:0], 5)
    assert dist.shape == idx.shape == (0, 5) and dist.dtype == np.int32 and idx.dtype == np.int64
    assert index.range_search(db[:0], 2) == []
    assert repr(index).endswith("(bits=16, size=40)")
    index.reset()
    assert len(index) == 0
    with pytest.raises(ValueError, match="empty"):
        index.search(db[:3], 2)
    index.add(db[20:])  # ids start at 0 again
    dist, idx = index.search(db[20:23], 1)
    assert dist[:, 0].tolist() == [0, 0, 0] and set(idx[:, 0].tolist()) <= set(range(20))


@pytest.mark.parametrize("name", NAMES)
def test_a_query_finds_itself(name, build_index, random_codes, rng):
    db = random_codes(rng, 2000, 64)  # distinct with near certainty
    index = build_index(name, 64, db)
    dist, idx = index.search(db[:20], 1)
    assert dist[:, 0].tolist() == [0] * 20 and idx[:, 0].tolist() == list(range(20))


def test_flat_index_keeps_its_codes(random_codes, rng):
    db = random_codes(rng, 30, 48)
    index = FlatIndex(48)
    index.add(db[:10])
    index.add(db[10:])
    np.testing.assert_array_equal(index.codes, db)
    assert index.codes.dtype == np.uint8


def test_missing_faiss_names_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "faiss", None)  # `import faiss` now raises ImportError
    with pytest.raises(ImportError, match="pip install faiss-cpu"):
        faiss_glue.import_faiss()
    with pytest.raises(ImportError, match="pip install faiss-cpu"):
        create_index("faiss-flat", 64)
    assert len(create_index("numpy", 64)) == 0  # the reference needs no faiss
