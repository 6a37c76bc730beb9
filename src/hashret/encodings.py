"""An encoded collection on disk: codes, features, labels, ids and what made them.

Layout of ``RUN_DIR/encodings/<name>/``: ``codes.npy`` (uint8 [n, nbytes]),
``features.npy`` (float32 [n, d]), ``labels.npy`` (int64 [n]), ``ids.npy`` (str [n]),
``meta.json`` (bits, model checksum, source, split, tta). ``meta.json`` is written last,
so a folder without it is an unfinished encoding and is never read.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from hashret.codes import check_codes
from hashret.io import read_json, save_npy, write_json

ARRAYS = ("codes", "features", "labels", "ids")


@dataclass(frozen=True)
class EncodedSet:
    """A collection's encodings with its labels and ids (all of length n)."""

    codes: np.ndarray
    features: np.ndarray
    labels: np.ndarray
    ids: np.ndarray
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        n = len(self.codes)
        for name in ARRAYS[1:]:
            if len(getattr(self, name)) != n:
                raise ValueError(f"encoded set: {name} has {len(getattr(self, name))} rows, codes {n}")
        if "bits" in self.meta:
            check_codes(self.codes, int(self.meta["bits"]))

    def __len__(self) -> int:
        return len(self.codes)


def save_encoded(folder: str | Path, enc: EncodedSet) -> Path:
    """Write an :class:`EncodedSet` (each file atomically, ``meta.json`` last)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "meta.json").unlink(missing_ok=True)  # mark unfinished while arrays change
    for name in ARRAYS:
        save_npy(folder / f"{name}.npy", getattr(enc, name))
    write_json(folder / "meta.json", enc.meta | {"n": len(enc)})
    return folder


def load_encoded(folder: str | Path, mmap: bool = False) -> EncodedSet:
    """Read an :class:`EncodedSet`; ``mmap`` memory-maps the arrays."""
    folder = Path(folder)
    if not (folder / "meta.json").exists():
        raise FileNotFoundError(
            f"no finished encoding in {folder}: run `hashret encode RUN_DIR` first"
        )
    meta = read_json(folder / "meta.json")
    arrays = {}
    for name in ARRAYS:
        try:
            arrays[name] = np.load(folder / f"{name}.npy", mmap_mode="r" if mmap else None,
                                   allow_pickle=False)
        except (ValueError, OSError) as e:
            raise ValueError(
                f"{folder / (name + '.npy')} is unreadable ({e}): re-run `hashret encode`"
            ) from e
    enc = EncodedSet(meta=meta, **arrays)
    if len(enc) != meta.get("n", len(enc)):
        raise ValueError(f"{folder} holds {len(enc)} items but meta.json says {meta['n']}: "
                         "re-run `hashret encode`")
    return enc
