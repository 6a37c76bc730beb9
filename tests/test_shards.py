"""Sharded encoding, merging and bulk loads: merged shards equal one encoding; loads resume
after a failure and are never visible half-done; bad shard sets are refused clearly."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from hashret.cli import main
from hashret.index import FlatIndex
from hashret.io import read_json, write_json
from hashret.run import encode_run, open_run
from hashret.shards import (
    EncodedShard,
    Shard,
    encode_shard,
    load_shards_milvus,
    load_shards_store,
    merge_run_shards,
    open_shards,
    shards_dir,
)
from hashret.store.directory import IndexStore


@pytest.fixture(scope="module")
def sharded(digits_run, tmp_path_factory):
    """The digits run encoded whole, and in 3 shards (into a copy of the run directory)."""
    run_dir = tmp_path_factory.mktemp("sharded") / "run"
    shutil.copytree(digits_run, run_dir, ignore=shutil.ignore_patterns("encodings"))
    run = open_run(run_dir)
    whole = encode_run(run)
    for i in range(3):
        encode_shard(run, Shard(i, 3))
    return run, whole


def test_shard_ranges_tile_the_collection():
    for total in (0, 1, 7, 1438):
        for n in (1, 2, 3, 8):
            ranges = [Shard(i, n).range(total) for i in range(n)]
            assert ranges[0][0] == 0 and ranges[-1][1] == total
            assert all(a[1] == b[0] for a, b in zip(ranges, ranges[1:], strict=False))
    assert Shard.parse(" 2/5 ") == Shard(2, 5) and str(Shard(2, 5)) == "2/5"
    for bad in ("5/5", "1", "-1/3", "a/b", "1/0"):
        with pytest.raises(ValueError, match="i/n|out of range"):
            Shard.parse(bad)


def test_merged_shards_equal_one_encoding(sharded):
    run, whole = sharded
    merged = merge_run_shards(run.run_dir)
    for name in ("database", "queries"):
        a, b = whole[name], merged[name]
        np.testing.assert_array_equal(a.codes, b.codes)
        np.testing.assert_allclose(a.features, b.features, rtol=1e-5, atol=1e-6)
        np.testing.assert_array_equal(a.labels, b.labels)
        np.testing.assert_array_equal(a.ids, b.ids)
        assert b.meta["model_sha256"] == a.meta["model_sha256"] and b.meta["merged_from"]["shards"] == 3


def test_a_finished_shard_is_skipped(sharded):
    run, _ = sharded
    folder = shards_dir(run.run_dir, "database") / Shard(1, 3).dirname
    before = (folder / "codes.npy").stat().st_mtime_ns
    assert encode_shard(run, Shard(1, 3))["database"] == EncodedShard(folder, skipped=True)
    assert (folder / "codes.npy").stat().st_mtime_ns == before


def _copy_shards(run, tmp_path):
    dst = tmp_path / "shards"
    shutil.copytree(shards_dir(run.run_dir, "database"), dst)
    return dst


def test_missing_duplicated_and_inconsistent_shards_are_refused(sharded, tmp_path):
    run, whole = sharded
    root = _copy_shards(run, tmp_path)
    original = shards_dir(run.run_dir, "database")
    assert open_shards(root).total == len(whole["database"]) and open_shards(root).count == 3
    shutil.rmtree(root / "shard-00001-of-00003")
    with pytest.raises(ValueError, match=r"1 of 3 shards .* missing or unfinished \(1/3\).*--shard i/3"):
        open_shards(root)
    shutil.copytree(root / "shard-00002-of-00003", root / "shard-00001-of-00003")  # shard 2 twice
    with pytest.raises(ValueError, match="shard 2/3 is present twice"):
        open_shards(root)
    shutil.rmtree(root / "shard-00001-of-00003")
    shutil.copytree(original / "shard-00001-of-00003", root / "shard-00001-of-00003")
    (root / "shard-00001-of-00003" / "meta.json").unlink()  # a worker died before finishing
    with pytest.raises(ValueError, match=r"missing or unfinished \(1/3; unfinished: shard-00001-of-00003\)"):
        open_shards(root)
    shutil.rmtree(root / "shard-00001-of-00003")
    shutil.copytree(original / "shard-00001-of-00003", root / "shard-00001-of-00003")
    meta = read_json(root / "shard-00001-of-00003" / "meta.json")
    write_json(root / "shard-00001-of-00003" / "meta.json", meta | {"model_sha256": "0" * 64})
    with pytest.raises(ValueError, match="shard 1/3 .* differs from shard 0/3 in model_sha256"):
        open_shards(root)
    write_json(root / "shard-00001-of-00003" / "meta.json", meta)
    shutil.copytree(root / "shard-00000-of-00003", root / "shard-00000-of-00002")  # from a 2-way split
    meta0 = read_json(root / "shard-00000-of-00002" / "meta.json")
    write_json(root / "shard-00000-of-00002" / "meta.json", meta0 | {"shard": meta0["shard"] | {"count": 2}})
    with pytest.raises(ValueError, match="mixes shards of different splits"):
        open_shards(root)
    with pytest.raises(FileNotFoundError, match="no shard folders"):
        open_shards(tmp_path / "nothing")


class _Crash(RuntimeError):
    pass


def _crash_after(n_calls: int):
    calls = []

    def on_batch(done: int, total: int) -> None:
        calls.append(done)
        if len(calls) == n_calls:
            raise _Crash(f"killed after {done} of {total} rows")
    return on_batch


def test_store_load_resumes_and_appears_only_when_complete(sharded, tmp_path):
    run, whole = sharded
    shards = open_shards(shards_dir(run.run_dir, "database"))
    out = tmp_path / "index"
    with pytest.raises(_Crash):
        load_shards_store(shards, out, batch=200, on_batch=_crash_after(4))  # mid-shard
    assert not out.exists() and (tmp_path / "index.partial" / "manifest.json").exists()
    load_shards_store(shards, out, batch=200)
    assert not (tmp_path / "index.partial").exists()
    db = whole["database"]
    with IndexStore.open(out) as store:
        assert len(store) == len(db) and store.live_ids().tolist() == list(range(len(db)))
        ref = FlatIndex(16)
        ref.add(db.codes)
        rd, ri = ref.search(db.codes[:20], 10)
        for row, r in enumerate(store.search(db.codes[:20], k=10)):
            np.testing.assert_array_equal(r.indices, ri[row])
            np.testing.assert_array_equal(r.hamming, rd[row])
        assert store.get_items([3])[0].source == str(db.ids[3])
        assert store.manifest.model.get("file"), "the run's model is copied in"
    with pytest.raises(FileExistsError, match="already holds an index"):
        load_shards_store(shards, out)


def test_milvus_load_resumes_and_is_not_searchable_half_done(sharded, milvus_uri):
    from hashret.store.milvus import MilvusCollection

    run, whole = sharded
    shards = open_shards(shards_dir(run.run_dir, "database"))
    where = (f"milvus://{milvus_uri.removeprefix('http://')}/digits" if milvus_uri.startswith("http://")
             else f"{milvus_uri}:digits")
    dim = int(shards.meta["feature_dim"])
    with pytest.raises(_Crash):  # after shard 0 (3 batches) and 2 batches of shard 1
        load_shards_milvus(shards, where, batch=200, on_batch=_crash_after(5))
    with pytest.raises(ValueError, match="being bulk-loaded, or its load stopped part-way"):
        MilvusCollection.open(where)
    part = MilvusCollection.open_for_loading(where, bits=16, feature_dim=dim)
    a, b = shards.range(1)
    assert part.count_id_range(*shards.range(0)) == shards.range(0)[1] and part.count_id_range(a, b) == 400
    coll = load_shards_milvus(shards, where, batch=200)
    db = whole["database"]
    assert len(coll) == len(db) and coll.state == "ready"
    reopened = MilvusCollection.open(where)
    assert reopened.model_record["sha256"] == run.model_sha256  # the model is recorded, as in a directory
    ref = FlatIndex(16)
    ref.add(db.codes)
    res = reopened.search(db.codes[:30], None, 50)
    want_d, want_i = ref.search(db.codes[:30], 50)
    np.testing.assert_array_equal(np.stack([r.indices for r in res]), want_i)
    np.testing.assert_array_equal(np.stack([r.hamming for r in res]), want_d)
    np.testing.assert_allclose(reopened.get_features([0, 700]), db.features[[0, 700]])
    assert reopened.get_items([700])[0].source == str(db.ids[700])
    with pytest.raises(FileExistsError, match="already loaded"):
        load_shards_milvus(shards, where)
    reopened.drop()


@pytest.mark.slow
def test_cli_loads_into_a_milvus_server_named_by_uri(sharded, milvus_server, capsys):
    from hashret.store.milvus import MilvusCollection

    run, whole = sharded
    where = f"milvus://127.0.0.1:{milvus_server.port}/digits_cli"
    assert main(["index", "load-shards", str(shards_dir(run.run_dir, "database")), "--milvus", where]) == 0
    assert capsys.readouterr().out.strip() == (f"loaded 3 shards, {len(whole['database'])} items -> Milvus "
                                               f"{where}, features in the 'array' layout")
    coll = MilvusCollection.open(where)
    ref = FlatIndex(16)
    ref.add(whole["database"].codes)
    res = coll.search(whole["database"].codes[:20], None, 30)
    np.testing.assert_array_equal(np.stack([r.indices for r in res]),
                                  ref.search(whole["database"].codes[:20], 30)[1])
    coll.drop()


def test_cli_encode_shard_merge_and_load(sharded, tmp_path, capsys):
    run, _ = sharded
    assert main(["encode", str(run.run_dir), "--shard", "0/3", "--quiet"]) == 0  # finished: skipped
    assert main(["encode", str(run.run_dir), "--merge-shards"]) == 0
    assert "merged 3 shards, 1438 items" in capsys.readouterr().out
    root = _copy_shards(run, tmp_path)
    shutil.rmtree(root / "shard-00002-of-00003")
    assert main(["index", "load-shards", str(root), "--out", str(tmp_path / "ix")]) == 2
    assert "missing or unfinished (2/3)" in capsys.readouterr().err
    assert main(["encode", str(run.run_dir), "--shard", "3/3"]) == 2
    assert "out of range" in capsys.readouterr().err


def test_cli_says_when_a_shard_was_already_complete(digits_run, tmp_path, capsys):
    run_dir = tmp_path / "run"
    shutil.copytree(digits_run, run_dir, ignore=shutil.ignore_patterns("encodings"))
    assert main(["encode", str(run_dir), "--shard", "3/4", "--quiet"]) == 0
    names = ("database", "queries")
    folder = {n: shards_dir(run_dir, n) / Shard(3, 4).dirname for n in names}
    first = capsys.readouterr().out.splitlines()
    assert first == [f"shard 3/4 of {n}: encoded -> {folder[n]}" for n in names]
    assert main(["encode", str(run_dir), "--shard", "3/4", "--quiet"]) == 0
    again = capsys.readouterr().out.splitlines()
    assert again == [f"shard 3/4 of {n}: already complete, skipped ({folder[n]})" for n in names]


def test_load_shards_names_the_milvus_option(sharded, tmp_path, capsys):
    pytest.importorskip("pymilvus", reason="the milvus extra is not installed: pip install 'hashret[milvus]'")
    run, _ = sharded
    bad = tmp_path / "index.sqlite"
    assert main(["index", "load-shards", str(shards_dir(run.run_dir, "database")), "--milvus", str(bad)]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (f"hashret index: error: {bad} is neither a Milvus server address "
                   "(milvus://HOST:PORT/NAME) nor an embedded database file: a Milvus Lite database is a "
                   "file whose name ends in .db (FILE.db or FILE.db:NAME)")
