"""The Milvus backend against the numpy reference, on real engines: the embedded Milvus Lite 2.5
and a Milvus 2.3.5 standalone server (one vector field per collection: the "array" layout).

No mocks: the tests that take ``uri`` run once on a milvus-lite database from a temporary
``.db`` file and once on the session's Milvus 2.3.5 server (``milvus_server``, marked slow).
Milvus's limit of 16,384 results per request is lowered (``MAX_LIMIT``) in some tests so
that the paths which work around it (id windows, distance bands) run on small data.
"""

from __future__ import annotations

import socket
import sys

import numpy as np
import pytest

pytest.importorskip("pymilvus", reason="the milvus extra is not installed: pip install 'hashret[milvus]'")
pytest.importorskip("milvus_lite", reason="milvus-lite 2.5 (the embedded engine) is not installed: "
                                          "pip install 'hashret[milvus]'")

from hashret.index import FlatIndex, create_index  # noqa: E402
from hashret.index import milvus as milvus_mod  # noqa: E402
from hashret.index.metadata import ItemMeta  # noqa: E402
from hashret.index.milvus import MilvusIndex, MilvusUnavailableError  # noqa: E402
from hashret.search import HierarchicalSearcher  # noqa: E402


@pytest.fixture(scope="module", params=["lite", pytest.param("server", marks=pytest.mark.slow)])
def uri(request, tmp_path_factory) -> str:
    """One embedded database for the module (each new file starts a Milvus Lite server), or the
    session's Milvus 2.3.5 server."""
    if request.param == "server":
        return request.getfixturevalue("milvus_server").uri
    return str(tmp_path_factory.mktemp("milvus") / "test.db")


def _is_server(uri: str) -> bool:
    return uri.startswith("http://")


def _numpy_index(bits: int, codes: np.ndarray) -> FlatIndex:
    index = FlatIndex(bits)
    index.add(codes)
    return index


def _same(a, b) -> None:
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x, y)


def _same_range(got, want) -> None:
    assert len(got) == len(want)
    for (d, i), (rd, ri) in zip(got, want, strict=True):
        assert d.dtype == np.int32 and i.dtype == np.int64
        np.testing.assert_array_equal(i, ri)
        np.testing.assert_array_equal(d, rd)


