"""A new user's mistakes with datasets, made through the CLI: each is answered by one line on
stderr that names the problem and the fix in CLI terms (flags, commands), never Python
parameters such as ``size=(h, w)``, ``data_dir`` or ``hashret.data.download_mnist(folder)``."""

from __future__ import annotations

import re

import pytest

from hashret.cli import main

#: Python-API spellings a CLI user cannot act on
API_WORDS = re.compile(r"\w+=\(|\w+=['\"\d]|hashret\.\w+\.\w+|\(CLI:"
                       r"|\b(data_dir|on_bad_image|val_fraction)\b")


def error_line(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    """Run the CLI; it must fail with exit code 2 and one line on stderr, in CLI terms."""
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err, err
    assert not API_WORDS.search(err), err
    return err


def test_images_of_different_sizes_say_image_size(tmp_path, make_tree, build, capsys):
    make_tree(tmp_path / "pics", {"cat/0.png": build.solid(0, h=4), "cat/1.png": build.solid(1, h=6),
                                  "dog/0.png": build.solid(2), "dog/1.png": build.solid(3)})
    err = error_line(["train", "--dataset", "folder", "--data-dir", str(tmp_path / "pics"), "--out",
                      str(tmp_path / "run"), "--cache-dir", str(tmp_path / "cache")], capsys)
    assert "images differ in size" in err and "pass --image-size N" in err


def test_a_missing_data_dir_reads_as_a_sentence(tmp_path, capsys):
    err = error_line(["train", "--dataset", "folder", "--out", str(tmp_path / "run")], capsys)
    assert "the folder dataset needs --data-dir: an image folder ROOT/<class>/<image>" in err
    err = error_line(["train", "--dataset", "folder", "--data-dir", str(tmp_path / "gone"), "--out",
                      str(tmp_path / "run")], capsys)
    assert "does not exist: expected an image folder" in err and "expected expected" not in err


def test_mnist_without_its_files_names_the_download_command(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    err = error_line(["train", "--dataset", "mnist", "--data-dir", str(tmp_path / "empty"), "--out",
                      str(tmp_path / "run")], capsys)
    assert "lacks the MNIST file(s)" in err and "`hashret download mnist --out DIR`" in err


def test_cifar10_archive_names_the_download_command(tmp_path, capsys):
    (tmp_path / "cifar-10-python.tar.gz").write_bytes(b"")
    err = error_line(["train", "--dataset", "cifar10", "--data-dir", str(tmp_path / "cifar-10-python.tar.gz"),
                      "--out", str(tmp_path / "run")], capsys)
    assert "extract it" in err and "`hashret download cifar10 --out DIR`" in err


@pytest.mark.parametrize("options, message", [
    (["--val-fraction", "0.7"], "--val-fraction must be in [0, 0.5), got 0.7"),
    (["--image-size", "16"], "8x8 as shipped: drop --image-size"),
    (["--epochs", "0"], "--epochs must be >= 1, got 0"),
    (["--method", "triplet", "--images-per-class", "1"], "--images-per-class must be >= 2"),
])
def test_training_options_are_named_as_flags(options, message, tmp_path, capsys):
    err = error_line(["train", "--dataset", "digits", "--out", str(tmp_path / "run"), *options], capsys)
    assert message in err


def test_a_file_given_for_a_folder_is_not_called_missing(tmp_path, make_mnist, make_zip, build, capsys):
    make_mnist(tmp_path / "mnist", gz=True)
    zipped = make_zip(tmp_path / "mnist.zip", {"train-images-idx3-ubyte.gz": b"x"})
    out = ["--out", str(tmp_path / "run")]
    err = error_line(["train", "--dataset", "mnist", "--data-dir", str(zipped), *out], capsys)
    assert err.startswith(f"hashret train: error: {zipped} is a file, not a folder; extract mnist.zip and "
                          "pass the extracted folder: the folder holding the four MNIST IDX files")
    assert "`hashret download mnist --out DIR` fetches them" in err and "does not exist" not in err
    one = tmp_path / "mnist" / "train-images-idx3-ubyte.gz"  # one of the files, not their folder
    err = error_line(["train", "--dataset", "mnist", "--data-dir", str(one), *out], capsys)
    assert err.endswith(f"{one} is a file, not a folder: pass the folder that holds it, "
                        f"--data-dir {tmp_path / 'mnist'}")
    (tmp_path / "notes.txt").write_text("hello")
    for name in ("mnist", "cifar10", "folder", "cub200", "dogs"):
        err = error_line(["train", "--dataset", name, "--data-dir", str(tmp_path / "notes.txt"), *out],
                         capsys)
        assert "notes.txt is a file, not a folder; --data-dir takes " in err


def test_a_zip_is_a_valid_cifar10_and_folder_data_dir(tmp_path, make_zip, build, capsys):
    from hashret.data import load_dataset

    files = {f"{s}/{c}/{i}.png": build.solid(i, h=32, w=32) for s in ("train", "test") for c in "ab"
             for i in range(2)}
    zipped = make_zip(tmp_path / "pics.zip", files)
    for name in ("cifar10", "folder"):
        assert len(load_dataset(name, zipped, cache_dir=False).train) == 4
    (tmp_path / "cut.zip").write_bytes(zipped.read_bytes()[:-100])
    err = error_line(["train", "--dataset", "cifar10", "--data-dir", str(tmp_path / "cut.zip"), "--out",
                      str(tmp_path / "run")], capsys)
    assert "cut.zip is not a readable .zip archive" in err and "--data-dir" in err


def test_a_classes_txt_of_the_wrong_length_is_one_line(tmp_path, make_mnist, capsys):
    make_mnist(tmp_path / "m", n_train=10, n_test=4)
    (tmp_path / "m" / "classes.txt").write_text("\n".join("abcdefghi"))
    err = error_line(["train", "--dataset", "mnist", "--data-dir", str(tmp_path / "m"), "--out",
                      str(tmp_path / "run")], capsys)
    assert err.endswith("classes.txt gives 9 class names but the labels run 0..9: give 10 names, one per "
                        "label in label order")
