"""benchmarks/serve_milvus.py's copy of an index directory into Milvus keeps every item as it was
(ids, codes, features, metadata, thumbnails, the model), and its report is written from its rows."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("milvus_lite", reason="milvus-lite 2.5 is not installed: pip install 'hashret[milvus]'")


def test_copy_keeps_every_item_and_the_report_reads_the_rows(benchmark_module, digits_run, tmp_path):
    from hashret.indexing import build_index
    from hashret.run import load_run_dataset, open_run
    from hashret.store import IndexStore, open_collection

    bench = benchmark_module("serve_milvus")
    run = open_run(digits_run)
    build_index(run, tmp_path / "ix", load_run_dataset(run).train, collection="digits", split="train").close()
    loc = f"{tmp_path / 'lite.db'}:copy"
    out = bench.copy_into(tmp_path / "ix", loc)
    assert out["items"] == 1438 and out["layout"] == "vector"
    with IndexStore.open(tmp_path / "ix") as src, open_collection(loc) as dst:
        assert dst.model_record["sha256"] == src.model_record["sha256"] and dst.model_file() is not None
        for i in (0, 700, 1437):
            np.testing.assert_array_equal(dst.item_vectors(i)[0], src.item_vectors(i)[0])
            np.testing.assert_array_equal(dst.item_vectors(i)[1], src.item_vectors(i)[1])
            assert dst.get_items([i], image=True) == src.get_items([i], image=True)
    stats = {"rps": 10.0, "p50_ms": 1.0, "p99_ms": 2.0}
    load = {"uploads": stats, "id+rerank": stats, "all": {"errors": 0}, "self_first": 1.0,
            "loadavg_before": [0.1], "loadavg_after": [0.2]}
    res = {"config": {"items": 1438, "clients": 2, "seconds": 1.0, "options": ["--runtime", "onnx"],
                      "command": "python benchmarks/serve_milvus.py"},
           "machine": {"cpus": 2, "cpu": "cpu", "milvus_server": "2.3.5", "pymilvus": "2.5"},
           "copies": {"Milvus Lite 2.5": out}, "rows": [{"engine": "index directory", "load": load},
                                                        {"engine": "Milvus Lite 2.5", "load": load}]}
    bench.write_report(res, tmp_path / "results", "serve")
    md = (tmp_path / "results" / "serve.md").read_text()
    assert "| Milvus Lite 2.5 | vector | 10.0 | 1.00 |" in md
    saved = json.loads((tmp_path / "results" / "serve.json").read_text())
    assert saved["rows"][1]["engine"] == "Milvus Lite 2.5"
