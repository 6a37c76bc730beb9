"""The one batches -> encode -> write path (hashret.pipeline), on a real index directory."""

from __future__ import annotations

import numpy as np
import pytest

from hashret.pipeline import Batch, write_batches
from hashret.store import IndexStore, ItemMeta


def test_encoded_and_image_batches_one_commit_each(digits_run, tmp_path):
    from hashret.run import load_run_dataset, open_run

    run = open_run(digits_run)
    images = load_run_dataset(run).test.images[:10]
    enc = run.encoder.encode(images)
    seen = []
    with IndexStore.create(tmp_path / "ix", bits=16, feature_dim=enc.features.shape[1],
                           feature_storage="float32") as store:
        batches = [Batch([ItemMeta(f"a{i}") for i in range(4)], codes=enc.codes[:4],
                         features=enc.features[:4], build={"done": 4}),
                   Batch([ItemMeta(f"b{i}") for i in range(6)], images=images[4:], build={"done": 10})]
        ids = write_batches(store, iter(batches), run.encoder,
                            on_batch=lambda b, new: seen.append(new.tolist()))
        assert ids.tolist() == list(range(10)) and seen == [[0, 1, 2, 3], [4, 5, 6, 7, 8, 9]]
        assert store.manifest.generation == 2 and store.info()["build"] == {"done": 10}
        code, feats = store.item_vectors(7)
        np.testing.assert_array_equal(code, enc.codes[7])  # the images were encoded as the database is
        np.testing.assert_allclose(feats, enc.features[7], rtol=1e-6)
        with pytest.raises(ValueError, match="needs images and an encoder"):
            write_batches(store, [Batch([ItemMeta("c")], images=images[:1])])
        assert len(store) == 10
