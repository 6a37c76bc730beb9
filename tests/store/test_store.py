"""The persistent index directory: exact search, reopen, remove, compact, features, bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest

from hashret.index import FlatIndex
from hashret.store.directory import MAX_SEGMENTS, IndexLockedError, IndexStore
from hashret.store.manifest import IndexCorruptError, read_manifest
from hashret.store.metadata import ItemMeta

BITS, DIM = 20, 12  # 20 bits: 3 bytes with 4 padding bits


def data(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Few distinct codes (many ties) and float features."""
    from hashret.codes import pack

    rng = np.random.default_rng(seed)
    protos = rng.integers(0, 2, (8, BITS), dtype=np.uint8)
    bits = protos[rng.integers(0, 8, n)] ^ (rng.random((n, BITS)) < 0.1)
    return pack(bits.astype(np.uint8)), rng.normal(size=(n, DIM)).astype(np.float32)


def reference(codes: np.ndarray, live: np.ndarray, queries: np.ndarray, k: int):
    """Exact top-k over the live rows (FlatIndex), mapped back to row numbers = ids."""
    ref = FlatIndex(BITS)
    ref.add(codes[live])
    d, i = ref.search(queries, k)
    return d, np.flatnonzero(live)[i]


@pytest.fixture
def store(tmp_path):
    codes, feats = data(500)
    s = IndexStore.create(tmp_path / "ix", bits=BITS, feature_dim=DIM, backend="numpy",
                          feature_storage="float32")
    for lo in range(0, 500, 100):
        items = [ItemMeta(f"img{i}.png", i % 4) for i in range(lo, lo + 100)]
        s.add(codes[lo:lo + 100], feats[lo:lo + 100], items)
    yield s, codes, feats
    s.close()


@pytest.mark.parametrize("backend", ["numpy", "faiss-flat"])
def test_search_is_exact_and_survives_reopen(tmp_path, backend):
    codes, feats = data(400)
    queries = data(7, seed=1)[0]
    with IndexStore.create(tmp_path / "ix", bits=BITS, feature_dim=DIM, backend=backend) as s:
        ids = np.concatenate([s.add(codes[:150], feats[:150]), s.add(codes[150:], feats[150:])])
        assert ids.tolist() == list(range(400))
        before = s.search(queries, k=30)
    d, i = reference(codes, np.ones(400, bool), queries, 30)
    with IndexStore.open(tmp_path / "ix") as s:
        after = s.search(queries, k=30)
    for r, (b, a) in enumerate(zip(before, after, strict=True)):
        assert b.indices.tolist() == a.indices.tolist() == i[r].tolist()
        assert b.hamming.tolist() == a.hamming.tolist() == d[r].tolist()


def test_remove_hides_items_exactly_and_persists(store, tmp_path):
    s, codes, _ = store
    queries = data(5, seed=2)[0]
    gone = [0, 3, 4, 250, 499]
    assert s.remove(gone) == 5
    live = np.ones(500, bool)
    live[gone] = False
    d, i = reference(codes, live, queries, 50)
    for res in (s.search(queries, k=50), IndexStore.open(tmp_path / "ix").search(queries, k=50)):
        assert [r.indices.tolist() for r in res] == i.tolist()
        assert [r.hamming.tolist() for r in res] == d.tolist()
    assert len(s) == 495
    with pytest.raises(KeyError, match="no item with id 3"):
        s.remove([3])  # already removed
    with pytest.raises(KeyError, match="9999"):
        s.remove([1, 9999])  # nothing removed when one id is bad
    assert len(s) == 495 and 1 in s.live_ids()
    with pytest.raises(KeyError):
        s.get_items([250])


def test_compact_keeps_ids_and_results(store):
    s, codes, _ = store
    queries = data(5, seed=3)[0]
    s.remove(list(range(0, 500, 7)))
    before = s.search(queries, k=40)
    s.compact()
    assert len(s.manifest.segments) == 1 and s.manifest.removed is None
    after = s.search(queries, k=40)
    assert [r.indices.tolist() for r in before] == [r.indices.tolist() for r in after]
    assert s.get_items([1])[0].source == "img1.png"
    assert sorted(p.name for p in (s.root / "segments").iterdir()) == sorted(
        f for seg in s.manifest.segments for f in (f"{seg.name}.codes.npy", f"{seg.name}.features.npy",
                                                    f"{seg.name}.ids.npy"))


def test_many_small_adds_are_merged(tmp_path):
    codes, feats = data(MAX_SEGMENTS + 5)
    with IndexStore.create(tmp_path / "ix", bits=BITS, feature_dim=DIM, backend="numpy") as s:
        for j in range(len(codes)):
            s.add(codes[j:j + 1], feats[j:j + 1])
        assert len(s.manifest.segments) <= MAX_SEGMENTS
        res = s.search(codes[:3], k=len(codes))
    d, i = reference(codes, np.ones(len(codes), bool), codes[:3], len(codes))
    assert [r.indices.tolist() for r in res] == i.tolist()


