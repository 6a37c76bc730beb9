"""Milvus as a whole collection (``MilvusCollection``: codes, features, metadata, thumbnails,
the model record), on real engines: the embedded Milvus Lite 2.5 and a Milvus 2.3.5 standalone
server (one vector field per collection: the "array" layout; marked slow). No mocks.

Milvus's limit of 16,384 results per request is lowered (``MAX_LIMIT``) in some tests so that
the paths which work around it run on small data. (The same searches against the numpy
reference and the index directory: test_collection_contract.py.)
"""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("pymilvus", reason="the milvus extra is not installed: pip install 'hashret[milvus]'")
pytest.importorskip("milvus_lite", reason="milvus-lite 2.5 (the embedded engine) is not installed: "
                                          "pip install 'hashret[milvus]'")

from hashret.index import FlatIndex  # noqa: E402
from hashret.index import milvus as index_milvus  # noqa: E402
from hashret.index.milvus import MilvusUnavailableError  # noqa: E402
from hashret.search import HierarchicalSearcher  # noqa: E402
from hashret.store import milvus as store_milvus  # noqa: E402
from hashret.store.manifest import IndexCorruptError  # noqa: E402
from hashret.store.metadata import ItemMeta  # noqa: E402
from hashret.store.milvus import MilvusCollection, MilvusPlace, is_milvus_location, parse_location  # noqa: E402


@pytest.fixture(scope="module")
def uri(milvus_uri) -> str:
    return milvus_uri


def _at(uri: str, name: str) -> str:
    """The location of collection ``name`` on the engine at ``uri``."""
    return f"milvus://{uri.removeprefix('http://')}/{name}" if _is_server(uri) else f"{uri}:{name}"


def _is_server(uri: str) -> bool:
    return uri.startswith("http://")


def _numpy_index(bits: int, codes: np.ndarray) -> FlatIndex:
    index = FlatIndex(bits)
    index.add(codes)
    return index


def _same(a, b) -> None:
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x, y)


def _hamming(results) -> tuple[np.ndarray, np.ndarray]:
    return np.stack([r.hamming for r in results]), np.stack([r.indices for r in results])


def test_persists_and_reopens_with_ids_continuing(uri, random_codes, rng):
    db = random_codes(rng, 300, 48)
    first = MilvusCollection.create(_at(uri, "persist"), bits=48, feature_dim=None, overwrite=True)
    assert first.add(db[:200], None).tolist() == list(range(200))
    again = MilvusCollection.open(_at(uri, "persist"), writable=True)  # another client of the collection
    assert len(again) == 200 and again.next_id == 200
    assert again.add(db[200:], None).tolist() == list(range(200, 300))
    _same(_hamming(first.search(db[:20], None, 25)), _numpy_index(48, db).search(db[:20], 25))
    info = again.info()
    assert (info["engine"], info["items"], info["state"], info["location"]) == (
        "milvus", 300, "ready", _at(uri, "persist"))
    with pytest.raises(FileExistsError, match="already holds a hashret collection.*--overwrite"):
        MilvusCollection.create(_at(uri, "persist"), bits=48, feature_dim=None)


def test_read_only_refuses_writes(uri, random_codes, rng):
    MilvusCollection.create(_at(uri, "readonly"), bits=16, feature_dim=None, overwrite=True).add(
        random_codes(rng, 5, 16), None)
    ro = MilvusCollection.open(_at(uri, "readonly"))
    with pytest.raises(ValueError, match="opened read-only: open it with writable=True"):
        ro.add(random_codes(rng, 1, 16), None)
    with pytest.raises(ValueError, match="opened read-only"):
        ro.remove([0])


def test_remove_keeps_ids_and_exactness(uri, tied_codes):
    db, q = tied_codes(3, 500, 16)
    coll = MilvusCollection.create(_at(uri, "remove"), bits=16, feature_dim=None, overwrite=True)
    coll.add(db, None)
    gone = np.arange(0, 500, 3)
    assert coll.remove(gone) == len(gone)
    with pytest.raises(KeyError, match="no item with id 0"):
        coll.remove([0, 1])
    keep = np.setdiff1d(np.arange(500), gone)
    d, i = _hamming(coll.search(q, None, 30))
    rd, ri = _numpy_index(16, db[keep]).search(q, 30)
    np.testing.assert_array_equal(d, rd)
    np.testing.assert_array_equal(i, keep[ri])  # ids stay those given at insertion
    assert coll.add(db[:2], None).tolist() == [500, 501]  # never reused
    with pytest.raises(KeyError, match="no item with id 3 "):
        coll.get_items([3])


