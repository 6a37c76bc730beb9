"""Index registry: ``create_index("faiss-flat", bits=64)``, ``list_indexes()``."""

from __future__ import annotations

import inspect
from typing import Any

from hashret.index.base import HammingIndex
from hashret.index.faiss_flat import FaissFlatIndex
from hashret.index.faiss_hash import FaissHashIndex
from hashret.index.faiss_ivf import FaissIVFIndex
from hashret.index.faiss_multihash import FaissMultiHashIndex
from hashret.index.flat import FlatIndex
from hashret.index.milvus import MilvusIndex
from hashret.index.popcount import PopcountIndex

INDEXES: dict[str, type[HammingIndex]] = {
    cls.name: cls
    for cls in (FlatIndex, FaissFlatIndex, FaissHashIndex, FaissMultiHashIndex, FaissIVFIndex, PopcountIndex)
}
INDEXES[MilvusIndex.name] = MilvusIndex  # needs pymilvus: pip install 'hashret[milvus]'


def register_index(cls: type[HammingIndex]) -> type[HammingIndex]:
    """Register a :class:`HammingIndex` subclass under its ``name`` (usable as a decorator)."""
    if not (isinstance(cls, type) and issubclass(cls, HammingIndex)) or not cls.name:
        raise ValueError(f"{cls!r} must be a HammingIndex subclass with a non-empty `name`")
    if cls.name in INDEXES and INDEXES[cls.name] is not cls:
        raise ValueError(f"an index named {cls.name!r} is already registered ({INDEXES[cls.name].__name__})")
    INDEXES[cls.name] = cls
    return cls


def list_indexes() -> list[str]:
    """Names of the registered index backends, sorted."""
    return sorted(INDEXES)


def parse_index_spec(spec: str) -> tuple[str, dict[str, Any]]:
    """``"faiss-ivf:nlist=256,nprobe=16"`` -> ``("faiss-ivf", {"nlist": 256, "nprobe": 16})``.

    A spec is a backend name, optionally followed by ``:`` and comma-separated ``key=value``
    options (numbers become ``int`` / ``float``). It is what an index directory records as its
    backend, so a backend's options survive a reopen.

    Raises:
        ValueError: an option without ``=``.
    """
    name, _, rest = spec.partition(":")
    options: dict[str, Any] = {}
    for part in filter(None, (p.strip() for p in rest.split(","))):
        key, eq, value = part.partition("=")
        if not eq or not key.strip():
            raise ValueError(f"backend spec {spec!r}: options are key=value, e.g. "
                             "faiss-ivf:nlist=256,nprobe=16")
        options[key.strip()] = _number(value.strip())
    return name.strip(), options


def index_spec(name: str, **options: Any) -> str:
    """The spec string of a backend and its options (:func:`parse_index_spec` reads it back)."""
    return name + (":" + ",".join(f"{k}={v}" for k, v in sorted(options.items())) if options else "")


def _number(value: str) -> Any:
    for kind in (int, float):
        try:
            return kind(value)
        except ValueError:
            pass
    return value


def create_index(name: str, bits: int, **options: Any) -> HammingIndex:
    """Create an empty index by name or spec.

    ``create_index("numpy", 48)``, ``create_index("faiss-flat", 64)``,
    ``create_index("faiss-ivf", 64, nlist=256, nprobe=16)`` or, the same,
    ``create_index("faiss-ivf:nlist=256,nprobe=16", 64)``: the options are the keyword
    arguments of the backend class (see its docstring).

    Raises:
        ValueError: unknown name, or an option the backend does not take.
        ImportError: the backend needs faiss and it is not installed.
    """
    name, spec_options = parse_index_spec(name)
    options = spec_options | options
    if name not in INDEXES:
        raise ValueError(f"unknown index {name!r}: choose one of {', '.join(list_indexes())}")
    cls = INDEXES[name]
    params = inspect.signature(cls).parameters
    unknown = sorted(set(options) - {p for p in params if p != "bits"})
    if unknown:
        known = [p for p, v in params.items() if v.kind is inspect.Parameter.KEYWORD_ONLY]
        raise ValueError(
            f"index {name!r} takes no option {', '.join(unknown)}: its options are "
            f"{', '.join(known) or 'none'}"
        )
    return cls(bits, **options)