def test_rerank_matches_a_direct_computation(store):
    s, codes, feats = store
    q_codes, q_feats = data(4, seed=5)
    res = s.search(q_codes, q_feats, k=10, candidates=60, rerank=True, ties=False)
    d, i = reference(codes, np.ones(500, bool), q_codes, 60)
    for r, res_q in enumerate(res):
        eu = np.linalg.norm(feats[i[r]] - q_feats[r], axis=1)
        order = np.lexsort((i[r], d[r], eu))[:10]
        assert res_q.indices.tolist() == i[r][order].tolist()
        np.testing.assert_allclose(res_q.euclidean, eu[order], rtol=1e-5)
    wide = s.search(q_codes, q_feats, k=500, candidates=60, rerank=True)  # ties: the ball of the 60th
    d_all, i_all = reference(codes, np.ones(500, bool), q_codes, 500)
    for r, res_q in enumerate(wide):
        assert sorted(res_q.indices.tolist()) == sorted(i_all[r][d_all[r] <= d[r][-1]].tolist())
    radius = s.search(q_codes, q_feats, k=500, radius=3, rerank=True)
    ref = FlatIndex(BITS)
    ref.add(codes)
    for res_q, (_, hits) in zip(radius, ref.range_search(q_codes, 3), strict=True):
        assert sorted(res_q.indices.tolist()) == sorted(hits.tolist())
        assert (res_q.hamming <= 3).all() and np.all(np.diff(res_q.euclidean) >= 0)


def test_search_by_a_stored_item_finds_itself_first(store):
    s, _, _ = store
    code, feat = s.item_vectors(123)
    res = s.search(code[None], feat[None], k=3, rerank=True, features_stored=True)[0]
    assert res.indices[0] == 123 and res.euclidean[0] == 0 and res.hamming[0] == 0


@pytest.mark.parametrize("storage", ["float16", "pca"])
def test_compressed_features_approximate_float32(tmp_path, storage):
    codes, feats = data(300)
    q_codes, q_feats = data(3, seed=6)
    kw = {"pca_dim": DIM} if storage == "pca" else {}  # full-rank PCA: a rotation, same distances
    exact = IndexStore.create(tmp_path / "a", bits=BITS, feature_dim=DIM, feature_storage="float32")
    comp = IndexStore.create(tmp_path / "b", bits=BITS, feature_dim=DIM, feature_storage=storage, **kw)
    for s in (exact, comp):
        s.add(codes, feats)
    for a, b in zip(exact.search(q_codes, q_feats, k=20, candidates=300, rerank=True),
                    comp.search(q_codes, q_feats, k=20, candidates=300, rerank=True), strict=True):
        np.testing.assert_allclose(a.euclidean, b.euclidean, rtol=2e-3, atol=2e-3)
    if storage == "pca":
        reopened = IndexStore.open(tmp_path / "b")
        assert reopened.manifest.pca is not None
        np.testing.assert_array_equal(reopened.search(q_codes, q_feats, k=5, rerank=True)[0].indices,
                                      comp.search(q_codes, q_feats, k=5, rerank=True)[0].indices)
    exact.close()
    comp.close()


def test_pca_needs_enough_rows_in_the_first_batch(tmp_path):
    codes, feats = data(5)
    with IndexStore.create(tmp_path / "ix", bits=BITS, feature_dim=DIM, feature_storage="pca",
                           pca_dim=8) as s:
        with pytest.raises(ValueError, match="at least 8 rows"):
            s.add(codes, feats)
        assert len(s) == 0 and s.manifest.generation == 0


def test_bad_input_leaves_the_index_as_it_was(store):
    s, codes, feats = store
    state = (s.manifest.generation, len(s), sorted(p.name for p in (s.root / "segments").iterdir()))
    nan = feats[:2].copy()
    nan[0, 0] = np.nan
    for bad_codes, bad_feats, match in [
        (codes[:2, :2], feats[:2], "shape"),  # 16-bit codes into a 20-bit index
        (codes[:2] | 0xF0, feats[:2], "padding"),  # padding bits set
        (codes[:2], feats[:2, :5], "feature dimension"),
        (codes[:2], nan, "NaN"),
        (codes[:2], feats[:3], "3 feature rows"),
    ]:
        with pytest.raises(ValueError, match=match):
            s.add(bad_codes, bad_feats)
    assert (s.manifest.generation, len(s), sorted(p.name for p in (s.root / "segments").iterdir())) == state
    with pytest.raises(ValueError, match="k must be"):
        s.search(codes[:1], k=0)
    with pytest.raises(ValueError, match="shape"):
        s.search(codes[:1, :2], k=3)
    with pytest.raises(ValueError, match="query_features"):
        s.search(codes[:1], k=3, rerank=True)