def test_other_code_length_foreign_and_bad_names(uri, random_codes, rng, tmp_path):
    MilvusCollection.create(_at(uri, "feat8"), bits=32, feature_dim=8, overwrite=True)
    with pytest.raises(ValueError, match=r"has code length 32 \(this load: 64\)"):
        MilvusCollection.open_for_loading(_at(uri, "feat8"), bits=64, feature_dim=8)
    with pytest.raises(ValueError, match=r"feature dimension 8 \(this load: 16\)"):
        MilvusCollection.open_for_loading(_at(uri, "feat8"), bits=32, feature_dim=16)
    client = index_milvus.connect(uri)
    client.create_collection("foreign", dimension=4)  # not made by hashret
    with pytest.raises(ValueError, match="was not made by hashret"):
        MilvusCollection.open(_at(uri, "foreign"))
    for overwrite in (False, True):  # never dropped, --overwrite or not
        with pytest.raises(FileExistsError, match="is a collection hashret did not make: choose another"):
            MilvusCollection.create(_at(uri, "foreign"), bits=32, feature_dim=None, overwrite=overwrite)
    assert client.has_collection("foreign")
    with pytest.raises(ValueError, match="not a valid collection name"):
        MilvusCollection.create(_at(uri, "bad-name"), bits=32, feature_dim=None)
    with pytest.raises(ValueError, match="bits"):
        MilvusCollection.create(_at(uri, "bits7"), bits=7, feature_dim=None)


def test_features_metadata_thumbnails_and_hierarchical_search(uri, tied_codes):
    db, q = tied_codes(7, 400, 24, n_queries=10)
    rng = np.random.default_rng(7)
    feats = rng.standard_normal((400, 12)).astype(np.float32)
    qf = rng.standard_normal((10, 12)).astype(np.float32)
    items = [ItemMeta(f"img/{i}.jpg", i % 5, f"class{i % 5}", {"n": i} if i % 2 else {},
                      image=b"\x89PNG-%d" % i if i % 3 == 0 else None,
                      file_sha256=f"{i:064x}" if i < 10 else None) for i in range(400)]
    coll = MilvusCollection.create(_at(uri, "hier"), bits=24, feature_dim=12, overwrite=True)
    with pytest.raises(ValueError, match="pass features with the codes"):
        coll.add(db, None)
    with pytest.raises(ValueError, match=r"features must be float \[3, 12\]"):
        coll.add(db[:3], feats[:3, :5])
    assert len(coll) == 0
    coll.add(db, feats, items)
    assert coll.layout == ("array" if _is_server(uri) else "vector")  # Milvus 2.3: one vector field
    got = coll.get_items([5, 0, 399])
    assert [(m.source, m.label, m.class_name, m.extra, m.image) for m in got] == [
        ("img/5.jpg", 0, "class0", {"n": 5}, None), ("img/0.jpg", 0, "class0", {}, None),
        ("img/399.jpg", 4, "class4", {"n": 399}, None)]
    assert coll.get_items([3, 6], image=True)[1].image == b"\x89PNG-6"
    assert coll.ids_with_image([3, 4, 6, 7]) == {3, 6}
    assert coll.find_files([f"{7:064x}", f"{99:064x}"]) == {f"{7:064x}": 7}
    code, f = coll.item_vectors(9)
    np.testing.assert_array_equal(code, db[9])
    np.testing.assert_array_equal(f, feats[9])
    np.testing.assert_array_equal(coll.get_features([9, 3]), feats[[9, 3]])
    ref = HierarchicalSearcher(_numpy_index(24, db), feats)
    if coll.layout == "array":
        with pytest.raises(ValueError, match=r"keeps its features as an array.*rerank_in='client'"):
            coll.search(q, qf, 10, candidates=60, rerank=True, rerank_in="milvus")
    for pool in ({"candidates": 60}, {"radius": 6}):
        want = ref.search(q, qf, 10, ties="candidates" in pool, **pool)
        client = coll.search(q, qf, 10, rerank=True, rerank_in="client", **pool)
        for w, c in zip(want, client, strict=True):
            np.testing.assert_array_equal(c.indices, w.indices)  # client side: the same arithmetic
            np.testing.assert_array_equal(c.euclidean, w.euclidean)
        if coll.layout == "vector":
            inside = coll.search(q, qf, 10, rerank=True, rerank_in="milvus", **pool)
            for w, m in zip(want, inside, strict=True):
                np.testing.assert_array_equal(m.indices, w.indices)  # in Milvus: float32 distances of its own
                np.testing.assert_array_equal(m.hamming, w.hamming)
                np.testing.assert_allclose(m.euclidean, w.euclidean, rtol=1e-5)
    coll.verify()


