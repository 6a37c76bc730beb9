"""Shallow hashing baselines (LSH, SH, ITQ, ITQ-CCA, KSH) behind one fit / encode interface."""

from hashret.baselines.base import HashBaseline
from hashret.baselines.features import PCAReducer, pixel_features
from hashret.baselines.itq import ITQ
from hashret.baselines.itq_cca import ITQCCA
from hashret.baselines.ksh import KSH
from hashret.baselines.lsh import LSH
from hashret.baselines.registry import BASELINES, create_baseline, list_baselines
from hashret.baselines.sh import SH

__all__ = [
    "BASELINES", "ITQ", "ITQCCA", "KSH", "LSH", "SH", "HashBaseline", "PCAReducer",
    "create_baseline", "list_baselines", "pixel_features",
]
