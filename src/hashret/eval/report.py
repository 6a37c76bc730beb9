"""Evaluation reports: a fixed-width text table and JSON files written atomically."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from hashret.io import atomic_write, to_jsonable

_MAP_AT = re.compile(r"^map@(\d+)$")
_RADIUS = re.compile(r"^precision@radius(\d+)$")
_PK_SHOWN = (1, 10, 100, 1000)


def format_table(results: Mapping[str, Any] | Sequence[Mapping[str, Any]]) -> str:
    """Render evaluation results as a small fixed-width text table.

    Args:
        results: one result dict from :func:`hashret.eval.evaluate_codes` (one row), a
            list of them (one row each), or a mapping ``{run name: result dict}`` (one
            row each, with a ``run`` column).

    Returns:
        The table, one line per row after a header, columns: protocol, bits, mAP@k, mAP,
        P@radius, P@1 / P@10 / P@100 / P@1000 (those the ``precision@k`` curve reaches),
        train_seconds (when a result has it). Missing values print as ``-``.
    """
    rows = _as_rows(results)
    columns: list[tuple[str, Any]] = []
    if any(name is not None for name, _ in rows):
        columns.append(("run", lambda name, r: name))
    columns.append(("protocol", lambda name, r: _protocol_name(r)))
    columns.append(("bits", lambda name, r: r.get("bits")))
    for key in _matching_keys(rows, _MAP_AT):
        columns.append((f"mAP@{_MAP_AT.match(key).group(1)}", lambda name, r, key=key: r.get(key)))
    if any("map" in r for _, r in rows):
        columns.append(("mAP", lambda name, r: r.get("map")))
    for key in _matching_keys(rows, _RADIUS):
        columns.append((f"P@r{_RADIUS.match(key).group(1)}", lambda name, r, key=key: r.get(key)))
    longest = max((len(r.get("precision@k") or []) for _, r in rows), default=0)
    for k in _PK_SHOWN:
        if k <= longest:
            columns.append((f"P@{k}", lambda name, r, k=k: _pk(r, k)))
    if any("train_seconds" in r for _, r in rows):
        columns.append(("train_s", lambda name, r: r.get("train_seconds")))

    cells = [[_cell(get(name, r)) for _, get in columns] for name, r in rows]
    widths = [
        max([len(header)] + [len(row[i]) for row in cells]) for i, (header, _) in enumerate(columns)
    ]
    lines = ["  ".join(h.rjust(w) for (h, _), w in zip(columns, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(c.rjust(w) for c, w in zip(row, widths, strict=True)) for row in cells]
    return "\n".join(lines)


def write_report(results: Mapping[str, Any], path: str | os.PathLike[str]) -> Path:
    """Write results as JSON, atomically (a temporary file then ``os.replace``).

    numpy scalars and arrays, tuples, paths and dataclasses are converted to plain
    JSON types; parent directories are created.

    Returns:
        The path written.
    """
    text = json.dumps(to_jsonable(results), indent=2, sort_keys=False) + "\n"
    out = atomic_write(path, lambda p: p.write_text(text, encoding="utf-8"))
    return out


def read_report(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a report written by :func:`write_report`.

    Raises:
        FileNotFoundError: no file at ``path``.
        ValueError: the file is not a JSON object.
    """
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"no report at {p}; write one with hashret.eval.write_report()")
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise ValueError(f"{p} is not valid JSON ({e}); was it written by write_report()?") from e
    if not isinstance(data, dict):
        raise ValueError(f"{p} holds a JSON {type(data).__name__}, expected an object")
    return data


def _as_rows(
    results: Mapping[str, Any] | Sequence[Mapping[str, Any]],
) -> list[tuple[str | None, Mapping[str, Any]]]:
    if isinstance(results, Mapping):
        if _looks_like_result(results):
            return [(None, results)]
        if results and all(isinstance(v, Mapping) for v in results.values()):
            return [(str(name), r) for name, r in results.items()]
    elif isinstance(results, Sequence) and all(isinstance(r, Mapping) for r in results):
        return [(None, r) for r in results]
    raise ValueError(
        "format_table expects a result dict from evaluate_codes(), a list of them, "
        "or a mapping {run name: result dict}"
    )


def _looks_like_result(r: Mapping[str, Any]) -> bool:
    return any(k in r for k in ("map", "bits", "protocol", "precision@k")) or any(
        isinstance(k, str) and (_MAP_AT.match(k) or _RADIUS.match(k)) for k in r
    )


def _matching_keys(rows: list[tuple[str | None, Mapping[str, Any]]], pattern: re.Pattern) -> list:
    keys: list[str] = []
    for _, r in rows:
        keys += [k for k in r if isinstance(k, str) and pattern.match(k) and k not in keys]
    return keys


def _protocol_name(r: Mapping[str, Any]) -> Any:
    p = r.get("protocol")
    return p.get("name") if isinstance(p, Mapping) else p


def _pk(r: Mapping[str, Any], k: int) -> Any:
    curve = r.get("precision@k") or []
    return curve[k - 1] if k <= len(curve) else None


def _cell(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, (bool, np.bool_)):
        return str(bool(v))
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    if isinstance(v, (float, np.floating)):
        return f"{float(v):.4f}"
    return str(v)
