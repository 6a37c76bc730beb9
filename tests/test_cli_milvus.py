"""Every collection command over Milvus, against the same commands over an index directory:
``index build|create|add|remove|info`` and ``search`` take ``FILE.db:NAME`` (the embedded Milvus
Lite 2.5) or ``milvus://HOST:PORT/NAME`` (the session's real Milvus 2.3.5 server; marked slow)
and give the directory's answers. No mocks."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from hashret.cli import main

pytest.importorskip("pymilvus", reason="the milvus extra is not installed: pip install 'hashret[milvus]'")


@pytest.fixture(params=["lite", pytest.param("server", marks=pytest.mark.slow)])
def place(request, tmp_path):
    """``place(name)`` -> the location of a fresh collection on the engine."""
    if request.param == "server":
        host = request.getfixturevalue("milvus_server").uri.removeprefix("http://")
        return lambda name: f"milvus://{host}/{name}_{tmp_path.name[-12:].replace('-', '_')}"
    pytest.importorskip("milvus_lite", reason="milvus-lite 2.5 is not installed: "
                                              "pip install 'hashret[milvus]'")
    return lambda name: f"{tmp_path / 'lite.db'}:{name}"


def _png_file(path, image: np.ndarray):
    Image.fromarray(image[..., 0]).save(path)
    return path


def _run(capsys, *argv: str) -> str:
    code = main(list(argv))
    out = capsys.readouterr()
    assert code == 0, out.err
    return out.out


def _hits(capsys, *argv: str) -> list[dict]:
    return json.loads(_run(capsys, "search", *argv, "--json"))["results"]


def test_build_search_add_remove_info_as_on_a_directory(digits_run, place, tmp_path, capsys):
    from hashret.run import load_run_dataset, open_run

    loc, index_dir = place("digits"), tmp_path / "index"
    _run(capsys, "index", "build", str(digits_run), "--out", str(index_dir), "--features", "float32")
    out = _run(capsys, "index", "build", str(digits_run), "--out", loc)
    assert out.strip().startswith("indexed 1438 items (16 bits, features float32, backend milvus) ->")
    assert "already built" in _run(capsys, "index", "build", str(digits_run), "--out", loc)
    test = load_run_dataset(open_run(digits_run)).test.images
    query = _png_file(tmp_path / "q.png", test[5])
    for pool in ([], ["--rerank"], ["--rerank", "--radius", "3"], ["--candidates", "40", "--k", "30"]):
        want = _hits(capsys, str(index_dir), "--image", str(query), *pool)
        got = _hits(capsys, loc, "--image", str(query), *pool)
        assert [(h["id"], h["hamming"], h["label"], h["source"]) for h in got] == [
            (h["id"], h["hamming"], h["label"], h["source"]) for h in want], pool
        for g, w in zip(got, want, strict=True):
            assert (g["euclidean"] is None) == (w["euclidean"] is None)
            if w["euclidean"] is not None:
                assert g["euclidean"] == pytest.approx(w["euclidean"], rel=1e-5, abs=1e-6)

    folder = tmp_path / "new"
    folder.mkdir()
    for i in range(3):
        _png_file(folder / f"{i}.png", np.ascontiguousarray(np.fliplr(test[i])))
    assert "added 3 images (ids 1438..1440); skipped 0" in _run(capsys, "index", "add", loc, str(folder))
    assert "added 0 images (ids -..-); skipped 3 already" in _run(capsys, "index", "add", loc, str(folder))
    hit = _hits(capsys, loc, "--image", str(folder / "1.png"), "--rerank", "--k", "1")[0]
    assert hit["id"] == 1439 and hit["source"].endswith("new/1.png")
    removed = _run(capsys, "index", "remove", loc, "1438", "1440")
    assert "removed 2 items; the index holds 1439 items" in removed
    assert main(["index", "remove", loc, "1438"]) == 2
    assert "no item with id 1438" in capsys.readouterr().err
    info = json.loads(_run(capsys, "index", "info", loc, "--verify", "--json"))
    assert (info["engine"], info["items"], info["next_id"], info["bits"], info["state"]) == (
        "milvus", 1439, 1441, 16, "ready")
    assert info["verified"].startswith("the record agrees with the collection")
    assert info["model_sha256"] == json.loads(_run(capsys, "index", "info", str(index_dir), "--json"))[
        "model_sha256"]
    for command in ("compact", "repair"):
        assert main(["index", command, loc]) == 2
        assert "is a Milvus collection" in capsys.readouterr().err


def test_create_then_add_images_and_the_model_found_again(digits_run, place, tmp_path, capsys):
    """index create over Milvus records where the model is; a collection whose model file moved
    says to pass --model, and --model with another file is refused."""
    from hashret.run import load_run_dataset, open_run

    loc = place("created")
    _run(capsys, "index", "create", str(digits_run), "--out", loc)
    imgs = load_run_dataset(open_run(digits_run)).test.images
    paths = [str(_png_file(tmp_path / f"{i}.png", imgs[i])) for i in range(4)]
    _run(capsys, "index", "add", loc, *paths)
    hits = _hits(capsys, loc, "--image", paths[2], "--rerank", "--k", "2")
    assert hits[0]["id"] == 2 and hits[0]["hamming"] == 0
    moved = tmp_path / "moved-run"
    (digits_run / "model.safetensors").rename(tmp_path / "model.safetensors")
    try:
        assert main(["search", loc, "--image", paths[0]]) == 2
        assert "cannot reach the model that made its codes" in capsys.readouterr().err
        moved.mkdir()
        (moved / "model.safetensors").write_bytes(b"not the model")
        assert main(["search", loc, "--image", paths[0], "--model", str(moved)]) == 2
        assert "is not the model that made the codes" in capsys.readouterr().err
        again = _hits(capsys, loc, "--image", paths[2], "--rerank", "--k", "2", "--model",
                      str(tmp_path / "model.safetensors"))
        assert [h["id"] for h in again] == [h["id"] for h in hits]
    finally:
        (tmp_path / "model.safetensors").rename(digits_run / "model.safetensors")


def test_bad_collection_locations_are_clear_errors(digits_run, place, tmp_path, capsys):
    loc = place("nothing_here")
    assert main(["index", "info", loc]) == 2
    assert "no hashret collection 'nothing_here" in capsys.readouterr().err
    assert main(["index", "info", str(tmp_path / "x.db:bad-name")]) == 2
    assert "'bad-name' is not a valid collection name" in capsys.readouterr().err
    argv = ["index", "create", str(digits_run), "--out", loc, "--features", "pca", "--pca-dim", "4"]
    assert main(argv) == 2
    assert "--pca-dim, --feature-storage: these options are for an index directory" in capsys.readouterr().err


@pytest.mark.slow  # waits out the connection timeout (10 s)
def test_an_unreachable_server_is_one_line_naming_the_fix(tmp_path, capsys):
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    image = _png_file(tmp_path / "q.png", np.zeros((8, 8, 1), np.uint8))
    for argv in (["search", f"milvus://127.0.0.1:{port}/photos", "--image", str(image)],):
        assert main(argv) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and f"cannot connect to a Milvus server at http://127.0.0.1:{port}" in err[0]
        assert "check that the server runs" in err[0]
