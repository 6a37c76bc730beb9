from __future__ import annotations

from pathlib import Path

import pytest

from hashret.eval import plot_precision_at_k

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def test_writes_a_png(tmp_path: Path):
    curves = {"12 bits": [0.9, 0.8, 0.7, 0.65], "48 bits": [0.99, 0.97, 0.96, 0.95]}
    out = plot_precision_at_k(curves, tmp_path / "plots" / "pk.png", title="MNIST")
    assert out == tmp_path / "plots" / "pk.png"
    assert out.read_bytes()[:8] == PNG_SIGNATURE
    assert [p.name for p in out.parent.iterdir()] == ["pk.png"]  # no temp file left


def test_explicit_ks(tmp_path: Path):
    out = plot_precision_at_k(
        {"lsh": [0.5, 0.4, 0.3]}, tmp_path / "pk.png", title="t", ks=[1, 100, 1000]
    )
    assert out.read_bytes()[:8] == PNG_SIGNATURE


def test_errors(tmp_path: Path):
    with pytest.raises(ValueError, match="ks has 2"):
        plot_precision_at_k({"a": [0.1, 0.2, 0.3]}, tmp_path / "x.png", title="t", ks=[1, 2])
    with pytest.raises(ValueError, match="empty"):
        plot_precision_at_k({}, tmp_path / "x.png", title="t")
    with pytest.raises(ValueError, match="empty"):
        plot_precision_at_k({"a": []}, tmp_path / "x.png", title="t")
    assert not list(tmp_path.iterdir())


def test_ideal_curve(tmp_path: Path):
    out = plot_precision_at_k({"48 bits": [1.0, 0.9, 0.6, 0.4]}, tmp_path / "pk.png", title="t",
                              ideal=[1.0, 1.0, 2 / 3, 1 / 2])
    assert out.read_bytes()[:8] == PNG_SIGNATURE
    with pytest.raises(ValueError, match="ideal has 2 points"):
        plot_precision_at_k({"a": [0.1, 0.2, 0.3]}, tmp_path / "x.png", title="t", ideal=[1.0, 1.0])
