"""What a user controls around a training run: resume with changed options, early stopping,
the 'still improving' note, Ctrl-C."""

import signal
import subprocess
import sys
import time

import pytest

from hashret.cli import main
from hashret.training import TrainConfig, train
from hashret.training.loop import resume_differences, still_improving


def test_resume_ignores_runtime_options_and_names_the_others():
    saved = TrainConfig(dataset="digits", bits=16, threads=2, device="cpu", epochs=5).to_dict()
    assert resume_differences(saved, TrainConfig(dataset="digits", bits=16, threads=1, device="cuda",
                                                 epochs=9, patience=3)) == []
    assert resume_differences(saved, TrainConfig(dataset="digits", bits=32, lr=0.1)) == [
        "--bits 16 -> 32", "--lr None -> 0.1"]


def test_still_improving_only_when_the_last_epoch_is_best_and_rising():
    h = [{"val_acc": a} for a in (0.80, 0.85, 0.88, 0.90)]
    assert still_improving(h, "val_acc") == pytest.approx((0.90 - 0.80) / 3)
    assert still_improving(h[:2], "val_acc") == pytest.approx(0.05)
    assert still_improving([*h, {"val_acc": 0.89}], "val_acc") is None  # past its best
    assert still_improving([{"val_acc": 0.9}] * 4, "val_acc") is None   # flat
    assert still_improving([{"val_acc": 0.9}], "val_acc") is None
    assert still_improving([{"train_loss": 1.0}] * 3, "val_acc") is None  # no validation split


def test_patience_stops_early_and_keeps_the_best_epoch(tmp_path):
    res = train(TrainConfig(dataset="digits", bits=16, epochs=40, patience=1, lr=2.0, seed=0),
                tmp_path / "run", progress=False)
    assert len(res.history) < 40
    accs = [h["val_acc"] for h in res.history]
    assert res.best_epoch == max(range(len(accs)), key=lambda i: (accs[i], i)) + 1
    assert len(res.history) - res.best_epoch == 1  # stopped one epoch after the last improvement


def test_resume_refusal_names_the_option(tmp_path, capsys):
    out = str(tmp_path / "run")
    argv = ["train", "--dataset", "digits", "--bits", "16", "--out", out, "--quiet"]
    assert main([*argv, "--epochs", "1"]) == 0
    capsys.readouterr()
    assert main(["train", "--dataset", "digits", "--bits", "16", "--epochs", "2", "--out", out, "--quiet",
                 "--resume", "--threads", "1"]) == 0  # only run-time options changed
    assert main(["train", "--dataset", "digits", "--bits", "32", "--epochs", "3", "--out", out, "--quiet",
                 "--resume"]) == 2
    assert "--bits 16 -> 32" in capsys.readouterr().err


@pytest.mark.slow
def test_ctrl_c_prints_one_line_with_the_command_to_continue(tmp_path):
    argv = [sys.executable, "-m", "hashret.cli", "train", "--dataset", "digits", "--bits", "16",
            "--epochs", "500", "--out", str(tmp_path / "run"), "--quiet", "--threads", "1"]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    history = tmp_path / "run" / "history.json"
    deadline = time.time() + 120
    while not history.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    assert "epoch(s) are saved in" in lines[0]
    assert lines[0].endswith(f"--out {tmp_path / 'run'} --quiet --threads 1 --resume")
