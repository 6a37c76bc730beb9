"""Indexes made with a trained model: build (resumable), add files, search by image, the CLI."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from PIL import Image

from hashret.cli import main
from hashret.index import FlatIndex
from hashret.indexing import build_index, load_index_model, search_by_images
from hashret.run import encode_run, load_run_dataset, open_run
from hashret.store.directory import IndexStore


@pytest.fixture(scope="module")
def digits(digits_run):
    run = open_run(digits_run)
    return run, load_run_dataset(run)


def test_build_equals_the_runs_encodings_and_searches_exactly(digits, tmp_path):
    run, data = digits
    enc = encode_run(run, data=data)["database"]
    with build_index(run, tmp_path / "ix", data.train, collection="digits", split="train",
                     batch_size=300) as store:
        assert len(store) == len(data.train) and len(store.manifest.segments) > 1
        np.testing.assert_array_equal(store.codes, enc.codes)
        ref = FlatIndex(run.model_config.bits)
        ref.add(enc.codes)
        d, i = ref.search(enc.codes[:5], 20)
        res = store.search(enc.codes[:5], k=20)
        assert [r.indices.tolist() for r in res] == i.tolist()
        meta = store.get_items([0], image=True)[0]
        assert meta.label == data.train.labels[0] and meta.source == data.train.ids[0]
        thumb = np.asarray(Image.open(io.BytesIO(meta.image)))
        np.testing.assert_array_equal(thumb, data.train.images[0][..., 0])


def test_interrupted_build_resumes_to_the_same_index(digits, tmp_path, monkeypatch):
    run, data = digits
    full = build_index(run, tmp_path / "full", data.train, collection="digits", split="train", batch_size=250)
    real_add, calls = IndexStore.add, []

    def failing_add(self, *a, **k):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt  # the user pressed Ctrl-C during the third batch
        return real_add(self, *a, **k)

    monkeypatch.setattr(IndexStore, "add", failing_add)
    with pytest.raises(KeyboardInterrupt):
        build_index(run, tmp_path / "part", data.train, collection="digits", split="train", batch_size=250)
    monkeypatch.setattr(IndexStore, "add", real_add)
    with IndexStore.open(tmp_path / "part") as part:
        assert part.manifest.build["done"] == 500 and len(part) == 500
    with build_index(run, tmp_path / "part", data.train, collection="digits", split="train",
                     batch_size=250) as resumed:
        np.testing.assert_array_equal(resumed.codes, full.codes)
        np.testing.assert_array_equal(resumed.live_ids(), full.live_ids())
        assert resumed.manifest.build["done"] == len(data.train)
    full.close()
    with pytest.raises(ValueError, match="another model or collection"):
        build_index(run, tmp_path / "part", data.test, collection="digits", split="test")


def test_query_images_are_encoded_like_the_database(digits, tmp_path):
    run, data = digits
    with build_index(run, tmp_path / "ix", data.train, collection="digits", split="train") as store:
        model = load_index_model(store)
        res = search_by_images(store, model, data.train.images[[7, 42]], k=3, rerank=True)
        assert [r.indices[0] for r in res] == [7, 42]  # an indexed image finds itself first
        assert [r.euclidean[0] for r in res] == pytest.approx([0, 0], abs=1e-2)


def test_cli_build_info_search_add_remove(digits_run, tmp_path, capsys):
    ix = str(tmp_path / "ix")
    assert main(["index", "build", str(digits_run), "--out", ix, "--batch-size", "500", "--quiet"]) == 0
    assert "indexed 1438 items" in capsys.readouterr().out
    assert main(["index", "info", ix, "--verify", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["items"] == 1438 and info["bits"] == 16 and info["verified"]
    data = load_run_dataset(open_run(digits_run))
    folder = tmp_path / "new"
    folder.mkdir()
    for j in range(3):
        Image.fromarray(data.test.images[j][..., 0]).save(folder / f"q{j}.png")
    assert main(["index", "add", ix, str(folder), "--label", "3", "--quiet"]) == 0
    capsys.readouterr()
    assert main(["search", ix, "--image", str(folder / "q1.png"), "--k", "4", "--rerank", "--json"]) == 0
    answer = json.loads(capsys.readouterr().out)
    assert answer["notes"] == [] and answer["image"].endswith("q1.png")
    hits = answer["results"]
    assert hits[0]["id"] == 1439 and hits[0]["source"].endswith("q1.png") and hits[0]["euclidean"] < 1e-2
    assert main(["index", "remove", ix, "1439"]) == 0
    capsys.readouterr()
    assert main(["search", ix, "--image", str(folder / "q1.png"), "--k", "4", "--json"]) == 0
    assert 1439 not in [h["id"] for h in json.loads(capsys.readouterr().out)["results"]]
    assert main(["index", "compact", ix]) == 0
    (folder / "bad.png").write_bytes(b"not an image")
    assert main(["index", "add", ix, str(folder / "bad.png")]) == 2
    assert "bad.png" in capsys.readouterr().err
    with IndexStore.open(ix) as store:
        assert len(store) == 1438 + 2
    assert main(["index", "info", str(tmp_path / "missing")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["search", str(digits_run), "--image", str(folder / "q1.png"), "--rerank"]) == 2
    assert "index directory" in capsys.readouterr().err


def test_adding_the_same_files_again_skips_them(digits_run, tmp_path, capsys):
    """`index add` is idempotent by file content (SHA-256 of the bytes), unless --allow-duplicates."""
    ix = str(tmp_path / "ix")
    data = load_run_dataset(open_run(digits_run))
    assert main(["index", "build", str(digits_run), "--out", ix, "--split", "test", "--quiet"]) == 0
    folder = tmp_path / "new"
    folder.mkdir()
    for j in range(4):
        Image.fromarray(data.train.images[j][..., 0]).save(folder / f"q{j}.png")
    (folder / "copy.png").write_bytes((folder / "q0.png").read_bytes())  # same bytes, other name
    n0 = len(data.test)
    capsys.readouterr()
    assert main(["index", "add", ix, str(folder), "--quiet"]) == 0
    assert "added 4 images" in (out := capsys.readouterr().out) and "skipped 1 already" in out
    assert main(["index", "add", ix, str(folder), str(folder / "q2.png"), "--quiet"]) == 0
    assert "added 0 images" in (out := capsys.readouterr().out) and "skipped 6 already" in out
    with IndexStore.open(ix) as store:
        assert len(store) == n0 + 4
        store_ids = store.live_ids()
    assert main(["index", "remove", ix, str(int(store_ids[-1]))]) == 0  # a removed file can come back
    assert main(["index", "add", ix, str(folder), "--quiet"]) == 0
    assert "added 1 images" in capsys.readouterr().out
    assert main(["index", "add", ix, str(folder), "--allow-duplicates", "--quiet"]) == 0
    assert "added 5 images" in capsys.readouterr().out
    with IndexStore.open(ix) as store:
        assert len(store) == n0 + 4 + 5


def test_search_notices_a_query_image_changed_to_fit(digits_run, tmp_path, capsys):
    """A colour photo of another size is converted and resized: said on stderr and in --json."""
    from hashret.cli import main

    img = tmp_path / "photo.png"
    Image.new("RGB", (40, 30), (250, 10, 10)).save(img)
    assert main(["search", str(digits_run), "--image", str(img), "--k", "3", "--json"]) == 0
    out = capsys.readouterr()
    answer = json.loads(out.out)
    assert answer["notes"] == ["converted colour to grey", "resized from 40x30 to 8x8 px (w x h)"]
    assert len(answer["results"]) == 3
    assert "note: " in out.err and "resized from 40x30 to 8x8" in out.err


def test_index_build_over_a_built_index_says_so_and_refuses_other_options(digits_run, tmp_path, capsys):
    from hashret.cli import main

    ix = str(tmp_path / "ix")
    assert main(["index", "build", str(digits_run), "--out", ix, "--quiet"]) == 0
    capsys.readouterr()
    assert main(["index", "build", str(digits_run), "--out", ix, "--quiet"]) == 0
    assert "already built: 1438 items" in capsys.readouterr().out
    assert main(["index", "build", str(digits_run), "--out", ix, "--backend", "faiss-flat", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "--backend popcount (asked: faiss-flat)" in err and "--overwrite" in err
    assert main(["index", "build", str(digits_run), "--out", ix, "--backend", "faiss-flat", "--overwrite",
                 "--quiet"]) == 0
    assert "backend faiss-flat" in capsys.readouterr().out


@pytest.mark.slow
def test_a_full_disk_during_index_add_is_one_line_and_the_index_stays_intact(digits_run, tmp_path):
    """A file-size limit (what a full disk does to a write) mid-add: one CLI line, nothing lost."""
    import resource
    import signal
    import subprocess
    import sys

    from hashret.cli import main

    ix = str(tmp_path / "ix")
    assert main(["index", "build", str(digits_run), "--out", ix, "--quiet"]) == 0
    folder = tmp_path / "new"
    folder.mkdir()
    for j in range(40):
        Image.fromarray(np.full((8, 8), j * 6, np.uint8)).save(folder / f"{j}.png")

    def limit() -> None:  # in the child: writes past 64 KiB fail with EFBIG instead of SIGXFSZ
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (64 * 1024, 64 * 1024))

    proc = subprocess.run([sys.executable, "-m", "hashret.cli", "index", "add", ix, str(folder), "--quiet",
                           "--threads", "1"], capture_output=True, text=True, preexec_fn=limit, timeout=300)
    assert proc.returncode == 1, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert "Traceback" not in proc.stderr and len(lines) == 1, proc.stderr
    assert "size limit" in lines[0] or "could not be written" in lines[0]
    assert "run the same command again" in lines[0]
    assert main(["index", "info", ix, "--verify"]) == 0  # what was committed is intact
    assert main(["index", "add", ix, str(folder), "--quiet"]) == 0  # and the add completes later
