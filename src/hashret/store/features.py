"""How an index stores the float features used by the fine re-rank, and a view over segments.

Storage modes (``feature_storage``):

* ``"float32"``: as given.
* ``"float16"``: half the bytes; Euclidean distances change by about 1e-3 relative.
* ``"pca"``: projected on the top ``pca_dim`` principal components (fitted on the first
  rows added), stored as float16. Distances are measured in the projected space, so the
  query goes through the same projection. Orthonormal components make this the best
  ``pca_dim``-dimensional approximation of the original distances.

The effect of each mode on retrieval quality is measured by ``benchmarks/rerank.py``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from hashret.store.manifest import FEATURE_STORAGE


class FeatureCodec:
    """Turns ``float[n, d]`` features into what the index stores, and queries likewise.

    Args:
        storage: one of ``"float32"``, ``"float16"``, ``"pca"``.
        feature_dim: ``d``, the dimension of the features given to ``add``.
        pca: for ``"pca"``: ``float32[p + 1, d]``, the mean (row 0) then ``p`` orthonormal
            components; ``None`` until fitted.
    """

    def __init__(self, storage: str, feature_dim: int, pca: np.ndarray | None = None) -> None:
        if storage not in FEATURE_STORAGE:
            raise ValueError(f"--features must be one of {', '.join(FEATURE_STORAGE)}, got {storage!r}")
        self.storage = storage
        self.feature_dim = int(feature_dim)
        self.pca = pca

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(np.float32 if self.storage == "float32" else np.float16)

    @property
    def stored_dim(self) -> int:
        return self.feature_dim if self.pca is None else len(self.pca) - 1

    @property
    def fitted(self) -> bool:
        return self.storage != "pca" or self.pca is not None

    def fit(self, features: np.ndarray, dim: int) -> np.ndarray:
        """Fit the PCA projection on ``float[n, d]`` rows; returns ``float32[dim + 1, d]``.

        Raises:
            ValueError: fewer rows than ``dim`` or ``dim`` not in ``[1, d]``.
        """
        x = np.asarray(features, dtype=np.float64)
        if not 1 <= dim <= self.feature_dim:
            raise ValueError(f"--pca-dim must be in [1, {self.feature_dim}] (the feature dimension), "
                             f"got {dim}")
        if len(x) < dim:
            raise ValueError(
                f"fitting a {dim}-dimensional PCA needs at least {dim} rows, the first batch has "
                f"{len(x)}: add a larger first batch or lower --pca-dim"
            )
        mean = x.mean(axis=0)
        _, _, vt = np.linalg.svd(x - mean, full_matrices=False)  # vt [min(n, d), d]
        self.pca = np.vstack([mean, vt[:dim]]).astype(np.float32)
        return self.pca

    def encode(self, features: np.ndarray) -> np.ndarray:
        """``float[n, d]`` -> stored ``float16/float32[n, stored_dim]``."""
        x = np.asarray(features)
        if x.ndim != 2 or x.shape[1] != self.feature_dim or x.dtype.kind != "f":
            raise ValueError(
                f"features must be float [n, {self.feature_dim}] (the index's feature dimension), "
                f"got {x.dtype} {x.shape}: extract them with the model the index was built with"
            )
        if not np.isfinite(x).all():
            raise ValueError("features contain NaN or infinity: the model produced invalid features")
        if self.storage == "pca":
            if self.pca is None:
                raise ValueError("the PCA projection is not fitted yet (fit() on the first batch)")
            x = (x.astype(np.float32) - self.pca[0]) @ self.pca[1:].T  # [n, p]
        with np.errstate(over="ignore"):  # reported below, with the fix
            out = np.ascontiguousarray(x, dtype=self.dtype)
        if self.dtype == np.float16 and not np.isfinite(out).all():
            raise ValueError(
                "features exceed float16's range (|x| > 65504): store them as float32 (`--features float32`)"
            )
        return out

    def encode_query(self, features: np.ndarray) -> np.ndarray:
        """Query features in the stored space, as float32 (compared in float32)."""
        return self.encode(features).astype(np.float32)


class SegmentedRows:
    """Rows of several ``[n_i, d]`` arrays (memory maps) seen as one ``[sum n_i, d]`` array.

    Supports what :class:`hashret.search.HierarchicalSearcher` needs: ``shape``, ``ndim``,
    ``dtype``, ``len`` and indexing by an ``int64[m]`` array of rows (reads only those rows).
    """

    def __init__(self, parts: Sequence[np.ndarray], dim: int, dtype: np.dtype) -> None:
        self.parts = list(parts)
        self.offsets = np.cumsum([0] + [len(p) for p in self.parts])  # [s + 1]
        self.shape = (int(self.offsets[-1]), int(dim))
        self.ndim = 2
        self.dtype = np.dtype(dtype)
        # what the distance kernels read: plain arrays (not np.memmap objects, whose every view and
        # slice costs microseconds), float16 as its uint16 bit patterns
        self._kernel_parts = [np.asarray(p).view(np.uint16) if p.dtype == np.float16 else np.asarray(p)
                              for p in self.parts]

    def __len__(self) -> int:
        return self.shape[0]

    def euclidean(self, query: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """Euclidean distances ``float32[m]`` from ``query float32[d]`` to the given rows.

        Reads only those rows (numba kernels of :mod:`hashret.index._distance_kernels`;
        float16 rows are widened exactly). Accumulates in float32, like the generic path of
        :meth:`hashret.search.HierarchicalSearcher.euclidean_distances`.
        """
        from hashret.index import _distance_kernels as kern

        rows = np.asarray(rows, dtype=np.int64)
        q = np.ascontiguousarray(query, dtype=np.float32)
        if len(self.parts) == 1:
            order, local, bounds = None, rows, np.array([0, len(rows)])
        else:  # group the rows by segment with one sort (a pool spans every segment)
            seg = np.searchsorted(self.offsets, rows, side="right") - 1  # [m] segment of each row
            order = np.argsort(seg.astype(np.uint16 if len(self.parts) < 2**16 else np.int64), kind="stable")
            local = rows[order] - self.offsets[seg[order]]  # [m] row within its segment, by segment
            bounds = np.searchsorted(seg[order], np.arange(len(self.parts) + 1))  # [s + 1]
        res = np.empty(len(rows), dtype=np.float32)
        for s, part in enumerate(self._kernel_parts):
            a, b = int(bounds[s]), int(bounds[s + 1])
            if a == b:
                continue
            if part.dtype == np.uint16:
                kern.squared_l2_f16(part, local[a:b], q, res[a:b])
            else:
                kern.squared_l2_f32(part, local[a:b], q, res[a:b])
        if order is not None:
            out = np.empty_like(res)
            out[order] = res
            res = out
        return np.sqrt(res)

    def __getitem__(self, rows: np.ndarray) -> np.ndarray:
        rows = np.asarray(rows, dtype=np.int64)
        if len(self.parts) == 1:
            return np.asarray(self.parts[0][rows])
        out = np.empty((len(rows), self.shape[1]), dtype=self.dtype)
        seg = np.searchsorted(self.offsets, rows, side="right") - 1  # [m] segment of each row
        for s in np.unique(seg):
            sel = np.flatnonzero(seg == s)
            out[sel] = self.parts[s][rows[sel] - self.offsets[s]]
        return out
