from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from hashret.eval import Protocol, evaluate_codes, format_table, read_report, write_report


def _result(hand_set) -> dict:
    q, ql, db, dl = hand_set
    return evaluate_codes(q, ql, db, dl, bits=8, protocol=Protocol(name="hand", k=3))


def test_json_round_trip_converts_numpy(tmp_path: Path, hand_set):
    res = _result(hand_set)
    res.update(
        train_seconds=np.float32(1.5),
        epochs=np.int64(3),
        curve=np.array([0.5, 0.25]),
        flag=np.bool_(True),
        pair=(1, 2),
        checkpoint=tmp_path / "model.safetensors",
    )
    out = write_report(res, tmp_path / "sub" / "report.json")
    assert out == tmp_path / "sub" / "report.json"
    back = read_report(out)
    assert back["map@3"] == res["map@3"]
    assert back["precision@k"] == res["precision@k"]
    assert back["protocol"] == res["protocol"]
    assert back["train_seconds"] == 1.5 and back["epochs"] == 3 and back["flag"] is True
    assert back["curve"] == [0.5, 0.25] and back["pair"] == [1, 2]
    assert back["checkpoint"] == str(tmp_path / "model.safetensors")
    assert json.loads(out.read_text()) == back
    assert [p.name for p in out.parent.iterdir()] == ["report.json"]  # no temp file left


def test_write_replaces_existing(tmp_path: Path):
    path = tmp_path / "r.json"
    write_report({"map": 0.1}, path)
    write_report({"map": 0.2}, path)
    assert read_report(path) == {"map": 0.2}


def test_read_errors(tmp_path: Path):
    with pytest.raises(FileNotFoundError, match="write_report"):
        read_report(tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        read_report(tmp_path / "bad.json")
    (tmp_path / "list.json").write_text("[1, 2]")
    with pytest.raises(ValueError, match="object"):
        read_report(tmp_path / "list.json")


def test_format_table_single_result(hand_set):
    text = format_table(_result(hand_set))
    header, rule, row = text.splitlines()
    assert header.split() == ["protocol", "bits", "mAP@3", "mAP", "P@r2", "P@1"]
    assert set(rule.replace(" ", "")) == {"-"}
    assert row.split()[:3] == ["hand", "8", f"{(5 / 6 + 1) / 3:.4f}"]
    assert len(header) == len(rule) == len(row)


def test_format_table_many_rows():
    base = {
        "protocol": {"name": "mnist"},
        "map@1000": 0.9,
        "map": 0.8,
        "precision@radius2": 0.7,
        "precision@k": [0.99] * 1000,
    }
    text = format_table({"12 bits": {**base, "bits": 12}, "48 bits": {**base, "bits": 48,
                         "train_seconds": 12.5}})  # fmt: skip
    lines = text.splitlines()
    assert lines[0].split() == [
        "run", "protocol", "bits", "mAP@1000", "mAP", "P@r2",
        "P@1", "P@10", "P@100", "P@1000", "train_s",
    ]  # fmt: skip
    assert lines[2].split()[-1] == "-" and lines[3].split()[-1] == "12.5000"
    assert len({len(line) for line in lines}) == 1
    assert format_table([base, base]).count("mnist") == 2
    with pytest.raises(ValueError, match="format_table"):
        format_table({"a": 1})
