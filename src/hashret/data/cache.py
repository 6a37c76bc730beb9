"""A disk cache of decoded datasets: decode an image collection once, then reuse it.

Each entry is one uncompressed ``.npz`` file named by the SHA-256 of its key (the reader,
the resolved source path, a fingerprint of the source's files and every option that changes
the result), holding ``{train,test}_{images,labels,ids}`` and a JSON ``meta`` entry
(``name``, ``classes``, ``natural``, ``source`` and the key itself). Files are written to a
temporary name and moved into place, so readers never see a half-written entry; an entry
that cannot be read back is rebuilt with a warning.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import numpy as np

from hashret.data.arrays import DatasetSplits, ImageArray
from hashret.io import atomic_write

#: Bumped whenever the decoded content or the file layout changes, so old entries are ignored.
CACHE_FORMAT = 1

CacheDir = str | Path | None | Literal[False]


def default_cache_dir() -> Path:
    """``$HASHRET_CACHE`` if set, else ``~/.cache/hashret``."""
    env = os.environ.get("HASHRET_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "hashret"


def cache_key(key_parts: dict[str, Any]) -> str:
    """SHA-256 hex digest of ``key_parts`` (JSON with sorted keys) and :data:`CACHE_FORMAT`."""
    text = json.dumps({"format": CACHE_FORMAT, **key_parts}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def cache_path(key_parts: dict[str, Any], cache_dir: str | Path | None = None) -> Path:
    """Where the entry for ``key_parts`` lives: ``<cache_dir>/<reader>-<sha256[:32]>.npz``."""
    return _entry_path(key_parts, cache_key(key_parts), cache_dir)


def _entry_path(key_parts: dict[str, Any], key: str, cache_dir: str | Path | None) -> Path:
    folder = default_cache_dir() if cache_dir is None else Path(cache_dir).expanduser()
    return folder / f"{key_parts.get('reader', 'data')}-{key[:32]}.npz"


def _save(path: Path, splits: DatasetSplits, key: str) -> None:
    meta = {
        "name": splits.name, "classes": list(splits.train.classes),
        "natural": bool(splits.natural), "source": splits.source, "key": key,
    }
    arrays = {"meta": np.array(json.dumps(meta))}
    for split in ("train", "test"):
        part: ImageArray = getattr(splits, split)
        arrays |= {f"{split}_images": part.images, f"{split}_labels": part.labels,
                   f"{split}_ids": part.ids}
    def write(tmp: Path) -> None:
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)

    atomic_write(path, write, durable=True)


def _load(path: Path, key: str) -> DatasetSplits:
    """Read an entry; raises (anything) when it is corrupt or belongs to another key."""
    with np.load(path, allow_pickle=False) as z:
        meta = json.loads(str(z["meta"][()]))
        if meta.get("key") != key:
            raise ValueError("the entry was written for another key")
        classes = tuple(meta["classes"])
        parts = {
            split: ImageArray(
                images=z[f"{split}_images"], labels=z[f"{split}_labels"],
                ids=z[f"{split}_ids"], classes=classes,
            )
            for split in ("train", "test")
        }
    return DatasetSplits(
        name=str(meta["name"]), train=parts["train"], test=parts["test"],
        natural=bool(meta["natural"]), source=str(meta["source"]),
    )


def load_cached(
    key_parts: dict[str, Any], cache_dir: str | Path | None = None
) -> DatasetSplits | None:
    """The cached entry for ``key_parts``, or None when there is none.

    An entry that cannot be read back (truncated, corrupt, written for another key) is
    reported with a warning, deleted, and treated as missing.
    """
    key = cache_key(key_parts)
    path = _entry_path(key_parts, key, cache_dir)
    if not path.exists():
        return None
    try:
        return _load(path, key)
    except Exception as e:  # noqa: BLE001 - any unreadable entry is rebuilt, never fatal
        warnings.warn(
            f"cache file {path} is unreadable ({type(e).__name__}: {e}); rebuilding it",
            stacklevel=3,
        )
        try:
            path.unlink()
        except OSError:
            pass
        return None


def cached(
    key_parts: dict[str, Any],
    build: Callable[[], DatasetSplits],
    cache_dir: CacheDir = None,
) -> DatasetSplits:
    """Return the cached result of ``build()`` for ``key_parts``, building and storing it once.

    Args:
        key_parts: JSON-serialisable description of everything the result depends on
            (``reader``, ``source``, ``fingerprint``, options). A ``reader`` entry also
            prefixes the file name.
        build: makes the :class:`DatasetSplits` on a cache miss.
        cache_dir: the cache folder; None for :func:`default_cache_dir`, False to skip the
            cache and just call ``build()``.

    A corrupt or unreadable entry is rebuilt with a warning; a cache folder that cannot be
    written only warns. The cache never makes loading fail.
    """
    if cache_dir is False:
        return build()
    hit = load_cached(key_parts, cache_dir)
    if hit is not None:
        return hit
    key = cache_key(key_parts)
    path = _entry_path(key_parts, key, cache_dir)
    splits = build()
    try:
        _save(path, splits, key)
    except OSError as e:
        warnings.warn(
            f"could not write the dataset cache {path} ({e}); the data was loaded but will be "
            "decoded again next time: set HASHRET_CACHE or --cache-dir to a writable folder",
            stacklevel=2,
        )
    return splits
