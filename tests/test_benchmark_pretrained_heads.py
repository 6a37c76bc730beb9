"""benchmarks/pretrained_heads.py: its looked-up backbone gives the evaluation of the plain
``hashret evaluate`` and, up to bf16 rounding, the model of the plain ``hashret train``
(digits, a frozen LeNet)."""

import json
import shutil

import pytest
import torch
from safetensors.torch import load_file

from hashret.cli import main as hashret


@pytest.mark.slow
def test_pretrained_heads_matches_the_plain_commands(tmp_path, benchmark_module):
    bench = benchmark_module("pretrained_heads")
    runs, results = tmp_path / "runs", tmp_path / "results"
    argv = ["--dataset", "digits", "--data-dir", "", "--backbone", "lenet", "--no-pretrained",
            "--input-sizes", "16", "--bits", "8", "--epochs", "30", "--tta-flip", "--out", str(runs),
            "--cache", str(tmp_path / "cache"), "--results", "heads", "--results-dir", str(results),
            "--verify", "2000"]
    assert bench.main(argv) == 0
    res = json.loads((results / "heads.json").read_text())
    (row,) = res["rows"]
    (store,) = res["feature_stores"]
    # training's own pass batches differently: bf16 rounding only
    assert store["verify"]["images"] == 1438 and store["verify"]["max_abs_diff_training_features"] < 2e-3
    assert row["bits"] == 8 and row["input_side"] == 16
    assert row["map@1000"] > 0.3  # the head learned something
    assert "| dlbhc | 16 | 8 | 30 (" in (results / "heads.md").read_text()

    # the same model evaluated by the unpatched command: the same codes, the same figures
    run = runs / "dlbhc8-16px"
    codes = {s: (run / "encodings" / s / "codes.npy").read_bytes() for s in ("database", "queries")}
    shutil.rmtree(run / "encodings")
    assert hashret(["evaluate", str(run), "--threads", "1", "--quiet"]) == 0
    assert {s: (run / "encodings" / s / "codes.npy").read_bytes() for s in codes} == codes
    report = json.loads((run / "report.json").read_text())
    assert (report["map@1000"], report["map"]) == (row["map@1000"], row["map"])

    # the unpatched training: the same weights up to the features' bf16 rounding
    plain = tmp_path / "plain"
    train = row["command"].split()[1:]
    train[train.index("--out") + 1] = str(plain)
    assert hashret(train) == 0
    mine, theirs = (load_file(d / "model.safetensors") for d in (run, plain))
    assert mine.keys() == theirs.keys()
    assert all(torch.allclose(mine[k], theirs[k], atol=0.02) for k in mine)

    # a second call reads the cached features (no forward pass) and gives the same row
    assert bench.main(argv) == 0
    again = json.loads((results / "heads.json").read_text())
    assert again["feature_stores"][0]["seconds"] == 0.0
    assert again["rows"][0]["map@1000"] == row["map@1000"]


def test_pretrained_heads_refuses_a_data_initialised_backbone(tmp_path, benchmark_module):
    bench = benchmark_module("pretrained_heads")
    with pytest.raises(ValueError, match="initialises from the training data"):
        bench.main(["--dataset", "digits", "--data-dir", "", "--backbone", "convnet-small", "--no-pretrained",
                    "--input-sizes", "16", "--bits", "8", "--out", str(tmp_path / "r"), "--cache", "",
                    "--results-dir", str(tmp_path)])


def test_learned_vs_generic_rows_and_summary(benchmark_module):
    import numpy as np

    from hashret.codes import encode

    lvg = benchmark_module("learned_vs_generic")
    rng = np.random.default_rng(0)
    dl, ql = np.repeat(np.arange(4), 300), np.repeat(np.arange(4), 20)
    centres = rng.normal(size=(4, 16)) * 3
    db, q = (centres[y] + rng.normal(size=(len(y), 16)) for y in (dl, ql))
    dc, qc = (encode(x[:, :8], threshold=0.0) for x in (db, q))  # 8 bits: the first 8 dims' signs
    row = lvg.hamming_rows("signs", 8, qc, dc, q.astype(np.float32), db.astype(np.float32), ql, dl, 1000)
    assert set(row) >= {"map@1000", "map", "map@1000_rerank", "map@1000_rerank_ties"}
    assert all(0.0 <= row[k] <= 1.0 for k in ("map@1000", "map", "map@1000_rerank", "map@1000_rerank_ties"))
    table = lvg.summary([{"codes": "float", "bits": None, "map@1000": 0.5}, row])
    assert f"| signs | {row['map@1000']:.3f} / {row['map@1000_rerank']:.3f} |" in table
    assert "| float, 1280 floats | 0.500 |" in table
