"""hashret: deep binary hash codes for fast content-based image retrieval.

The public API, re-exported here; the torch-heavy parts load on first use so that
``import hashret.codes`` and ``hashret --help`` stay light.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "binarize": "hashret.codes", "pack": "hashret.codes", "unpack": "hashret.codes",
    "hamming_distances": "hashret.codes",
    "ModelConfig": "hashret.models", "create_model": "hashret.models",
    "TrainConfig": "hashret.training", "train": "hashret.training",
    "load_model": "hashret.training",
    "load_dataset": "hashret.data",
    "encode_images": "hashret.encode",
    "FlatIndex": "hashret.index", "create_index": "hashret.index", "list_indexes": "hashret.index",
    "HierarchicalSearcher": "hashret.search",
    "evaluate_codes": "hashret.eval",
    "open_run": "hashret.run", "encode_run": "hashret.run", "evaluate_run": "hashret.run",
    "search_images": "hashret.run",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'hashret' has no attribute {name!r}")