def test_rerank_in_milvus_resolves_ties_like_the_reference(uri, monkeypatch):
    """Duplicate features tie in Euclidean distance; order is then Hamming, then id."""
    if _is_server(uri):
        pytest.skip("the 'array' layout of Milvus 2.3 re-ranks in the client only")
    monkeypatch.setattr(store_milvus, "MAX_LIMIT", 16)  # several id chunks per pool
    monkeypatch.setattr(index_milvus, "MAX_LIMIT", 16)
    rng = np.random.default_rng(3)
    db = rng.integers(0, 256, (120, 2), dtype=np.uint8)
    feats = np.repeat(rng.standard_normal((6, 4)).astype(np.float32), 20, axis=0)  # 6 distinct rows
    coll = MilvusCollection.create(_at(uri, "ties"), bits=16, feature_dim=4, overwrite=True)
    coll.add(db, feats)
    ref = HierarchicalSearcher(_numpy_index(16, db), feats)
    q, qf = db[:4], feats[[0, 20, 40, 60]]
    for k in (5, 30):
        want = ref.search(q, qf, k, candidates=120)
        got = coll.search(q, qf, k, candidates=120, rerank=True, ties=False, rerank_in="milvus")
        for w, g in zip(want, got, strict=True):
            np.testing.assert_array_equal(g.indices, w.indices)


def test_layout_is_chosen_recorded_and_kept(uri, random_codes, rng):
    """Auto: "vector" where the engine holds several vector fields (Milvus Lite 2.5), else
    "array" (Milvus 2.3); reopening keeps the recorded layout; a layout the server cannot
    store is refused with the fix."""
    db = random_codes(rng, 30, 16)
    feats = rng.standard_normal((30, 5)).astype(np.float32)
    auto = MilvusCollection.create(_at(uri, "layout_auto"), bits=16, feature_dim=5, overwrite=True)
    auto.add(db, feats)
    want = "array" if _is_server(uri) else "vector"
    assert auto.layout == want and auto.info()["layout"] == want
    desc = index_milvus.connect(uri).describe_collection("layout_auto")["description"]
    assert desc == f"hashret: 16-bit codes, 5-d features in the {want!r} layout"
    again = MilvusCollection.open(_at(uri, "layout_auto"))
    assert again.layout == want and again.feature_dim == 5
    np.testing.assert_array_equal(again.get_features([29, 0]), feats[[29, 0]])  # float32 round trip
    other = "vector" if want == "array" else "array"
    with pytest.raises(ValueError, match=f"has layout {want} \\(this load: {other}\\)"):
        MilvusCollection.open_for_loading(_at(uri, "layout_auto"), bits=16, feature_dim=5, layout=other)
    if _is_server(uri):
        with pytest.raises(ValueError, match=r"Milvus v2\.3\.5-lite at http://127\.0\.0\.1:\d+ keeps one "
                                             r"vector field per collection.*upgrade the server to Milvus"):
            MilvusCollection.create(_at(uri, "layout_vec"), bits=16, feature_dim=5, layout="vector",
                                    overwrite=True)
    else:
        arr = MilvusCollection.create(_at(uri, "layout_arr"), bits=16, feature_dim=5, layout="array",
                                      overwrite=True)
        arr.add(db, feats)
        assert MilvusCollection.open(_at(uri, "layout_arr")).layout == "array"
        with pytest.raises(KeyError, match="no item with id 999"):  # an empty answer (lite 2.5.1 quirk)
            arr.get_features([999])
    with pytest.raises(ValueError, match=r"5000-d features exceed the 4096 values a Milvus ARRAY holds"):
        MilvusCollection.create(_at(uri, "layout_big"), bits=16, feature_dim=5000, layout="array",
                                overwrite=True)
    with pytest.raises(ValueError, match="layout must be one of vector, array"):
        MilvusCollection.create(_at(uri, "layout_bad"), bits=16, feature_dim=5, layout="json")
    codes_only = MilvusCollection.create(_at(uri, "layout_none"), bits=16, feature_dim=None, overwrite=True)
    assert codes_only.layout is None


def test_open_an_existing_collection_or_say_how_to_make_one(uri, random_codes, rng):
    MilvusCollection.create(_at(uri, "opened"), bits=24, feature_dim=3, overwrite=True).add(
        random_codes(rng, 5, 24), np.ones((5, 3), np.float32))
    coll = MilvusCollection.open(uri, collection="opened")
    assert (coll.bits, coll.feature_dim, len(coll)) == (24, 3, 5)
    with pytest.raises(LookupError, match=r"no hashret collection 'nothing_here' at .*`hashret index "
                                          r"build RUN --out .*nothing_here`"):
        MilvusCollection.open(_at(uri, "nothing_here"))
    with pytest.raises(ValueError, match="names collection 'opened', --collection 'other'"):
        MilvusCollection.open(_at(uri, "opened"), collection="other")


