"""One benchmark run: train, encode (database + queries), evaluate, with the timings."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

from hashret.run import encode_run, evaluate_run, open_run
from hashret.training import TrainConfig, train


def train_encode_evaluate(cfg: TrainConfig, run_dir: Path, data: Any) -> tuple[Any, dict, float, float]:
    """Train ``cfg`` into ``run_dir`` (replacing it), encode and evaluate the run.

    Returns:
        ``(train result, evaluation report, encode seconds, evaluation seconds)``.
    """
    res = train(cfg, run_dir, overwrite=True, data=data, progress=sys.stderr.isatty())
    run = open_run(run_dir)
    t0 = time.perf_counter()
    enc = encode_run(run, data=data)
    encode_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    rep = evaluate_run(run, encodings=enc)
    return res, rep, encode_s, time.perf_counter() - t0