def test_empty_and_missing_indexes_say_what_to_do(tmp_path):
    with IndexStore.create(tmp_path / "ix", bits=BITS, feature_dim=DIM) as s:
        with pytest.raises(ValueError, match="empty"):
            s.search(data(1)[0], k=3)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        IndexStore.open(tmp_path / "nope")
    (tmp_path / "plain").mkdir()
    with pytest.raises(FileNotFoundError, match="not a hashret index"):
        IndexStore.open(tmp_path / "plain")
    with pytest.raises(FileExistsError, match="already holds an index"):
        IndexStore.create(tmp_path / "ix", bits=BITS, feature_dim=DIM)


def test_truncated_and_corrupted_files_are_detected(store, tmp_path):
    s, codes, _ = store
    s.close()
    root = tmp_path / "ix"
    seg = read_manifest(root).segments[0]
    path = root / seg.features.name
    blob = path.read_bytes()
    path.write_bytes(blob[:-10])  # truncated
    with pytest.raises(IndexCorruptError, match="truncated"):
        IndexStore.open(root)
    corrupted = bytearray(blob)
    corrupted[-1] ^= 0xFF  # same size, different content
    path.write_bytes(bytes(corrupted))
    with pytest.raises(IndexCorruptError, match="SHA-256"):
        IndexStore.open(root)  # small index: checksums verified at open by default
    IndexStore.open(root, verify=False).close()  # sizes only
    path.write_bytes(blob)
    IndexStore.open(root, verify=True).close()
    (root / "manifest.json").write_text("{not json")
    with pytest.raises(IndexCorruptError, match="not valid JSON"):
        IndexStore.open(root)
    (root / "manifest.json").write_text(json.dumps({"format": "hashret-index", "format_version": 99}))
    with pytest.raises(IndexCorruptError, match="format version 99"):
        IndexStore.open(root)


def test_one_writer_many_readers(store, tmp_path):
    s, codes, feats = store
    with pytest.raises(IndexLockedError, match="another process"):
        IndexStore.open(tmp_path / "ix", writable=True)
    reader = IndexStore.open(tmp_path / "ix")
    n0 = len(reader)
    s.add(codes[:10], feats[:10])
    assert len(reader) == n0  # a reader keeps its snapshot until it refreshes
    assert reader.refresh() and len(reader) == n0 + 10
    assert reader.search(codes[:1], k=1)[0].hamming[0] == 0
    with pytest.raises(PermissionError, match="read-only"):
        reader.add(codes[:1], feats[:1])
    reader.close()


def test_tied_codes_all_reach_the_rerank(tmp_path):
    """300 items share one code: a strict top-10 pool is ids 0..9; with ties it is all 300."""
    codes = np.repeat(data(1)[0], 300, axis=0)
    feats = np.random.default_rng(7).normal(size=(300, DIM)).astype(np.float32)
    with IndexStore.create(tmp_path / "ix", bits=BITS, feature_dim=DIM, feature_storage="float32") as s:
        s.add(codes, feats)
        code, feat = s.item_vectors(250)
        found = s.search(code[None], feat[None], k=3, candidates=10, rerank=True, features_stored=True)[0]
        assert found.indices[0] == 250 and found.euclidean[0] == 0  # ties widen the pool by default
        strict = s.search(code[None], feat[None], k=3, candidates=10, rerank=True, features_stored=True,
                          ties=False)[0]
        assert set(strict.indices.tolist()) <= set(range(10))
        plain = s.search(code[None], k=3)[0]  # Hamming only: database order, no widening
        assert plain.indices.tolist() == [0, 1, 2]


@pytest.mark.parametrize("duplicates", [1, 50])
def test_ties_pool_is_the_ball_of_the_nth_distance(duplicates):
    """Few ties (the top-4N window holds the ball) and many (a range search takes over)."""
    from hashret.search import HierarchicalSearcher

    rng = np.random.default_rng(duplicates)
    codes = np.repeat(rng.integers(0, 256, (600 // duplicates, 8), dtype=np.uint8), duplicates, axis=0)
    flat = FlatIndex(64)
    flat.add(codes)
    searcher = HierarchicalSearcher(flat, np.zeros((len(codes), 2), np.float32))
    queries = rng.integers(0, 256, (6, 8), dtype=np.uint8)
    pools = searcher.search(queries, None, k=len(codes), candidates=20, rerank=False, ties=True)
    d20 = flat.search(queries, 20)[0][:, -1]
    for q, res in enumerate(pools):
        ball_d, ball_i = flat.range_search(queries[q:q + 1], int(d20[q]))[0]
        assert res.indices.tolist() == ball_i.tolist() and res.hamming.tolist() == ball_d.tolist()
        assert len(res) >= 20