def test_model_record_and_file(uri, tmp_path):
    """The record keeps the model's identity and where its file was; a changed file is refused."""
    model = tmp_path / "model.safetensors"
    model.write_bytes(b"weights")
    coll = MilvusCollection.create(_at(uri, "with_model"), bits=16, feature_dim=None, overwrite=True,
                                   model={"config": {"bits": 16}, "image_shape": [8, 8, 1]},
                                   model_file=model)
    again = MilvusCollection.open(_at(uri, "with_model"))
    assert again.model_record["config"] == {"bits": 16} and "file_path" not in again.model_record
    assert again.model_file() == model.resolve()
    assert again.info()["model_sha256"] == coll.model_record["sha256"]
    model.write_bytes(b"other weights")
    with pytest.raises(ValueError, match="is no longer the model that made the codes.*--model PATH"):
        again.model_file()
    model.unlink()
    assert again.model_file() is None


def test_a_dead_add_is_counted_at_the_next_open(uri, random_codes, rng):
    """Rows written without their record update (a writer killed in between) are found at the next
    open, so no id is given twice; verify() sees rows beyond the record."""
    coll = MilvusCollection.create(_at(uri, "dead_add"), bits=16, feature_dim=None, overwrite=True)
    coll.add(random_codes(rng, 4, 16), None)
    coll.insert_rows(np.arange(4, 7), random_codes(rng, 3, 16), None, None)  # the record still says 4
    stale = MilvusCollection(coll.place, coll.client, store_milvus.read_record(coll.client, "dead_add"),
                             writable=False, timeout=10)
    with pytest.raises(IndexCorruptError, match=r"beyond the recorded next id 4 are stored \(4, 5, 6"):
        stale.verify()
    reopened = MilvusCollection.open(_at(uri, "dead_add"), writable=True)
    assert reopened.next_id == 7 and reopened.add(random_codes(rng, 1, 16), None).tolist() == [7]
    reopened.verify()


@pytest.mark.parametrize("text, place", [
    ("milvus://127.0.0.1:19530/photos", MilvusPlace("http://127.0.0.1:19530", "photos")),
    ("milvus://127.0.0.1:19530", MilvusPlace("http://127.0.0.1:19530", "hashret")),
    ("milvus+https://db.example:19530/c", MilvusPlace("https://db.example:19530", "c")),
    ("photos.db", MilvusPlace("photos.db", "hashret")),
    ("dir/photos.db:cats", MilvusPlace("dir/photos.db", "cats")),
])
def test_locations(text, place):
    assert is_milvus_location(text)
    assert parse_location(text) == place
    assert parse_location(str(place)) == place  # what location / str() gives opens the same collection


def test_location_errors():
    assert not is_milvus_location("runs/index") and not is_milvus_location("/data/photos")
    with pytest.raises(ValueError, match="'bad-name' is not a valid collection name"):
        parse_location("x.db:bad-name")
    with pytest.raises(ValueError, match="names collection 'a', --collection 'b'"):
        parse_location("x.db:a", "b")


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
    coll = MilvusCollection.open_for_loading(_at(server.uri, "midload"), bits=16, feature_dim=4, timeout=5)
    coll.insert_rows(np.arange(600), db[:600], feats[:600], None)
    server.stop()
    stopped = r"failed while inserting rows into collection 'midload'.*stays marked as loading.*to resume"
    with pytest.raises(MilvusUnavailableError, match=stopped):
        coll.insert_rows(np.arange(600, 900), db[600:], feats[600:], None)
    again = start_milvus_server(tmp_path / "server")  # same data (the old port may be in TIME_WAIT)
    try:
        with pytest.raises(ValueError, match="is being bulk-loaded, or its load stopped part-way"):
            MilvusCollection.open(_at(again.uri, "midload"))
        resumed = MilvusCollection.open_for_loading(_at(again.uri, "midload"), bits=16, feature_dim=4)
        assert resumed.count_id_range(0, 600) == 600 and resumed.layout == "array"
        resumed.insert_rows(np.arange(600, 900), db[600:], feats[600:], None)
        resumed.mark_ready()
        ready = MilvusCollection.open(_at(again.uri, "midload"))
        _same(_hamming(ready.search(db[:10], None, 20)), _numpy_index(16, db).search(db[:10], 20))
        np.testing.assert_array_equal(ready.get_features([899, 0]), feats[[899, 0]])
    finally:
        again.stop()


def test_cli_takes_a_milvus_uri_with_its_collection(capsys):
    from hashret.cli import main

    argv = ["index", "load-shards", "no-such-shards", "--milvus", "milvus://127.0.0.1:19530/images"]
    assert main([*argv, "--collection", "other"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.endswith("milvus://127.0.0.1:19530/images names collection 'images', --collection "
                        "'other': give one of them")
    argv[-1] = "milvus://127.0.0.1:19530/bad-name"
    assert main(argv) == 2
    assert "'bad-name' is not a valid collection name" in capsys.readouterr().err
