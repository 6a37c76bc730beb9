"""The CLI checks its options before it loads data or models (a typo costs no minute of loading),
and says so when an option given is not used by the command as asked (never silently)."""

from __future__ import annotations

import shutil

import pytest
import torch

from hashret.cli import main
from hashret.index import list_indexes


def lines(capsys: pytest.CaptureFixture[str]) -> list[str]:
    return capsys.readouterr().err.strip().splitlines()


@pytest.mark.parametrize("argv", [
    ["index", "build", "no-such-run", "--out", "x", "--backend", "annoy"],
    ["index", "load-shards", "no-such-shards", "--out", "x", "--backend", "annoy"],
])
def test_an_unknown_backend_is_refused_before_anything_loads(argv, capsys):
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "argument --backend: unknown backend 'annoy'" in err and "no-such" not in err.splitlines()[-1]
    assert all(name in err for name in list_indexes())  # the registry's names, not a copy


def test_an_unknown_dataset_lists_the_registry(capsys):
    from hashret.data import DATASETS

    with pytest.raises(SystemExit):
        main(["train", "--dataset", "imagenet", "--out", "x"])
    err = capsys.readouterr().err
    assert "invalid choice: 'imagenet'" in err and all(repr(d) in err for d in DATASETS)


def test_an_unknown_backbone_lists_the_registry(capsys):
    from hashret.models import list_backbones

    with pytest.raises(SystemExit):
        main(["train", "--dataset", "mnist", "--data-dir", "nowhere", "--backbone", "resnet17", "--out", "r"])
    err = capsys.readouterr().err
    assert "invalid choice: 'resnet17'" in err and all(repr(b) in err for b in list_backbones())


@pytest.mark.parametrize("options, message", [
    (["--pretrained", "no-such-weights.pth"], "--pretrained no-such-weights.pth does not exist"),
    pytest.param(["--device", "cuda"], "--device cuda: no CUDA GPU is visible",
                 marks=pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")),
])
def test_train_options_fail_before_the_data_loads(options, message, tmp_path, capsys):
    # the data directory does not exist either: the option's error comes first, so nothing was loaded
    argv = ["train", "--dataset", "mnist", "--data-dir", str(tmp_path / "nowhere"), "--out", "r"]
    assert main([*argv, *options]) == 2
    (err,) = lines(capsys)
    assert err.startswith(f"hashret train: error: {message}") and "nowhere" not in err


def test_features_pca_needs_pca_dim_before_the_run_loads(capsys):
    assert main(["index", "build", "no-such-run", "--out", "x", "--features", "pca"]) == 2
    assert lines(capsys) == ["hashret index: error: --features pca needs --pca-dim N, the stored dimension "
                             "(e.g. 64)"]


@pytest.mark.parametrize("argv, warning", [
    (["index", "build", "no-such-run", "--out", "x", "--features", "float32", "--pca-dim", "8"],
     "warning: --pca-dim was not used: it applies to --features pca only (this index: --features float32)"),
    (["index", "load-shards", "no-such-shards", "--milvus", "x.db", "--backend", "numpy"],
     "warning: --backend was not used: Milvus stores float32 features and searches them itself (these "
     "options are for an index directory, --out)"),
    (["index", "load-shards", "no-such-shards", "--out", "x", "--collection", "mine"],
     "warning: --collection was not used: Milvus options: they apply with --milvus, not --out"),
    (["encode", "no-such-run", "--merge-shards", "--shard", "0/2"],
     "warning: --shard was not used: --merge-shards joins the finished shards; it encodes nothing"),
    (["train", "--dataset", "digits", "--data-dir", "somewhere", "--pretrained", "nope.pth", "--out", "x"],
     "warning: --data-dir was not used: the digits dataset is bundled with scikit-learn"),
    (["train", "--dataset", "digits", "--margin", "4", "--mining", "semi-hard", "--pretrained", "nope.pth",
      "--out", "x"],
     "warning: --margin, --mining were not used: they apply to --method triplet only (this run: "
     "--method dlbhc)"),
])
def test_options_that_do_not_apply_are_named(argv, warning, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2  # each command then fails for its own reason, after the warning
    err = lines(capsys)
    assert err[0] == warning
    assert len(err) == 2 and err[1].startswith("hashret ")


def test_evaluate_says_its_data_dir_was_not_used(digits_run, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(digits_run, run)
    assert main(["encode", str(run), "--quiet"]) == 0
    capsys.readouterr()
    assert main(["evaluate", str(run), "--k", "10", "--data-dir", "other-images", "--quiet"]) == 0
    assert lines(capsys) == [f"warning: --data-dir was not used: {run} already has encodings, evaluated as "
                             f"they are; to encode that data first run `hashret encode {run} --data-dir "
                             "other-images`"]
