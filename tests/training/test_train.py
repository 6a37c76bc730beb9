import json

import numpy as np
import pytest
from safetensors.numpy import load_file

from hashret.training import TrainConfig, train


def _weights(run):
    return load_file(str(run / "model.safetensors"))


def test_training_is_seeded_and_reproducible(tmp_path):
    cfg = TrainConfig(dataset="digits", bits=12, epochs=2, seed=3, backbone="lenet")
    a = train(cfg, tmp_path / "a", progress=False)
    b = train(cfg, tmp_path / "b", progress=False)
    wa, wb = _weights(tmp_path / "a"), _weights(tmp_path / "b")
    assert all(np.array_equal(wa[k], wb[k]) for k in wa)
    assert a.history[-1]["train_loss"] == b.history[-1]["train_loss"]


def test_resume_after_interruption_gives_the_same_weights(tmp_path):
    full = TrainConfig(dataset="digits", bits=12, epochs=3, seed=1, backbone="lenet")
    train(full, tmp_path / "full", progress=False)

    def interrupt(stats):  # Ctrl-C right after the second epoch's checkpoint
        if stats["epoch"] == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(full, tmp_path / "resumed", progress=False, on_epoch_end=interrupt)
    res = train(full, tmp_path / "resumed", resume=True, progress=False)
    assert [h["epoch"] for h in res.history] == [1, 2, 3]
    wf, wr = _weights(tmp_path / "full"), _weights(tmp_path / "resumed")
    for k in wf:
        np.testing.assert_allclose(wf[k], wr[k], rtol=0, atol=1e-6, err_msg=k)


def test_run_dir_contents_and_model_selection(digits_run):
    cfg = json.loads((digits_run / "config.json").read_text())
    assert cfg["train"]["bits"] == 16 and cfg["model"]["bits"] == 16
    assert cfg["train"]["val_fraction"] == 0.1
    hist = json.loads((digits_run / "history.json").read_text())
    accs = [e["val_acc"] for e in hist["epochs"]]
    # selected by validation accuracy; among equal scores the later epoch
    assert hist["best_epoch"] == max(i for i, a in enumerate(accs) if a == max(accs)) + 1
    assert max(accs) > 0.5  # it learned something in 4 short epochs


def test_existing_run_dir_is_protected(digits_run):
    before = (digits_run / "model.safetensors").read_bytes()
    with pytest.raises(ValueError, match="--resume"):
        train(TrainConfig(dataset="digits", bits=16, epochs=1), digits_run, progress=False)
    assert (digits_run / "model.safetensors").read_bytes() == before


def test_resume_with_other_options_is_refused(tmp_path):
    cfg = TrainConfig(dataset="digits", bits=12, epochs=1, backbone="lenet")
    train(cfg, tmp_path / "r", progress=False)
    with pytest.raises(ValueError, match=r"other options \(--bits 12 -> 16\)"):
        train(TrainConfig(dataset="digits", bits=16, epochs=2, backbone="lenet"), tmp_path / "r",
              resume=True, progress=False)


def test_bad_options():
    with pytest.raises(ValueError, match="between 8 and 256"):
        TrainConfig(bits=300)
    with pytest.raises(ValueError, match="--val-fraction"):
        TrainConfig(val_fraction=0.9)


def test_resume_a_run_written_before_the_newer_options(tmp_path):
    cfg = TrainConfig(dataset="digits", bits=12, epochs=1, backbone="lenet")
    train(cfg, tmp_path / "r", progress=False)
    path = tmp_path / "r" / "config.json"
    saved = json.loads(path.read_text())
    for key in ("pretrained", "freeze_backbone", "margin", "mining", "quant_weight",
                "classes_per_batch", "images_per_class"):
        del saved["train"][key]  # as hashret wrote it before the triplet method existed
    path.write_text(json.dumps(saved))
    res = train(TrainConfig(dataset="digits", bits=12, epochs=2, backbone="lenet"), tmp_path / "r",
                resume=True, progress=False)
    assert [h["epoch"] for h in res.history] == [1, 2]
