"""Encode, evaluate and search a trained run (the library API under the CLI)."""

import json

import numpy as np
import pytest
from PIL import Image

from hashret.codes import hamming_distances, unpack
from hashret.data import load_dataset
from hashret.eval import get_protocol
from hashret.run import (
    encode_run,
    encodings_state,
    evaluate_run,
    load_run_encodings,
    open_run,
    read_query_image,
    search_images,
)


@pytest.fixture(scope="module")
def encoded(digits_run):
    run = open_run(digits_run)
    return run, encode_run(run)


def test_encodings_follow_the_protocol_and_convention(encoded):
    run, enc = encoded
    data = load_dataset("digits")
    db, q = enc["database"], enc["queries"]
    assert len(db) == len(data.train) and len(q) == len(data.test)  # whole training set = database
    assert db.codes.dtype == np.uint8 and db.codes.shape == (len(db), 2)
    assert db.features.dtype == np.float32 and db.features.shape[1] == run.model.feature_dim
    np.testing.assert_array_equal(db.labels, data.train.labels)
    # the code is latent > 0.5, packed LSB first: recompute from the model for a few images
    import torch

    from hashret.device import autocast

    x = torch.from_numpy(data.train.images[:5].transpose(0, 3, 1, 2)).float() / 255
    with torch.no_grad(), autocast(run.device, run.precision):
        latent = run.model(x).latent.float().numpy()
    np.testing.assert_array_equal(unpack(db.codes[:5], 16), (latent > 0.5).astype(np.uint8))


def test_encodings_round_trip(encoded):
    run, enc = encoded
    again = load_run_encodings(run)
    for name in enc:
        for field in ("codes", "features", "labels", "ids"):
            np.testing.assert_array_equal(getattr(enc[name], field), getattr(again[name], field))


def test_evaluate_writes_report_and_plot(encoded):
    run, enc = encoded
    res = evaluate_run(run, k=100)
    assert {"protocol", "bits", "map@100", "map", "precision@k", "precision@radius2",
            "train_seconds"} <= set(res)
    assert 0 < res["map@100"] <= 1 and res["bits"] == 16
    assert json.loads((run.run_dir / "report.json").read_text())["map@100"] == res["map@100"]
    assert (run.run_dir / "precision_at_k.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert get_protocol("digits").queries == "test"


def test_search_by_image_file_is_exact_hamming_order(encoded, tmp_path):
    run, enc = encoded
    data = load_dataset("digits")
    png = tmp_path / "q.png"
    Image.fromarray(data.test.images[3].squeeze()).save(png)
    hits = search_images(run, read_query_image(run, png), k=20, database=enc["database"])[0]
    d = hamming_distances(enc["queries"].codes[3:4], enc["database"].codes)[0]
    order = np.argsort(d, kind="stable")[:20]  # ties by database order
    # PNG round trip is lossless for uint8, so the query code equals the encoded test image's
    assert [h["id"] for h in hits] == order.tolist()  # the database row
    assert hits[0]["source"] == str(enc["database"].ids[order[0]]) and hits[0]["euclidean"] is None
    assert set(hits[0]) == {"rank", "id", "hamming", "euclidean", "label", "class_name", "source"}
    assert [h["hamming"] for h in hits] == d[order].tolist()


def test_stale_encodings_are_detected(digits_run, tmp_path):
    import shutil

    from hashret.training import TrainConfig, train

    copy = tmp_path / "copy"
    shutil.copytree(digits_run, copy)
    run = open_run(copy)
    encode_run(run)
    train(TrainConfig(dataset="digits", bits=16, epochs=1, seed=9), copy, overwrite=True,
          progress=False)
    with pytest.raises(ValueError, match="another model"):
        load_run_encodings(open_run(copy))
    assert encodings_state(open_run(copy)) == "stale"
    # `hashret evaluate` after training again encodes again (it used to stop at the stale encodings)
    from hashret.cli import main

    assert main(["evaluate", str(copy), "--quiet"]) == 0
    assert encodings_state(open_run(copy)) == "current"
