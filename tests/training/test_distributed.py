"""Multi-process training: `torchrun` with 2 processes (gloo, CPU) on the bundled digits.

The real launcher runs the real CLI; each rank records the SHA-256 of its parameters after
every epoch (``history.json``: ``rank_digests``), so the test checks that the ranks hold
identical weights, that rank 0's checkpoint is that state, and that the run has the
single-process run's meaning (same configuration file, epochs, steps and a comparable
validation accuracy).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import pytest
import torch

from hashret.io import read_json
from hashret.training import TrainConfig, train
from hashret.training import distributed as dist_
from hashret.training.checkpoint import load_model


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_helpers_on_one_process(monkeypatch):
    for var in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(var, raising=False)
    assert dist_.world() == dist_.World(0, 1, 0) and dist_.world().main
    assert not dist_.is_distributed() and dist_.init_distributed("cpu") is False
    idx = torch.arange(10)
    assert dist_.shard_batch(idx) is idx and dist_.rank_generator(3) is None
    assert dist_.all_reduce_sums([1.5, 2]) == [1.5, 2] and dist_.broadcast_object({"a": 1}) == {"a": 1}
    model = torch.nn.Linear(3, 2)
    assert dist_.wrap_model(model) is model
    assert dist_.gather_digests(model) == [dist_.parameters_digest(model)]
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.delenv("MASTER_ADDR", raising=False)
    with pytest.raises(RuntimeError, match="MASTER_ADDR.*torchrun --nproc_per_node"):
        dist_.init_distributed("cpu")


def test_torchrun_two_processes_keep_weights_in_sync(tmp_path):
    out = tmp_path / "ddp"
    args = ["--dataset", "digits", "--bits", "16", "--epochs", "2", "--threads", "1", "--seed", "0"]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
           "--master_addr", "127.0.0.1", "--master_port", str(_free_port()),
           "-m", "hashret.cli", "train", *args, "--out", str(out), "--quiet"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600,
                          env=os.environ | {"OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    assert proc.stdout.count("trained dlbhc") == 1, proc.stdout  # the summary line from rank 0 only
    history = read_json(out / "history.json")
    assert [e["epoch"] for e in history["epochs"]] == [1, 2]
    for e in history["epochs"]:
        assert len(e["rank_digests"]) == 2 and e["rank_digests"][0] == e["rank_digests"][1], e["rank_digests"]
    assert history["epochs"][0]["rank_digests"] != history["epochs"][1]["rank_digests"]  # it did learn
    last, _ = load_model(out / "last.safetensors")
    assert dist_.parameters_digest(last) == history["epochs"][-1]["rank_digests"][0]

    one = train(TrainConfig(dataset="digits", bits=16, epochs=2, threads=1, seed=0), tmp_path / "one",
                progress=False)
    assert read_json(out / "config.json") == read_json(tmp_path / "one" / "config.json")  # same meaning
    assert len(one.history) == len(history["epochs"])
    acc_one, acc_ddp = one.history[-1]["val_acc"], history["epochs"][-1]["val_acc"]
    assert abs(acc_one - acc_ddp) < 0.15, (acc_one, acc_ddp)
    assert "rank_digests" not in one.history[-1]
