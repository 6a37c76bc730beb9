"""Triplet training end to end on the bundled digits, and the frozen-backbone path."""

import json

import pytest
import torch
from safetensors.torch import load_file

from hashret.cli import main
from hashret.models import METHODS, PROJECTION_METHODS, create_backbone
from hashret.run import encode_run, evaluate_run, open_run
from hashret.training import TRAINING_METHODS, TrainConfig, train


def test_triplet_training_through_the_cli(tmp_path, capsys):
    out = tmp_path / "triplet16"
    assert main(["train", "--dataset", "digits", "--method", "triplet", "--bits", "16",
                 "--epochs", "4", "--out", str(out), "--quiet"]) == 0
    assert "by validation mAP" in capsys.readouterr().out
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["model"]["method"] == "triplet"
    # the class-balanced batches the loop used: all 10 classes x 12 images (batch 128)
    assert (cfg["train"]["classes_per_batch"], cfg["train"]["images_per_class"]) == (10, 12)
    hist = json.loads((out / "history.json").read_text())
    maps = [e["val_map"] for e in hist["epochs"]]
    assert all("val_acc" not in e for e in hist["epochs"])  # no classifier
    assert hist["best_epoch"] == max(i for i, m in enumerate(maps) if m == max(maps)) + 1
    run = open_run(out)
    assert run.model.threshold == 0.0
    report = evaluate_run(run, encodings=encode_run(run))
    assert report["method"] == "triplet" and report["map"] > 0.8  # chance is about 0.1


def test_frozen_pretrained_backbone_trains_only_the_head(tmp_path):
    torch.manual_seed(123)
    weights = create_backbone("lenet", 1).state_dict()
    weights["fc.0.weight"] *= 20  # features of the scale of a trained net's (random ones are tiny)
    weights["fc.0.bias"] *= 20
    path = tmp_path / "lenet.pth"
    torch.save(weights, path)
    cfg = TrainConfig(dataset="digits", method="triplet", bits=16, epochs=3, backbone="lenet",
                      pretrained=str(path), freeze_backbone=True)
    res = train(cfg, tmp_path / "run", progress=False)
    saved = load_file(str(tmp_path / "run" / "model.safetensors"))
    for k, v in weights.items():  # the backbone is the file's, untouched by training
        assert torch.equal(saved[f"backbone.{k}"], v), k
    # the head learned on the cached features (chance is about 0.1)
    assert max(e["val_map"] for e in res.history) > 0.3


def test_every_model_method_has_its_training_parts():
    # the projection methods (itq, pca-sign, lsh) are fitted without labels, not trained
    assert set(TRAINING_METHODS) == set(METHODS) - set(PROJECTION_METHODS)


def test_bad_triplet_options():
    with pytest.raises(ValueError, match="mining"):
        TrainConfig(method="triplet", mining="hardest")
    with pytest.raises(ValueError, match="--images-per-class must be >= 2"):
        TrainConfig(method="triplet", images_per_class=1)
    with pytest.raises(ValueError, match="unknown --method"):
        TrainConfig(method="dnnh")
