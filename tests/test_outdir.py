"""No command deletes a file hashret did not write (``hashret.outdir``, ``demo``, ``train``)."""

import json

import pytest

from hashret.cli import main
from hashret.outdir import OWNER_FILE, claim_dir, marker_kind

OWNED = ("config.json", "encodings", ".*.tmp")


def _tree(root):
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


def test_a_new_folder_is_created_and_marked(tmp_path):
    out = tmp_path / "a" / "b"
    assert claim_dir(out, "run", OWNED) == []
    assert marker_kind(out) == "run"
    assert json.loads((out / OWNER_FILE).read_text())["written_by"] == "hashret"


def test_an_unmarked_folder_with_files_is_refused_and_left_as_it_was(tmp_path):
    (tmp_path / "thesis.tex").write_text("years of work")
    (tmp_path / "config.json").write_text("{}")  # a name hashret also uses
    before = _tree(tmp_path)
    with pytest.raises(ValueError, match=r"did not write \(config.json, thesis.tex\).*--overwrite"):
        claim_dir(tmp_path, "demo", OWNED)
    assert _tree(tmp_path) == before and (tmp_path / "config.json").read_text() == "{}"


def test_overwrite_replaces_only_owned_names(tmp_path):
    (tmp_path / "thesis.tex").write_text("years of work")
    (tmp_path / "encodings").mkdir()
    (tmp_path / "encodings" / "codes.npy").write_bytes(b"old")
    foreign = claim_dir(tmp_path, "demo", OWNED, overwrite=True)
    assert [p.name for p in foreign] == ["thesis.tex"]
    assert not (tmp_path / "encodings").exists()
    assert (tmp_path / "thesis.tex").read_text() == "years of work"


def test_a_marked_folder_is_replaced_but_a_file_dropped_in_later_survives(tmp_path):
    claim_dir(tmp_path, "demo", OWNED)
    (tmp_path / "config.json").write_text("{}")
    (tmp_path / "notes.txt").write_text("mine")
    foreign = claim_dir(tmp_path, "demo", OWNED)
    assert [p.name for p in foreign] == ["notes.txt"]
    assert not (tmp_path / "config.json").exists() and (tmp_path / "notes.txt").exists()


def test_another_kind_of_hashret_folder_needs_overwrite(tmp_path):
    claim_dir(tmp_path / "run", "run", OWNED)
    (tmp_path / "run" / "config.json").write_text("{}")
    with pytest.raises(ValueError, match="hashret run directory, not a demo directory"):
        claim_dir(tmp_path / "run", "demo", OWNED)
    assert (tmp_path / "run" / "config.json").exists()
    claim_dir(tmp_path / "run", "run", OWNED, compatible=("demo",))  # same kind: accepted


def test_a_symlinked_owned_folder_is_unlinked_not_followed(tmp_path):
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "photo.jpg").write_bytes(b"jpg")
    out = tmp_path / "out"
    claim_dir(out, "demo", OWNED)
    (out / "encodings").symlink_to(precious)
    claim_dir(out, "demo", OWNED)
    assert (precious / "photo.jpg").read_bytes() == b"jpg" and not (out / "encodings").exists()


def test_check_only_changes_nothing(tmp_path):
    assert claim_dir(tmp_path / "new", "run", OWNED, write=False) == []
    assert not (tmp_path / "new").exists()
    (tmp_path / "x").write_text("x")
    with pytest.raises(ValueError):
        claim_dir(tmp_path, "run", OWNED, write=False)


def test_a_file_is_refused(tmp_path):
    (tmp_path / "f").write_text("x")
    with pytest.raises(ValueError, match="is a file"):
        claim_dir(tmp_path / "f", "run", OWNED)


def test_demo_never_deletes_a_users_folder(tmp_path, monkeypatch, capsys):
    """`hashret demo --out DIR` used to rmtree DIR: a folder holding a foreign file is refused,
    --overwrite keeps the file, and a second demo into its own folder keeps a file dropped in."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "holiday.jpg").write_bytes(b"not really a jpg")
    args = ["demo", "--epochs", "1", "--bits", "16", "--quiet"]
    assert main([*args, "--out", "."]) == 2
    err = capsys.readouterr().err
    assert "holiday.jpg" in err and "--overwrite" in err
    assert _tree(tmp_path) == ["holiday.jpg"]

    assert main([*args, "--out", ".", "--overwrite"]) == 0
    assert (tmp_path / "holiday.jpg").read_bytes() == b"not really a jpg"
    assert (tmp_path / "report.json").exists() and (tmp_path / "index" / "manifest.json").exists()

    demo = tmp_path / "d"
    assert main([*args, "--out", "d"]) == 0
    (demo / "notes.txt").write_text("mine")
    assert main([*args, "--out", "d"]) == 0  # an earlier demo's folder: replaced without --overwrite
    assert (demo / "notes.txt").read_text() == "mine"
    assert (demo / "query_results.png").exists() and (demo / "index" / "manifest.json").exists()


def test_every_file_of_a_run_gets_the_users_file_mode(tmp_path):
    """model.safetensors, report.json and the plots were written 0600, the rest 0644."""
    import os
    import stat

    umask = os.umask(0)
    os.umask(umask)
    assert main(["demo", "--epochs", "1", "--bits", "16", "--quiet", "--out", str(tmp_path / "d")]) == 0
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in (tmp_path / "d").iterdir() if p.is_file()}
    assert {"model.safetensors", "report.json", "precision_at_k.png", "query_results.png"} <= set(modes)
    assert set(modes.values()) == {0o666 & ~umask}, modes


def test_train_overwrite_keeps_foreign_files(tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    (out / "mine.txt").write_text("keep")
    argv = ["train", "--dataset", "digits", "--bits", "16", "--epochs", "1", "--out", str(out), "--quiet"]
    assert main(argv) == 2 and "--overwrite" in capsys.readouterr().err
    assert main([*argv, "--overwrite"]) == 0
    assert (out / "mine.txt").read_text() == "keep" and (out / "model.safetensors").exists()
    assert main(argv) == 2 and "already holds a run" in capsys.readouterr().err


def test_index_build_refuses_a_folder_of_other_files(digits_run, tmp_path, capsys):
    photos = tmp_path / "photos"
    photos.mkdir()
    (photos / "cat.jpg").write_bytes(b"jpg")
    argv = ["index", "build", str(digits_run), "--out", str(photos), "--quiet"]
    assert main(argv) == 2
    assert "cat.jpg" in capsys.readouterr().err and _tree(photos) == ["cat.jpg"]
    assert main([*argv, "--overwrite"]) == 0
    assert (photos / "cat.jpg").read_bytes() == b"jpg" and marker_kind(photos) == "index"


def test_models_fit_refuses_a_folder_of_other_files(tmp_path, capsys):
    """models fit --out into a folder with a user's config.json would have overwritten it."""
    photos = tmp_path / "photos"
    photos.mkdir()
    (photos / "config.json").write_text('{"mine": true}')
    from PIL import Image

    for j in range(3):
        Image.new("RGB", (20, 20), (j * 40, 10, 10)).save(photos / f"{j}.png")
    assert main(["models", "fit", "--images", str(photos), "--out", str(photos), "--bits", "8",
                 "--input-size", "32", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "hashret did not write" in err and "--overwrite" in err
    assert (photos / "config.json").read_text() == '{"mine": true}'
