"""The one path from images to a collection: batches -> encode -> write.

Every way items enter a collection (``hashret index build`` from a dataset, ``index add`` of
files, uploads to the service, ``index load-shards``) is a generator of :class:`Batch` es given
to :func:`write_batches`: a batch of decoded images is encoded by the collection's
:class:`hashret.encoder.Encoder` (one forward pass per batch, no augmentation), a batch already
encoded (a run's saved encodings, shards) is written as it is, and each batch is one commit,
carrying the build record that lets an interrupted build resume after it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from hashret.encoder import Encoder
from hashret.store import Collection, ItemMeta


@dataclass
class Batch:
    """One batch on its way into a collection.

    Attributes:
        items: one :class:`hashret.store.ItemMeta` per item.
        images: ``uint8[n, h, w, c]`` decoded images at the encoder's image shape, to encode; or
        codes, features: ``uint8[n, nbytes]`` / ``float[n, d]``, already encoded.
        build: the collection's build record once this batch is in (``None``: unchanged).
    """

    items: list[ItemMeta]
    images: np.ndarray | None = None
    codes: np.ndarray | None = None
    features: np.ndarray | None = None
    build: dict[str, Any] | None = field(default=None)

    def __len__(self) -> int:
        return len(self.items)


def write_batches(store: Collection, batches: Iterable[Batch], encoder: Encoder | None = None, *,
                  on_batch: Callable[[Batch, np.ndarray], None] | None = None) -> np.ndarray:
    """Encode (where needed) and add every batch, one commit each; returns the new ids ``int64[m]``.

    Args:
        store: a collection open for writing.
        batches: the batches, in order (a generator is read one batch at a time).
        encoder: encodes the batches that hold images (the collection's own model).
        on_batch: called with each batch and its new ids after its commit (progress).

    Raises:
        ValueError: a batch of images without an encoder, or what ``store.add`` refuses; the
            batches before it stay committed.
    """
    ids: list[np.ndarray] = []
    for batch in batches:
        if batch.codes is None:
            if encoder is None or batch.images is None:
                raise ValueError("a batch needs images and an encoder, or its codes and features")
            enc = encoder.encode(batch.images)
            codes, features = enc.codes, enc.features
        else:
            codes, features = batch.codes, batch.features
        new = store.add(codes, features, batch.items, build=batch.build)
        ids.append(new)
        if on_batch is not None:
            on_batch(batch, new)
    return np.concatenate(ids) if ids else np.zeros(0, np.int64)
