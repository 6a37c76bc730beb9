"""The interface every shallow hashing baseline implements.

A baseline is fitted on float features (raw pixels, or the float features of a trained
hashret model) and encodes features into packed codes through :func:`hashret.codes.encode`
with threshold 0: bit ``j`` is 1 where projection ``j`` is strictly positive. The codes are
``uint8[n, ceil(bits / 8)]``, the same as a deep model's, so every index, search and
evaluation path takes them unchanged.

Input checks live here, once (template method): subclasses implement ``_fit`` and
``_project`` on validated ``float64`` arrays.

* features must be a finite 2-D float array with at least ``bits`` rows to fit;
* a feature column that is constant over the fitting samples is an error by default
  (it carries no information and makes covariance matrices singular). ``drop_constant=True``
  drops such columns instead, at fit time, and drops the same columns at encode time: raw
  MNIST pixels need it (the border pixels are 0 in every training image);
* a supervised baseline needs one integer class label per fitting sample, two classes at
  least; an unsupervised one ignores labels.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import ClassVar, Self

import numpy as np

from hashret.codes import check_bits, encode

#: rows projected at once by :meth:`HashBaseline.encode` (bounds the float64 copies)
ENCODE_CHUNK = 8192


class HashBaseline(ABC):
    """A shallow hashing method: ``fit(features, labels)`` then ``encode(features)``.

    Class attributes:
        name: the registry name (``create_baseline(name, bits)``).
        supervised: ``fit`` needs class labels.
        paper: the paper the implementation follows.

    Args:
        bits: code length, in ``[8, 256]``.
        seed: seed of every random choice the method makes (projections, initial
            rotations, anchors, labelled subsets); the same seed and data give the same codes.
        drop_constant: drop feature columns that are constant over the fitting samples
            instead of raising (see the module docstring).

    Attributes (after ``fit``):
        n_features_in_: number of feature columns ``fit`` saw.
        kept_columns_: ``int64[d']`` indices of the columns the method uses.
    """

    name: ClassVar[str] = ""
    supervised: ClassVar[bool] = False
    paper: ClassVar[str] = ""

    def __init__(self, bits: int, *, seed: int = 0, drop_constant: bool = False) -> None:
        self.bits: int = check_bits(bits)
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
            raise ValueError(f"seed must be an integer >= 0, got {seed!r}")
        self.seed: int = int(seed)
        self.drop_constant: bool = bool(drop_constant)
        self.n_features_in_: int | None = None
        self.kept_columns_: np.ndarray | None = None

    def __repr__(self) -> str:
        state = "fitted" if self.fitted else "not fitted"
        return f"{type(self).__name__}(bits={self.bits}, seed={self.seed}, {state})"

    @property
    def fitted(self) -> bool:
        """``fit`` has been called successfully."""
        return self.n_features_in_ is not None

    def rng(self) -> np.random.Generator:
        """A fresh generator from ``seed``: every ``fit`` makes the same random choices."""
        return np.random.default_rng(self.seed)

    # ----------------------------------------------------------------- public API
    def fit(self, features: np.ndarray, labels: np.ndarray | None = None) -> Self:
        """Learn the hash functions from the fitting set.

        Args:
            features: ``float[n, d]`` (any float or integer dtype; used as float64),
                ``n >= bits``, finite.
            labels: ``int[n]`` class ids; required by supervised methods, ignored by the
                others.

        Returns:
            ``self``.

        Raises:
            ValueError: bad shape, NaN/inf, fewer samples than bits, a constant column
                (without ``drop_constant``), missing or malformed labels for a supervised
                method; each message says how to fix it.
        """
        x = self._check_features(features, "features")
        n, d = x.shape
        if n < self.bits:
            raise ValueError(
                f"{self.name} cannot fit {self.bits} bits on {n} samples: pass at least "
                f"{self.bits} samples (many more in practice) or use fewer bits"
            )
        y = self._check_labels(labels, n) if self.supervised else None
        span = x.max(axis=0) - x.min(axis=0)
        constant = np.flatnonzero(span == 0)
        if constant.size and not self.drop_constant:
            shown = ", ".join(str(int(i)) for i in constant[:8]) + (", ..." if constant.size > 8 else "")
            raise ValueError(
                f"{constant.size} of the {d} feature columns are constant over the {n} fitting "
                f"samples (columns {shown}): they carry no information and make covariance "
                f"matrices singular; pass drop_constant=True to drop them (the same columns are "
                f"then dropped at encode time) or remove them yourself"
            )
        kept = np.flatnonzero(span != 0).astype(np.int64)
        if kept.size == 0:
            raise ValueError(f"all {d} feature columns are constant over the fitting samples: "
                             "there is nothing to hash")
        self.n_features_in_ = None  # unfitted while the method's state changes
        self._fit(x[:, kept] if kept.size < d else x, y)
        self.kept_columns_ = kept
        self.n_features_in_ = d
        return self

    def project(self, features: np.ndarray) -> np.ndarray:
        """Real-valued projections whose signs are the bits: ``float64[n, bits]``.

        Raises:
            RuntimeError: not fitted.
            ValueError: wrong number of columns, NaN/inf.
        """
        x = self._check_encode_input(features)
        out = np.empty((x.shape[0], self.bits), dtype=np.float64)
        for start in range(0, x.shape[0], ENCODE_CHUNK):
            out[start:start + ENCODE_CHUNK] = self._project(self._columns(x[start:start + ENCODE_CHUNK]))
        return out

    def encode(self, features: np.ndarray) -> np.ndarray:
        """Packed codes: ``uint8[n, ceil(bits/8)]``, bit ``j`` = projection ``j`` > 0.

        Args:
            features: ``float[n, d]`` with the ``d`` columns ``fit`` saw.

        Raises:
            RuntimeError: not fitted.
            ValueError: wrong number of columns, NaN/inf.
        """
        x = self._check_encode_input(features)
        nbytes = (self.bits + 7) // 8
        out = np.empty((x.shape[0], nbytes), dtype=np.uint8)
        for start in range(0, x.shape[0], ENCODE_CHUNK):
            proj = self._project(self._columns(x[start:start + ENCODE_CHUNK]))
            out[start:start + ENCODE_CHUNK] = encode(proj, threshold=0.0)
        return out

    # ------------------------------------------------------- what subclasses do
    @abstractmethod
    def _fit(self, x: np.ndarray, y: np.ndarray | None) -> None:
        """Learn from ``float64[n, d']`` (checked, constant columns gone) and ``int64[n]``
        class ids in ``[0, c)`` (supervised methods) or ``None``."""

    @abstractmethod
    def _project(self, x: np.ndarray) -> np.ndarray:
        """``float64[m, d']`` -> ``float64[m, bits]``; bit = projection > 0."""

    # ----------------------------------------------------------------- checks
    def _check_features(self, features: np.ndarray, what: str) -> np.ndarray:
        x = np.asarray(features)
        if x.ndim != 2:
            raise ValueError(
                f"{what} must be 2-D [n, d] (one row per item), got shape {x.shape}; "
                "flatten images with hashret.baselines.pixel_features()"
            )
        if not (np.issubdtype(x.dtype, np.floating) or np.issubdtype(x.dtype, np.integer)):
            raise ValueError(f"{what} must be numbers, got dtype {x.dtype}")
        if x.shape[1] == 0:
            raise ValueError(f"{what} has no columns")
        x = np.asarray(x, dtype=np.float64)
        bad = ~np.isfinite(x)
        if bad.any():
            rows = np.flatnonzero(bad.any(axis=1))
            raise ValueError(
                f"{what} contain NaN or infinite values in {rows.size} rows (first: row "
                f"{int(rows[0])}); remove or impute them before hashing"
            )
        return x

    def _check_labels(self, labels: np.ndarray | None, n: int) -> np.ndarray:
        if labels is None:
            raise ValueError(
                f"{self.name} is supervised: pass the class labels of the fitting samples, "
                f"fit(features, labels) with labels int[{n}]; unsupervised baselines are "
                f"{', '.join(_unsupervised_names())}"
            )
        y = np.asarray(labels)
        if y.shape != (n,):
            raise ValueError(
                f"labels must have shape ({n},) (one class id per fitting sample), got {y.shape}"
            )
        if not np.issubdtype(y.dtype, np.integer):
            raise ValueError(
                f"labels must be integer class ids, got dtype {y.dtype}; "
                "map class names to ids with np.unique(names, return_inverse=True)"
            )
        classes, ids = np.unique(y, return_inverse=True)
        if classes.size < 2:
            raise ValueError(
                f"{self.name} learns from label differences: the labels hold one class "
                f"({classes[0] if classes.size else 'none'}), at least two are needed"
            )
        return ids.astype(np.int64)

    def _check_encode_input(self, features: np.ndarray) -> np.ndarray:
        if not self.fitted:
            raise RuntimeError(f"{self.name} is not fitted: call fit(features) before encode()")
        x = np.asarray(features)
        if x.ndim != 2 or x.shape[1] != self.n_features_in_:
            raise ValueError(
                f"features must have shape [n, {self.n_features_in_}] (the columns fit() saw), "
                f"got {x.shape}"
            )
        if not (np.issubdtype(x.dtype, np.floating) or np.issubdtype(x.dtype, np.integer)):
            raise ValueError(f"features must be numbers, got dtype {x.dtype}")
        if np.issubdtype(x.dtype, np.floating) and not np.isfinite(x).all():
            rows = np.flatnonzero(~np.isfinite(x).all(axis=1))
            raise ValueError(
                f"features contain NaN or infinite values in {rows.size} rows (first: row "
                f"{int(rows[0])}); remove or impute them before hashing"
            )
        return x

    def _columns(self, x: np.ndarray) -> np.ndarray:
        """A chunk of encode input as ``float64[m, d']`` with the kept columns."""
        assert self.kept_columns_ is not None
        if self.kept_columns_.size < x.shape[1]:
            x = x[:, self.kept_columns_]
        return np.asarray(x, dtype=np.float64)


def _unsupervised_names() -> list[str]:
    """The unsupervised baselines, from the class hierarchy (no import of the registry, which
    imports this module)."""
    found, todo = set(), list(HashBaseline.__subclasses__())
    while todo:
        cls = todo.pop()
        todo += cls.__subclasses__()
        if isinstance(getattr(cls, "name", None), str) and not cls.supervised:
            found.add(cls.name)
    return sorted(found)