@pytest.mark.parametrize("bits", [8, 64])
def test_exact_beyond_milvus_result_limit(bits, uri, tied_codes, monkeypatch):
    """Top-k and range results equal the reference when answers exceed Milvus's per-request
    limit (lowered to 40 here): boundary ties, k > limit, range answers asked again with the full
    limit (the first ask: 10) and split by id windows."""
    monkeypatch.setattr(milvus_mod, "MAX_LIMIT", 40)
    monkeypatch.setattr(milvus_mod, "_BAND_LIMIT", 10)
    db, q = tied_codes(bits, 500, bits, n_queries=8)
    ref = FlatIndex(bits)
    ref.add(db)
    index = MilvusIndex(bits, uri=uri, collection=f"limits{bits}", overwrite=True)
    index.add(db[:250])
    index.add(db[250:])
    for k in (1, 7, 39, 40, 41, 150, 499, 5000):
        _same(index.search(q, k), ref.search(q, k))
    for radius in (0, 1, bits // 4, np.arange(len(q)) % 3, 10**9):
        _same_range(index.range_search(q, radius), ref.range_search(q, radius))


def test_persists_and_reopens_with_ids_continuing(uri, random_codes, rng):
    db = random_codes(rng, 300, 48)
    first = MilvusIndex(48, uri=uri, collection="persist", overwrite=True)
    assert first.add(db[:200]).tolist() == list(range(200))
    again = MilvusIndex(48, uri=uri, collection="persist")  # another client of the same collection
    assert len(again) == 200 and again.next_id == 200
    assert again.add(db[200:]).tolist() == list(range(200, 300))
    ref = FlatIndex(48)
    ref.add(db)
    _same(first.search(db[:20], 25), ref.search(db[:20], 25))
    assert first.info()["items"] == 300 and first.info()["state"] == "ready"


def test_remove_keeps_ids_and_exactness(uri, tied_codes):
    db, q = tied_codes(3, 500, 16)
    index = MilvusIndex(16, uri=uri, collection="remove", overwrite=True)
    index.add(db)
    gone = np.arange(0, 500, 3)
    assert index.remove(gone) == len(gone)
    with pytest.raises(KeyError, match="no item with id 0"):
        index.remove([0, 1])
    keep = np.setdiff1d(np.arange(500), gone)
    ref = FlatIndex(16)
    ref.add(db[keep])
    d, i = index.search(q, 30)
    rd, ri = ref.search(q, 30)
    np.testing.assert_array_equal(d, rd)
    np.testing.assert_array_equal(i, keep[ri])  # ids stay those given at insertion
    assert index.add(db[:2]).tolist() == [500, 501]  # never reused


def test_other_code_length_unknown_collection_and_bad_uri(uri, random_codes, rng, tmp_path):
    MilvusIndex(32, uri=uri, collection="len32", overwrite=True).add(random_codes(rng, 10, 32))
    with pytest.raises(ValueError, match="holds 32-bit codes, this index is 64-bit: choose another"):
        MilvusIndex(64, uri=uri, collection="len32")
    MilvusIndex(32, uri=uri, collection="feat8", feature_dim=8, overwrite=True)
    with pytest.raises(ValueError, match="features of dimension 8, not 16"):
        MilvusIndex(32, uri=uri, collection="feat8", feature_dim=16)
    client = milvus_mod.connect(uri)
    client.create_collection("foreign", dimension=4)  # not made by hashret
    with pytest.raises(ValueError, match="was not made by hashret"):
        MilvusIndex(32, uri=uri, collection="foreign")
    with pytest.raises(ValueError, match="not valid in Milvus"):
        MilvusIndex(32, uri=uri, collection="bad-name")
    with pytest.raises(ValueError, match=r"ends in \.db"):
        MilvusIndex(32, uri=str(tmp_path / "index.sqlite"))


def test_unreachable_server_is_a_clear_error():
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(MilvusUnavailableError, match=f"cannot connect to a Milvus server at http://127.0.0.1:{port}"):
        MilvusIndex(64, uri=f"http://127.0.0.1:{port}", timeout=1)


def test_missing_pymilvus_names_the_extra(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "pymilvus", None)  # `import pymilvus` now raises ImportError
    with pytest.raises(ImportError, match=r"pip install 'hashret\[milvus\]'"):
        create_index("milvus", 64, uri=str(tmp_path / "none.db"))


def test_features_metadata_and_hierarchical_search(uri, tied_codes):
    db, q = tied_codes(7, 400, 24, n_queries=10)
    rng = np.random.default_rng(7)
    feats = rng.standard_normal((400, 12)).astype(np.float32)
    qf = rng.standard_normal((10, 12)).astype(np.float32)
    items = [ItemMeta(f"img/{i}.jpg", i % 5, f"class{i % 5}", {"n": i} if i % 2 else {}) for i in range(400)]
    index = MilvusIndex(24, uri=uri, collection="hier", feature_dim=12, overwrite=True)
    with pytest.raises(ValueError, match="pass features="):
        index.add(db)
    with pytest.raises(ValueError, match=r"features must be float \[3, 12\]"):
        index.add(db[:3], feats[:3, :5])
    index.add(db, feats, items)
    assert index.layout == ("array" if _is_server(uri) else "vector")  # Milvus 2.3: one vector field
    got = index.get_items([5, 0, 399])
    assert [(m.source, m.label, m.class_name, m.extra) for m in got] == [
        ("img/5.jpg", 0, "class0", {"n": 5}), ("img/0.jpg", 0, "class0", {}),
        ("img/399.jpg", 4, "class4", {"n": 399})]
    np.testing.assert_array_equal(index.get_features([9, 3]), feats[[9, 3]])
    ref = HierarchicalSearcher(_numpy_index(24, db), feats)
    if index.layout == "array":
        with pytest.raises(ValueError, match=r"stores its features as an array.*rerank_in='client'"):
            index.hierarchical_search(q, qf, 10, candidates=60, rerank_in="milvus")
    for pool in ({"candidates": 60}, {"radius": 6}):
        want = ref.search(q, qf, 10, **pool)
        client = index.hierarchical_search(q, qf, 10, rerank_in="client", **pool)
        inside = index.hierarchical_search(q, qf, 10, **pool)  # in Milvus where the layout allows
        for w, c, m in zip(want, client, inside, strict=True):
            np.testing.assert_array_equal(c.indices, w.indices)  # client side: the same arithmetic
            np.testing.assert_array_equal(c.euclidean, w.euclidean)
            np.testing.assert_array_equal(m.indices, w.indices)  # in Milvus: float32 distances of its own
            np.testing.assert_array_equal(m.hamming, w.hamming)
            np.testing.assert_allclose(m.euclidean, w.euclidean, rtol=1e-5)
    plain = index.hierarchical_search(q, None, 5, rerank=False)
    _same(([r.hamming for r in plain], [r.indices for r in plain]), index.search(q, 5))


def test_rerank_in_milvus_resolves_ties_like_the_reference(uri, monkeypatch):
    """Duplicate features tie in Euclidean distance; order is then Hamming, then id."""
    monkeypatch.setattr(milvus_mod, "MAX_LIMIT", 16)  # several id chunks per pool
    rng = np.random.default_rng(3)
    db = rng.integers(0, 256, (120, 2), dtype=np.uint8)
    feats = np.repeat(rng.standard_normal((6, 4)).astype(np.float32), 20, axis=0)  # 6 distinct rows
    index = MilvusIndex(16, uri=uri, collection="ties", feature_dim=4, overwrite=True)
    index.add(db, feats)
    ref = HierarchicalSearcher(_numpy_index(16, db), feats)
    q, qf = db[:4], feats[[0, 20, 40, 60]]
    for k in (5, 30):
        want = ref.search(q, qf, k, candidates=120)
        for w, g in zip(want, index.hierarchical_search(q, qf, k, candidates=120), strict=True):
            np.testing.assert_array_equal(g.indices, w.indices)


def test_layout_is_chosen_recorded_and_kept(uri, random_codes, rng):
    """Auto: "vector" where the engine holds several vector fields (Milvus Lite 2.5), else
    "array" (Milvus 2.3); reopening keeps the recorded layout; a layout the server cannot
    store, or another than the collection's, is refused with the fix."""
    db = random_codes(rng, 30, 16)
    feats = rng.standard_normal((30, 5)).astype(np.float32)
    auto = MilvusIndex(16, uri=uri, collection="layout_auto", feature_dim=5, overwrite=True)
    auto.add(db, feats)
    want = "array" if _is_server(uri) else "vector"
    assert auto.layout == want and auto.info()["layout"] == want
    desc = milvus_mod.connect(uri).describe_collection("layout_auto")["description"]
    assert desc == f"hashret: 16-bit codes, 5-d features in the {want!r} layout"
    again = MilvusIndex(16, uri=uri, collection="layout_auto")
    assert again.layout == want and again.feature_dim == 5
    np.testing.assert_array_equal(again.get_features([29, 0]), feats[[29, 0]])  # float32 round trip
    other = "vector" if want == "array" else "array"
    with pytest.raises(ValueError, match=f"stores its features in the {want!r} layout, not {other!r}"):
        MilvusIndex(16, uri=uri, collection="layout_auto", layout=other)
    if _is_server(uri):
        with pytest.raises(ValueError, match=r"Milvus v2\.3\.5-lite at http://127\.0\.0\.1:\d+ keeps one "
                                             r"vector field per collection.*upgrade the server to Milvus"):
            MilvusIndex(16, uri=uri, collection="layout_vec", feature_dim=5, layout="vector", overwrite=True)
    else:
        arr = MilvusIndex(16, uri=uri, collection="layout_arr", feature_dim=5, layout="array", overwrite=True)
        arr.add(db, feats)
        assert MilvusIndex(16, uri=uri, collection="layout_arr").layout == "array"
        with pytest.raises(KeyError, match="no item with id 999"):  # an empty answer (lite 2.5.1 quirk)
            arr.get_features([999])
    with pytest.raises(ValueError, match=r"5000-d features exceed the 4096 values a Milvus ARRAY holds"):
        MilvusIndex(16, uri=uri, collection="layout_big", feature_dim=5000, layout="array", overwrite=True)
    with pytest.raises(ValueError, match="layout must be one of vector, array"):
        MilvusIndex(16, uri=uri, collection="layout_bad", feature_dim=5, layout="json")
    codes_only = MilvusIndex(16, uri=uri, collection="layout_none", overwrite=True)
    assert codes_only.layout is None


def test_open_an_existing_collection_or_say_how_to_load_one(uri, random_codes, rng):
    MilvusIndex(24, uri=uri, collection="opened", feature_dim=3, overwrite=True).add(
        random_codes(rng, 5, 24), np.ones((5, 3), np.float32))
    index = MilvusIndex.open(uri, "opened")
    assert (index.bits, index.feature_dim, len(index)) == (24, 3, 5)
    where = uri if _is_server(uri) else uri
    with pytest.raises(LookupError, match=r"no hashret collection 'nothing_here' at .*`hashret index "
                                          r"load-shards SHARDS_DIR --milvus milvus://HOST:PORT/nothing_here`"):
        MilvusIndex.open(where, "nothing_here")
    if _is_server(uri):
        hostport = uri.removeprefix("http://")
        assert len(MilvusIndex.open(f"milvus://{hostport}/opened")) == 5
        with pytest.raises(ValueError, match="names collection 'opened', --collection 'other'"):
            MilvusIndex.open(f"milvus://{hostport}/opened", "other")


@pytest.mark.parametrize("text, uri, collection", [
    ("milvus://127.0.0.1:19530/hashret", "http://127.0.0.1:19530", "hashret"),
    ("milvus://milvus.example:443/images_v2/", "http://milvus.example:443", "images_v2"),
    ("milvus://localhost", "http://localhost:19530", None),
    ("milvus+https://db.example:19530/c", "https://db.example:19530", "c"),
    ("milvus://[::1]:19531/c", "http://[::1]:19531", "c"),
    ("http://host:19530", "http://host:19530", None),
    ("index.db", "index.db", None),
])
def test_parse_milvus_uri(text, uri, collection):
    assert milvus_mod.parse_milvus_uri(text) == milvus_mod.MilvusLocation(uri, collection)


@pytest.mark.parametrize("text, message", [
    ("milvus://user:secret@host:19530/c", "put the credentials in --token user:password"),
    ("milvus://host:port/c", "bad port"),
    ("milvus://host:19530/bad-name", "'bad-name' is not a valid collection name"),
    ("milvus://host:19530/a/b", "'a/b' is not a valid collection name"),
    ("milvus://host:19530/hashret_collections", "not a valid collection name"),
    ("milvus:///c", "is not a Milvus location: use milvus://HOST:PORT/COLLECTION"),
    ("milvus://host:19530/c?x=1", "is not a Milvus location"),
])
def test_parse_milvus_uri_errors(text, message):
    with pytest.raises(ValueError, match=message.replace("?", r"\?")):
        milvus_mod.parse_milvus_uri(text)


@pytest.mark.slow
def test_server_stopping_mid_load_leaves_it_loading_and_resumable(tmp_path):
    """A real Milvus 2.3.5 server stopped during a bulk load: the write fails with the fix named,
    the collection stays "loading" (refused for search) across the restart, and the load resumes."""
    pytest.importorskip("milvus", reason="the Milvus 2.3.5 server package is not installed: "
                                         "pip install 'hashret[milvus-server]'")
    from hashret.index.milvus_server import start_milvus_server

    try:
        server = start_milvus_server(tmp_path / "server")
    except RuntimeError as e:
        pytest.skip(f"the Milvus 2.3.5 server cannot run on this machine: {e}")
    rng = np.random.default_rng(5)
    db = rng.integers(0, 256, (900, 2), dtype=np.uint8)
    feats = rng.standard_normal((900, 4)).astype(np.float32)
    index = MilvusIndex.open_for_loading(16, uri=server.uri, token=None, collection="midload", feature_dim=4,
                                         timeout=5)
    index.insert_rows(np.arange(600), db[:600], feats[:600], None)
    server.stop()
    stopped = r"failed while inserting rows into collection 'midload'.*stays marked as loading.*to resume"
    with pytest.raises(MilvusUnavailableError, match=stopped):
        index.insert_rows(np.arange(600, 900), db[600:], feats[600:], None)
    again = start_milvus_server(tmp_path / "server")  # same data (the old port may be in TIME_WAIT)
    try:
        with pytest.raises(ValueError, match="is being bulk-loaded, or its load stopped part-way"):
            MilvusIndex(16, uri=again.uri, collection="midload")
        resumed = MilvusIndex.open_for_loading(16, uri=again.uri, token=None, collection="midload",
                                               feature_dim=4)
        assert resumed.count_id_range(0, 600) == 600 and resumed.layout == "array"
        resumed.insert_rows(np.arange(600, 900), db[600:], feats[600:], None)
        resumed.mark_ready()
        ready = MilvusIndex(16, uri=again.uri, collection="midload")
        _same(ready.search(db[:10], 20), _numpy_index(16, db).search(db[:10], 20))
        np.testing.assert_array_equal(ready.get_features([899, 0]), feats[[899, 0]])
    finally:
        again.stop()


def test_cli_takes_a_milvus_uri_with_its_collection(capsys):
    from hashret.cli import main

    argv = ["index", "load-shards", "no-such-shards", "--milvus", "milvus://127.0.0.1:19530/images"]
    assert main([*argv, "--collection", "other"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.endswith("--milvus milvus://127.0.0.1:19530/images names collection 'images', --collection "
                        "'other': give one of them")
    argv[-1] = "milvus://127.0.0.1:19530/bad-name"
    assert main(argv) == 2
    assert "'bad-name' is not a valid collection name" in capsys.readouterr().err
