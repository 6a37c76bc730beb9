"""IndexStore.ids_with_image: which live items keep a copy of their image (what the server's
``image_url`` is built from), without reading the images."""

from __future__ import annotations

import numpy as np
import pytest

from hashret.codes import pack
from hashret.store.directory import IndexStore
from hashret.store.metadata import ItemMeta


def test_ids_with_image(tmp_path):
    rng = np.random.default_rng(0)
    n = 1200  # more than one 500-id chunk of the metadata query
    codes = pack(rng.random((n, 16)) > 0.5)
    feats = rng.standard_normal((n, 4)).astype(np.float32)
    items = [ItemMeta(f"s{i}", image=b"\x89PNG" if i % 3 == 0 else None) for i in range(n)]
    with IndexStore.create(tmp_path / "ix", bits=16, feature_dim=4, backend="numpy") as store:
        store.add(codes, feats, items)
        store.remove([3])
        asked = list(range(0, n, 2))
        assert store.ids_with_image(asked) == {i for i in asked if i % 3 == 0}
        assert store.ids_with_image([]) == set()
        with pytest.raises(KeyError):
            store.ids_with_image([3])  # removed
        with pytest.raises(KeyError):
            store.ids_with_image([n])  # never added
