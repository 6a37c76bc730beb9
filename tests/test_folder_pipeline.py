"""A user's own labelled image folder, end to end through the CLI (natural-image path)."""

import json

import numpy as np
from PIL import Image

from hashret.cli import main


def write_folder(root, n_per_class=12, size=20, seed=0):
    """ROOT/{train,test}/<class>/*.png of two visually distinct colour classes."""
    rng = np.random.default_rng(seed)
    for split, n in (("train", n_per_class), ("test", n_per_class // 3)):
        for cls, channel in (("red", 0), ("blue", 2)):
            d = root / split / cls
            d.mkdir(parents=True)
            for i in range(n):
                img = rng.integers(0, 60, (size, size, 3), dtype=np.uint8)
                img[..., channel] = rng.integers(180, 255, (size, size))
                Image.fromarray(img).save(d / f"{i:03d}.png")


def test_folder_dataset_trains_encodes_and_evaluates(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("HASHRET_CACHE", str(tmp_path / "cache"))
    write_folder(tmp_path / "photos")
    run = tmp_path / "run"
    assert main(["train", "--dataset", "folder", "--data-dir", str(tmp_path / "photos"),
                 "--backbone", "lenet", "--bits", "8", "--epochs", "3", "--batch-size", "8",
                 "--lr", "0.05", "--out", str(run), "--quiet"]) == 0
    capsys.readouterr()
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["train"]["flip"] and cfg["train"]["tta_flip"]  # colour photos: natural images
    assert main(["evaluate", str(run), "--k", "10", "--json", "--quiet"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["n_queries"] == 8 and report["n_database"] == 24
    assert report["map@10"] > 0.9  # red vs blue is easy
    assert list((tmp_path / "cache").glob("*.npz"))  # decoded once into the cache
