"""Precision-at-k curves as PNG files (matplotlib, headless Agg canvas)."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

from hashret.io import atomic_write


def plot_precision_at_k(
    curves: Mapping[str, Sequence[float]],
    path: str | os.PathLike[str],
    *,
    title: str,
    ks: Sequence[int] | None = None,
    ideal: Sequence[float] | None = None,
) -> Path:
    """Plot precision against the number of retrieved images and write a PNG atomically.

    Args:
        curves: ``{label: precisions}``, one line per label; e.g. ``{"48 bits":
            result["precision@k"]}`` from :func:`hashret.eval.evaluate_codes`.
        path: output PNG file (parent directories are created).
        title: figure title.
        ks: x values (numbers of retrieved images), shared by every curve and as long
            as each; ``None`` means ``1, 2, ..., len(curve)`` per curve.
        ideal: the best P@k any ranking reaches at the same ks
            (:func:`hashret.eval.metrics.ideal_precision_at_k`), drawn dashed grey as
            "ideal", so a drop at the class size reads as the dataset's, not the codes'.

    Returns:
        The path written.

    Raises:
        ValueError: no curves, an empty curve, or ``ks`` (or ``ideal``) of a different length.
    """
    # Figure + Agg canvas directly: no pyplot, no global backend switch, thread-safe.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    if not curves:
        raise ValueError("curves is empty: pass {label: [P@1, P@2, ...]} with at least one curve")
    for label, ys in curves.items():
        if len(ys) == 0:
            raise ValueError(f"curve {label!r} is empty")
        if ks is not None and len(ks) != len(ys):
            raise ValueError(
                f"curve {label!r} has {len(ys)} points but ks has {len(ks)}: give one k per point"
            )
    longest = max(len(ys) for ys in curves.values())
    if ideal is not None and len(ideal) != longest:
        raise ValueError(f"ideal has {len(ideal)} points, the curves {longest}: compute it at the same ks")

    fig = Figure(figsize=(6.0, 4.0), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    for label, ys in curves.items():
        xs = list(ks) if ks is not None else list(range(1, len(ys) + 1))
        ax.plot(xs, [float(y) for y in ys], label=str(label), marker="." if len(ys) <= 20 else None)
    if ideal is not None:
        xs = list(ks) if ks is not None else list(range(1, len(ideal) + 1))
        ax.plot(xs, [float(y) for y in ideal], label="ideal (every relevant item first)", color="grey",
                linestyle="--", linewidth=1.0)
    ax.set_xlabel("number of retrieved images (k)")
    ax.set_ylabel("precision")
    ax.set_title(title)
    # zoom to the data (curves near 1 would otherwise be one line), but never past [0, 1]
    low = min(min(float(y) for y in ys) for ys in [*curves.values(), *([ideal] if ideal is not None else [])])
    ax.set_ylim(max(0.0, low - max(0.02, (1.0 - low) * 0.25)), 1.0 + 0.005)
    ax.grid(True, alpha=0.3)
    ax.legend(loc="best")
    fig.tight_layout()

    out = atomic_write(path, lambda p: fig.savefig(p, format="png"))
    return out
