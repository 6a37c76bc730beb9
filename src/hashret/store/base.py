"""The contract of a searchable collection of images, whatever engine keeps it.

A :class:`Collection` holds, per item, a packed binary code, the float features that re-rank
it, and metadata (:class:`hashret.store.metadata.ItemMeta`: source, label, class name, extra
fields, optionally a thumbnail and the SHA-256 of the file it came from). Items get ids in
insertion order (``0, 1, ...``), never reused after :meth:`Collection.remove`. It also
records the model that made its codes (:attr:`Collection.model_record`), so queries are
encoded the way the database was.

Search is hierarchical search (:mod:`hashret.search`): a Hamming pool (top-N, or every item
within a radius), optionally widened to every item tied at the pool's last distance, then a
Euclidean re-rank on the stored features; ties go to the smaller id. Every engine returns
exactly the numpy reference's ids, distances and order (``tests/store/test_collection_contract.py``).

Engines: :class:`hashret.store.directory.IndexStore` (an index directory) and
:class:`hashret.store.milvus.MilvusCollection` (a Milvus collection); :func:`hashret.store.open_collection`
opens either from its location.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from hashret.search import SearchResult
from hashret.store.metadata import ItemMeta


class Collection(ABC):
    """A searchable collection of images (see the module docstring). Use as a context manager,
    or call :meth:`close`."""

    #: the engine's name, as ``info()["engine"]`` gives it
    engine: str = ""
    #: True when opened for writing (``add`` / ``remove``)
    writable: bool = False

    # ------------------------------------------------------------------ what it is
    @property
    @abstractmethod
    def location(self) -> str:
        """Where it lives: a directory path or a ``milvus://HOST:PORT/NAME`` / ``FILE.db:NAME`` URI."""

    @property
    @abstractmethod
    def bits(self) -> int:
        """Code length."""

    @property
    @abstractmethod
    def feature_dim(self) -> int | None:
        """Dimension of the features ``add`` takes (``None``: the collection keeps none)."""

    @property
    @abstractmethod
    def model_record(self) -> dict[str, Any]:
        """What it records of the model that made its codes (:meth:`hashret.encoder.Encoder.record`
        plus ``image_shape``); ``{}`` when codes were added directly."""

    @abstractmethod
    def model_file(self) -> Path | None:
        """The checkpoint of that model, checked against the record's SHA-256, or ``None`` when
        the collection cannot reach it (pass the model yourself then).

        Raises:
            ValueError: a file is there but is not the model that made the codes.
        """

    @abstractmethod
    def __len__(self) -> int:
        """Live items (removed ones excluded)."""

    # ------------------------------------------------------------------ writing
    @abstractmethod
    def add(self, codes: np.ndarray, features: np.ndarray | None, items: Sequence[ItemMeta] | None = None,
            *, build: dict[str, Any] | None = None) -> np.ndarray:
        """Add one batch of items, all or none; returns their new ids ``int64[m]``.

        Args:
            codes: ``uint8[m, nbytes]`` packed codes (:mod:`hashret.codes`).
            features: ``float[m, feature_dim]`` features of the same items.
            items: per-item metadata (default: source ``""``, label ``-1``).
            build: replaces the progress record of a resumable build (``info()["build"]``) with
                this batch, so a build that stops resumes exactly after its last batch.

        Raises:
            ValueError: codes of another length, features of another dimension, NaN features,
                counts that differ; nothing is written then.
        """

    @abstractmethod
    def remove(self, ids: Sequence[int] | np.ndarray) -> int:
        """Remove items by id, all or none; returns how many.

        Raises:
            KeyError: an unknown or removed id (nothing is removed then).
        """

    # ------------------------------------------------------------------ reading
    @abstractmethod
    def get_items(self, ids: Sequence[int] | np.ndarray, *, image: bool = False) -> list[ItemMeta]:
        """Metadata of live items, in the order asked (with the stored image when ``image``).

        Raises:
            KeyError: an unknown or removed id.
        """

    @abstractmethod
    def ids_with_image(self, ids: Sequence[int] | np.ndarray) -> set[int]:
        """Those of the live ``ids`` that keep a copy of their image (the images are not read).

        Raises:
            KeyError: an unknown or removed id.
        """

    @abstractmethod
    def item_vectors(self, item_id: int) -> tuple[np.ndarray, np.ndarray]:
        """An item's ``code uint8[nbytes]`` and stored ``features float32[d']`` (search by it
        with ``features_stored=True``).

        Raises:
            KeyError: unknown or removed id.
        """

    @abstractmethod
    def find_files(self, sha256s: Sequence[str]) -> dict[str, int]:
        """Live items added from a file with one of these hex SHA-256s: ``{sha256: id}``."""

    @abstractmethod
    def search(self, query_codes: np.ndarray, query_features: np.ndarray | None = None, k: int = 10, *,
               candidates: int | None = None, radius: int | None = None, rerank: bool = False,
               features_stored: bool = False, ties: bool | None = None) -> list[SearchResult]:
        """Top ``k`` items per query: Hamming only, or hierarchical (``rerank=True``).

        Args:
            query_codes: ``uint8[q, nbytes]`` packed codes of the collection's length.
            query_features: ``float[q, feature_dim]`` (needed for ``rerank``); with
                ``features_stored`` they are in the stored space (an item's own
                :meth:`item_vectors`).
            k: results per query (``>= 1``).
            candidates: the pool = top-N by Hamming distance (default ``k``, or ``max(k, 1000)``
                with ``rerank``); ``radius``: every item within that Hamming distance instead.
            rerank: re-rank the pool by Euclidean distance on the stored features.
            ties: widen a top-N pool to every item at its N-th distance (default: with ``rerank``).

        Returns:
            one :class:`hashret.search.SearchResult` per query whose ``indices`` are item ids,
            sorted by (Euclidean, Hamming, id) with ``rerank``, else (Hamming, id).

        Raises:
            ValueError: bad codes or features, ``k <= 0``, or an empty collection.
        """

    @abstractmethod
    def info(self) -> dict[str, Any]:
        """A summary; every engine gives at least ``engine``, ``location``, ``items``, ``bits``,
        ``feature_dim``, ``feature_storage``, ``backend``, ``model_sha256``, ``model`` (config)
        and ``build`` (the progress record of a resumable build, or ``None``)."""

    @abstractmethod
    def verify(self) -> None:
        """Check everything stored against what was committed.

        Raises:
            hashret.store.manifest.IndexCorruptError: the first problem found, with the fix.
        """

    def refresh(self) -> bool:
        """See what other writers committed since the open; returns whether anything changed."""
        return False

    @abstractmethod
    def close(self) -> None:
        """Release the collection (locks, connections)."""

    def __enter__(self) -> Collection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
