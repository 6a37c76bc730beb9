"""The quality benchmark runs end to end on the bundled digits and keeps earlier rows.

The benchmarks themselves run for minutes to hours on real data (``make bench-*``); this
checks that the script behind the README's results table still works and that a re-run of
one setting replaces its own row and leaves the others alone.
"""

import json
from pathlib import Path

import pytest


@pytest.fixture
def quality(benchmark_module):
    return benchmark_module("quality")


def test_machine_description_names_the_cpu(benchmark_module):
    cpu_name = benchmark_module("_machine").cpu_name
    assert isinstance(cpu_name(), str) and cpu_name()


def test_quality_benchmark_writes_rows_and_keeps_other_settings(quality, tmp_path, capsys):
    args = ["--dataset", "digits", "--bits", "12", "--epochs", "1", "--runs", str(tmp_path / "runs"),
            "--results", str(tmp_path)]
    assert quality.main(args) == 0
    assert quality.main([*args, "--val-fraction", "0.2"]) == 0
    assert quality.main(args) == 0  # same setting as the first: replaces its row

    stem = tmp_path / f"quality-digits-{quality.machine_tag(quality.machine())}"
    res = json.loads(stem.with_suffix(".json").read_text())
    rows = res["rows"]
    assert [(r["bits"], r["val_fraction"]) for r in rows] == [(12, 0.1), (12, 0.2)]
    for r in rows:
        assert 0.0 <= r["map@1000"] <= 1.0 and r["epochs"] == 1 and r["n_database"] > 0
    assert sorted(res["curves"]) == ["12 bits, sgd, 1 ep, val 10%", "12 bits, sgd, 1 ep, val 20%"]
    assert len(res["curves"]["12 bits, sgd, 1 ep, val 10%"]) == 1000
    table = stem.with_suffix(".md").read_text()
    assert "| 12 | sgd |" in table and "| 20% |" in table and "| 10% |" in table
    assert Path(str(stem) + "-pk.png").stat().st_size > 0
    assert (tmp_path / "runs" / "digits-12-val0.2" / "model.safetensors").exists()
