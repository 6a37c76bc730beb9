"""The service over a Milvus collection: the same app (search by upload and by id, items and their
images, adds with the write key, health, stats, the page) on the embedded Milvus Lite 2.5, and on
the session's real Milvus 2.3.5 server (marked slow), served by real uvicorn for the page."""

from __future__ import annotations

import io
import urllib.request

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from hashret.indexing import build_index, load_index_model
from hashret.run import open_run
from hashret.serve import AccessPolicy, create_app

pytest.importorskip("pymilvus", reason="the milvus extra is not installed: pip install 'hashret[milvus]'")

WRITE_KEY = "write-key-for-tests-0123456789"
LOOPBACK = "http://127.0.0.1"


@pytest.fixture(scope="module", params=["lite", pytest.param("server", marks=pytest.mark.slow)])
def milvus_digits(request, digits_run, digits_data, tmp_path_factory):
    """The digits training set built into a Milvus collection (with thumbnails); its location."""
    if request.param == "server":
        host = request.getfixturevalue("milvus_server").uri.removeprefix("http://")
        loc = f"milvus://{host}/serve_digits"
    else:
        pytest.importorskip("milvus_lite", reason="milvus-lite 2.5 is not installed: "
                                                  "pip install 'hashret[milvus]'")
        loc = f"{tmp_path_factory.mktemp('milvus') / 'serve.db'}:digits"
    build_index(open_run(digits_run), loc, digits_data.train, collection="digits", split="train",
                overwrite=True).close()
    return loc


@pytest.fixture(scope="module")
def client(milvus_digits):
    from hashret.store import open_collection

    coll = open_collection(milvus_digits, writable=True)
    app = create_app(coll, load_index_model(coll), access=AccessPolicy(write_key=WRITE_KEY))
    with TestClient(app, base_url=LOOPBACK) as c:
        yield c, app


@pytest.fixture(scope="module")
def float32_index(digits_run, digits_data, tmp_path_factory):
    """The same images in an index directory that keeps float32 features, as Milvus does."""
    out = tmp_path_factory.mktemp("serve-f32") / "index"
    build_index(open_run(digits_run), out, digits_data.train, collection="digits", split="train",
                feature_storage="float32").close()
    return out


def test_searches_items_and_images_as_over_a_directory(client, digits_data, png, make_app, float32_index):
    c, _ = client
    ref = TestClient(make_app(float32_index)[0], base_url=LOOPBACK)
    img = digits_data.train.images[7]
    for form in ({"k": "5", "rerank": "true"}, {"k": "8"}, {"k": "5", "rerank": "true", "radius": "2"}):
        got = c.post("/search", files={"image": ("q.png", png(img), "image/png")}, data=form)
        want = ref.post("/search", files={"image": ("q.png", png(img), "image/png")}, data=form)
        assert got.status_code == 200, got.text
        g, w = got.json()["results"], want.json()["results"]
        assert [(h["id"], h["hamming"], h["label"], h["image_url"]) for h in g] == [
            (h["id"], h["hamming"], h["label"], h["image_url"]) for h in w], form
        assert [h["euclidean"] or 0.0 for h in g] == pytest.approx([h["euclidean"] or 0.0 for h in w],
                                                                   rel=1e-5, abs=1e-6)
    first = c.post("/search", files={"image": ("q.png", png(img), "image/png")},
                   data={"k": "3", "rerank": "true"}).json()["results"][0]
    assert first["id"] == 7 and first["hamming"] == 0
    thumb = c.get(first["image_url"])
    assert thumb.headers["content-type"] == "image/png"
    np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(thumb.content))), img[..., 0])
    by_id = c.post("/search", data={"id": "7", "k": "4", "rerank": "true"}).json()
    assert by_id["query"]["id"] == 7 and by_id["results"][0]["id"] == 7
    assert c.get("/items/7").json()["label"] == int(digits_data.train.labels[7])
    assert c.get("/items/99999").status_code == 404 and c.get(f"/items/{2**63}").status_code == 404
    stats = c.get("/stats").json()
    assert (stats["engine"], stats["backend"], stats["bits"]) == ("milvus", "milvus", 16)
    assert stats["items"] >= 1438  # (the add test may have run first)
    assert stats["generation"] is None and stats["model"]["method"] == "dlbhc"


def test_adds_need_the_key_and_are_searchable(client, digits_data, png):
    c, app = client
    n = c.get("/health").json()["items"]
    img = np.ascontiguousarray(np.fliplr(digits_data.test.images[3]))
    files = [("images", ("new.png", png(img), "image/png"))]
    assert c.post("/items", files=files).status_code == 401
    r = c.post("/items", files=files, headers={"Authorization": f"Bearer {WRITE_KEY}"})
    assert r.status_code == 201, r.text
    new = r.json()["ids"][0]
    assert new >= 1438 and c.get("/health").json()["items"] == n + 1
    hit = c.post("/search", files={"image": ("q.png", png(img), "image/png")},
                 data={"k": "1", "rerank": "true"}).json()["results"][0]
    assert hit["id"] == new and hit["source"] == "upload:new.png"
    assert c.get(f"/items/{new}/image").status_code == 200


def test_the_page_is_served_by_uvicorn_over_milvus(client, serve_app):
    _, app = client
    base, _ = serve_app(app)
    with urllib.request.urlopen(f"{base}/") as page:
        assert page.status == 200 and b"<html" in page.read().lower()
    with urllib.request.urlopen(f"{base}/stats") as stats:
        assert b'"engine":"milvus"' in stats.read()
