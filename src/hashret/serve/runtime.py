"""Which runtime encodes the service's queries: the index's torch model or ONNX Runtime.

ONNX Runtime encodes one small image 1.6-2x faster than torch eager on a quiet core, and far
faster when the cores are oversubscribed (``benchmarks/results/load-cpu2.md``). It computes
in fp32, so it gives exactly the codes the database holds only when the index was encoded in
fp32. An index encoded in bf16 (the training arithmetic on CPUs with native bf16) gets, for
a few queries, a code one bit away from the database's encoding of the same image (3 of 200
digits test images; the load benchmark measures it on its MNIST index). Hence:

- ``auto`` (default): ONNX Runtime when it is installed and the index's precision is fp32,
  else torch;
- ``onnx``: ONNX Runtime whatever the precision (said at start when it is bf16);
- ``torch``: the index's own model, as it encoded the database.
"""

from __future__ import annotations

import importlib.util
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

RUNTIMES = ("auto", "torch", "onnx")


@dataclass(frozen=True)
class RuntimeChoice:
    """The runtime chosen and why: ``name`` is ``"torch"`` or ``"onnx"``; ``onnx_file`` the graph
    (when ``onnx``); ``note`` a sentence for the start-up line."""

    name: str
    onnx_file: Path | None
    note: str


def onnx_available() -> bool:
    """True when onnxruntime, onnx and onnxscript are importable (the ``onnx`` extra)."""
    return all(importlib.util.find_spec(m) is not None for m in ("onnxruntime", "onnx", "onnxscript"))


def choose_runtime(runtime: str, model: Any, model_sha256: str | None, *, onnx_file: str | Path | None = None,
                   workdir: str | Path | None = None) -> RuntimeChoice:
    """Decide the query runtime for an index's ``model`` (an Encoder) and export it if needed.

    Args:
        runtime: ``auto``, ``torch`` or ``onnx`` (``hashret serve --runtime``).
        model: the index's Encoder.
        model_sha256: the checkpoint the index records; a given ``onnx_file`` must be its export.
        onnx_file: an export of this model (``hashret export-onnx``); else one is written into
            ``workdir`` (default: a new temporary folder).

    Raises:
        ValueError: an unknown runtime, or an ``onnx_file`` exported from another model.
        ImportError: ``runtime="onnx"`` without the ``onnx`` extra.
    """
    if runtime not in RUNTIMES:
        raise ValueError(f"--runtime {runtime}: choose one of {', '.join(RUNTIMES)}")
    if runtime == "torch" or (runtime == "auto" and (model.precision != "fp32" or not onnx_available())):
        why = ("" if runtime == "torch" else
               " (ONNX Runtime computes in fp32; the index was encoded in bf16)" if model.precision != "fp32"
               else " (install hashret[onnx] for ONNX Runtime)")
        return RuntimeChoice("torch", None, f"torch {model.precision}{why}")
    if not onnx_available():
        raise ImportError("--runtime onnx needs ONNX Runtime: pip install 'hashret[onnx]'")
    from hashret.onnx_encoder import export_onnx, read_metadata

    if onnx_file is not None:
        path = Path(onnx_file)
        if not path.is_file():
            raise FileNotFoundError(f"--onnx {path}: no such file; write it with "
                                    "`hashret export-onnx INDEX_DIR --out FILE`")
        sha = read_metadata(path).get("model_sha256")
        if model_sha256 and sha != model_sha256:
            raise ValueError(f"--onnx {path} was exported from another model than the index's: export the "
                             "index's own (`hashret export-onnx INDEX_DIR --out FILE`)")
    else:
        folder = Path(workdir) if workdir else Path(tempfile.mkdtemp(prefix="hashret-onnx-"))
        path = export_onnx(model, folder / "query-encoder.onnx", model_sha256=model_sha256)
    note = "ONNX Runtime fp32"
    if model.precision != "fp32":
        note += (f" (the index was encoded in {model.precision}: a query's code may differ from the "
                 "database's code of the same image in a bit near the threshold; --runtime torch avoids it)")
    return RuntimeChoice("onnx", path, note)
