"""`hashret train --class-names` names an IDX dataset's labels: the names reach the run's
config, its model and its encodings; a wrong count is one clear line."""

from __future__ import annotations

import gzip
import json

import numpy as np
import pytest

from hashret.cli import main
from hashret.training import TrainConfig

NAMES = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")


def _idx(array: np.ndarray, magic: int) -> bytes:
    return np.array([magic, *array.shape], dtype=">u4").tobytes() + array.astype(np.uint8).tobytes()


@pytest.fixture
def idx_folder(tmp_path):
    """Four MNIST-format files: 40 training and 20 test images, labels 0..9 in turn."""
    rng = np.random.default_rng(0)
    folder = tmp_path / "idx"
    folder.mkdir()
    for split, n in (("train", 40), ("t10k", 20)):
        (folder / f"{split}-images-idx3-ubyte.gz").write_bytes(
            gzip.compress(_idx(rng.integers(0, 256, (n, 28, 28)), 2051)))
        (folder / f"{split}-labels-idx1-ubyte.gz").write_bytes(gzip.compress(_idx(np.arange(n) % 10, 2049)))
    return folder


def test_the_option_is_kept_in_the_config_as_a_tuple():
    cfg = TrainConfig(dataset="mnist", class_names=list(NAMES))
    assert cfg.class_names == NAMES
    assert TrainConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg  # as config.json keeps it
    with pytest.raises(ValueError, match="--class-names: class name 'one' is given twice"):
        TrainConfig(dataset="mnist", class_names=("one", "one"))


def test_class_names_for_another_dataset_are_refused_at_once(tmp_path, capsys):
    assert main(["train", "--dataset", "digits", "--class-names", "a,b", "--out", str(tmp_path / "r")]) == 2
    assert capsys.readouterr().err.strip() == (
        "hashret train: error: --class-names names the labels of IDX files (--dataset mnist); digits takes "
        "its class names from its own folders or files: drop --class-names")


def test_a_wrong_count_is_one_line(idx_folder, tmp_path, capsys):
    argv = ["train", "--dataset", "mnist", "--data-dir", str(idx_folder), "--out", str(tmp_path / "r")]
    assert main([*argv, "--class-names", ",".join(NAMES[:9])]) == 2
    assert capsys.readouterr().err.strip().endswith(
        "--class-names gives 9 class names but the labels run 0..9: give 10 names, one per label in label "
        "order")


def test_the_names_reach_the_model_and_the_encodings(idx_folder, tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "--dataset", "mnist", "--data-dir", str(idx_folder), "--class-names",
                 ",".join(NAMES), "--backbone", "lenet", "--bits", "16", "--epochs", "1", "--out", str(run),
                 "--quiet"]) == 0
    config = json.loads((run / "config.json").read_text())
    assert tuple(config["train"]["class_names"]) == NAMES and tuple(config["model"]["classes"]) == NAMES
    assert main(["encode", str(run), "--quiet"]) == 0
    meta = json.loads((run / "encodings" / "database" / "meta.json").read_text())
    assert tuple(meta["classes"]) == NAMES
