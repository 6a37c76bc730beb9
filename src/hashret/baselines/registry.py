"""Baseline registry: ``create_baseline("itq", bits=48, seed=0)``, ``list_baselines()``."""

from __future__ import annotations

import inspect
from typing import Any

from hashret.baselines.base import HashBaseline
from hashret.baselines.itq import ITQ
from hashret.baselines.itq_cca import ITQCCA
from hashret.baselines.ksh import KSH
from hashret.baselines.lsh import LSH
from hashret.baselines.sh import SH

BASELINES: dict[str, type[HashBaseline]] = {cls.name: cls for cls in (LSH, SH, ITQ, ITQCCA, KSH)}


def list_baselines() -> list[str]:
    """Names of the registered baselines, in the order of the papers' tables."""
    return list(BASELINES)


def create_baseline(name: str, bits: int, **options: Any) -> HashBaseline:
    """Create an unfitted baseline by name.

    ``create_baseline("lsh", 48)``, ``create_baseline("itq", 32, seed=1)``,
    ``create_baseline("ksh", 48, n_anchors=300, n_labelled=2000, drop_constant=True)``: the
    options are the keyword arguments of the baseline class (see its docstring); every
    baseline takes ``seed`` and ``drop_constant``.

    Raises:
        ValueError: unknown name, or an option the baseline does not take.
    """
    if name not in BASELINES:
        raise ValueError(f"unknown baseline {name!r}: choose one of {', '.join(list_baselines())}")
    cls = BASELINES[name]
    params = inspect.signature(cls).parameters
    known = [p for p, v in params.items() if v.kind is inspect.Parameter.KEYWORD_ONLY]
    unknown = sorted(set(options) - set(known))
    if unknown:
        raise ValueError(
            f"baseline {name!r} takes no option {', '.join(unknown)}: its options are {', '.join(known)}"
        )
    return cls(bits, **options)
