"""The HTTP API through an in-process client: search, items, add, limits, bad input, schema."""

from __future__ import annotations

import io

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from hashret.index import list_indexes
from hashret.serve import AccessPolicy, ServeLimits
from hashret.store.directory import IndexStore
from hashret.store.metadata import ItemMeta

SECRET = "hashret-test-secret-0123456789"
WRITE_KEY = "write-key-for-tests-0123456789"
AUTH = {"Authorization": f"Bearer {WRITE_KEY}"}
LOOPBACK = "http://127.0.0.1"  # the Host the service answers by default


@pytest.fixture(scope="module")
def reader(digits_index):
    """A client of a read-only app over the shared digits index, with small limits."""
    store = IndexStore.open(digits_index)
    from hashret.indexing import load_index_model
    from hashret.serve import create_app

    app = create_app(store, load_index_model(store), max_k=500,
                     limits=ServeLimits(max_upload_bytes=64 << 10, max_pixels=1_000_000, rate=0))
    with TestClient(app, base_url=LOOPBACK) as client:
        yield client
    store.close()


def upload(data: bytes, name: str = "query.png") -> dict:
    return {"image": (name, data, "image/png")}


def assert_json_error(resp, status: int, *words: str) -> dict:
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"].startswith("application/json")
    body = resp.json()
    assert body["status"] == status and isinstance(body["detail"], str) and body["detail"]
    for w in words:
        assert w in body["detail"], body["detail"]
    return body


def test_search_by_upload_finds_the_image_itself_first(reader, digits_data, png):
    img = digits_data.train.images[7]
    r = reader.post("/search", files=upload(png(img)), data={"k": "5", "rerank": "true"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["k"] == 5 and body["rerank"] is True and len(body["results"]) == 5
    first = body["results"][0]
    assert first["id"] == 7 and first["rank"] == 1 and first["hamming"] == 0
    assert first["euclidean"] == pytest.approx(0, abs=1e-2)
    assert first["label"] == int(digits_data.train.labels[7]) and first["class_name"] == str(first["label"])
    assert first["image_url"].endswith("/items/7/image") and first["url"].endswith("/items/7")
    assert [h["rank"] for h in body["results"]] == [1, 2, 3, 4, 5]
    assert all(h["euclidean"] >= first["euclidean"] for h in body["results"])
    q = body["query"]
    assert q["id"] is None and q["bits"] == 16 and len(q["code"]) == 16 and set(q["code"]) <= {"0", "1"}
    # the image behind image_url is the index's copy of the same picture
    thumb = reader.get(first["image_url"])
    assert thumb.headers["content-type"] == "image/png"
    np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(thumb.content))), img[..., 0])


def test_an_upload_of_another_size_and_mode_says_what_was_changed(reader, digits_data, png):
    big = np.repeat(np.repeat(digits_data.train.images[7], 4, axis=0), 4, axis=1)  # 32x32 grey
    rgb = np.repeat(big, 3, axis=2)
    body = reader.post("/search", files=upload(png(rgb))).json()
    assert body["notes"] == ["converted colour to grey", "resized from 32x32 to 8x8 px (w x h)"]
    same = reader.post("/search", files=upload(png(digits_data.train.images[7]))).json()
    assert same["notes"] == []


def test_hamming_only_search_is_the_default(reader, digits_data, png):
    r = reader.post("/search", files=upload(png(digits_data.train.images[7])))
    body = r.json()
    assert r.status_code == 200 and body["rerank"] is False and len(body["results"]) == 10
    assert all(h["euclidean"] is None for h in body["results"])
    assert body["results"][0]["hamming"] == 0
    hams = [h["hamming"] for h in body["results"]]
    assert hams == sorted(hams)


def test_search_by_id_uses_the_stored_code(reader):
    r = reader.post("/search", data={"id": "42", "k": "3", "rerank": "true"})
    body = r.json()
    assert r.status_code == 200 and body["query"]["id"] == 42
    assert body["results"][0]["id"] == 42 and body["results"][0]["hamming"] == 0
    item = reader.get("/items/42").json()
    assert item["id"] == 42 and item["image_url"].endswith("/items/42/image")


def test_the_coarse_pool_can_be_chosen(reader, digits_data, png):
    q = upload(png(digits_data.train.images[7]))
    by_radius = reader.post("/search", files=q, data={"rerank": "true", "radius": "0", "k": "50"}).json()
    assert by_radius["results"][0]["id"] == 7 and {h["hamming"] for h in by_radius["results"]} == {0}
    few = reader.post("/search", files=q, data={"rerank": "true", "candidates": "3", "k": "5"}).json()
    strict = reader.post("/search", files=q, data={"candidates": "3", "k": "3"}).json()["results"]
    # a re-ranked pool of 3 is widened to every item tied at its 3rd Hamming distance
    assert 3 <= len(few["results"]) <= 5
    assert max(h["hamming"] for h in few["results"]) <= strict[-1]["hamming"]
    both = reader.post("/search", files=q, data={"radius": "1", "candidates": "9"})
    assert_json_error(both, 422, "at most one")
    assert_json_error(reader.post("/search", files=q, data={"radius": "17"}), 422, "radius")
    assert_json_error(reader.post("/search", files=q, data={"candidates": "0"}), 422, "candidates")


@pytest.mark.parametrize("k", ["0", "-3", "501", str(10**12), "ten"])
def test_k_out_of_range_is_422(reader, k):
    body = assert_json_error(reader.post("/search", data={"id": "1", "k": k}), 422, "k")
    assert body["errors"][0]["loc"] == ["k"]


def test_image_and_id_together_or_neither_is_422(reader, digits_data, png):
    assert_json_error(reader.post("/search", data={"k": "3"}), 422, "exactly one")
    assert_json_error(reader.post("/search", files=upload(png(digits_data.train.images[0])),
                                  data={"id": "1"}), 422, "exactly one")


def test_unknown_id_is_404(reader):
    for resp in (reader.get("/items/999999"), reader.get("/items/999999/image"),
                 reader.post("/search", data={"id": "999999"})):
        assert_json_error(resp, 404, "999999")


@pytest.mark.parametrize("item_id", [2**63 - 1, 2**63, 2**64, 10**30])
def test_ids_of_any_size_are_404_on_every_route(reader, item_id):
    for resp in (reader.get(f"/items/{item_id}"), reader.get(f"/items/{item_id}/image"),
                 reader.post("/search", data={"id": str(item_id)})):
        assert_json_error(resp, 404, str(item_id))
    assert reader.get("/health").status_code == 200


@pytest.mark.parametrize("path", [
    "/items/../etc/passwd", "/items/..%2F..%2Fetc%2Fpasswd", "/items/%2e%2e%2fetc%2fpasswd/image",
    "/items/%2e%2e%2f..%2fsecret.txt/image", "/items/..%2fsecret.txt/image", "/items//etc/passwd/image",
    "/items/%2Fetc%2Fpasswd/image", "/items/etc%2Fpasswd/image", "/items/-1/image", "/items/1.5/image",
    "/items/1%00/image", "/static/..%2F..%2F..%2F..%2Fetc%2Fpasswd", "/static/../../secret.txt",
])
def test_a_path_in_an_id_never_reads_a_file(reader, digits_index, path):
    (digits_index.parent / "secret.txt").write_text(SECRET)  # beside the index directory
    r = reader.get(path)
    assert r.status_code in (404, 422), (path, r.status_code)
    assert r.json()["status"] == r.status_code
    assert SECRET not in r.text and "root:" not in r.text


@pytest.mark.parametrize("value", ["../etc/passwd", "/etc/passwd", "%2e%2e%2f", "1/../2"])
def test_a_path_as_search_id_is_422(reader, value):
    assert_json_error(reader.post("/search", data={"id": value}), 422, "id")


def test_an_item_image_is_only_the_stored_copy(index_copy, make_app, tmp_path, png):
    """An item whose source names a real file but that has no stored image: 404, not the file."""
    secret = tmp_path / "secret.png"
    secret.write_bytes(png(np.full((8, 8, 1), 255, np.uint8)))
    with IndexStore.open(index_copy, writable=True) as store:
        code, feats = store.item_vectors(0)
        (new_id,) = store.add(code[None], np.zeros((1, store.manifest.feature_dim), np.float32),
                              [ItemMeta(str(secret))])
    app, _ = make_app(index_copy)
    client = TestClient(app, base_url=LOOPBACK)
    assert client.get(f"/items/{new_id}").json()["image_url"] is None
    assert_json_error(client.get(f"/items/{new_id}/image"), 404, "keeps no image")


def test_bad_uploads_get_json_errors_and_the_server_keeps_serving(reader, digits_data, png):
    good = png(digits_data.train.images[3])
    big = png(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8))
    cases = {
        "empty.png": (b"", "empty"),
        "notes.txt": (b"just some text, not a picture", "not a readable image"),
        "truncated.png": (big[: len(big) // 2], "not a readable image"),
        "header-only.png": (good[:40], "not a readable image"),
    }
    for name, (data, words) in cases.items():
        body = assert_json_error(reader.post("/search", files=upload(data, name)), 400, words)
        assert name in body["detail"]
    assert reader.post("/search", files=upload(good)).status_code == 200
    assert reader.get("/health").json()["status"] == "ok"


def test_oversize_uploads_are_413(reader, digits_data, png):
    too_big = b"\x89PNG\r\n\x1a\n" + bytes(70 << 10)  # over the reader's 64 KiB body limit
    assert_json_error(reader.post("/search", files=upload(too_big)), 413, "limit")

    head = (b'--b\r\nContent-Disposition: form-data; name="image"; filename="big.png"\r\n'
            b"Content-Type: image/png\r\n\r\n")

    def chunks():  # no Content-Length: the limit applies while the body streams in
        yield head
        for _ in range(20):
            yield bytes(8 << 10)
        yield b"\r\n--b--\r\n"

    r = reader.post("/search", content=chunks(), headers={"content-type": "multipart/form-data; boundary=b"})
    assert_json_error(r, 413, "limit")
    # a small file that declares a huge image is refused before it is decoded
    buf = io.BytesIO()
    Image.new("L", (2000, 1000)).save(buf, format="PNG")
    assert len(buf.getvalue()) < 64 << 10
    assert_json_error(reader.post("/search", files=upload(buf.getvalue())), 413, "pixels")
    assert reader.post("/search", files=upload(png(digits_data.train.images[3]))).status_code == 200


def test_add_persists_and_is_searchable(index_copy, make_app, digits_data, png):
    app, store = make_app(index_copy, writable=True, access=AccessPolicy(write_key=WRITE_KEY))
    client = TestClient(app, base_url=LOOPBACK, headers=AUTH)
    n = len(store)
    imgs = [np.ascontiguousarray(np.fliplr(digits_data.test.images[i])) for i in (0, 1)]
    files = [("images", (f"new{i}.png", png(img), "image/png")) for i, img in enumerate(imgs)]
    r = client.post("/items", files=files, data={"label": "7"})
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["ids"] == [n, n + 1] and body["count"] == n + 2
    assert [it["source"] for it in body["items"]] == ["upload:new0.png", "upload:new1.png"]
    assert all(it["class_name"] == "7" and it["label"] == 7 for it in body["items"])
    assert client.get("/stats").json()["items"] == n + 2
    found = client.post("/search", files=upload(png(imgs[1])), data={"rerank": "true", "k": "1"}).json()
    assert found["results"][0]["id"] == n + 1
    thumb = client.get(f"/items/{n + 1}/image").content
    np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(thumb))), imgs[1][..., 0])
    with IndexStore.open(index_copy) as again:  # persisted: another process sees the commit
        assert len(again) == n + 2
        assert again.get_items([n, n + 1])[1].source == "upload:new1.png"


def test_a_failed_add_leaves_the_index_as_it_was(index_copy, make_app, digits_data, png):
    app, store = make_app(index_copy, writable=True, access=AccessPolicy(write_key=WRITE_KEY))
    client = TestClient(app, base_url=LOOPBACK, headers=AUTH)
    n, gen = len(store), store.manifest.generation
    good = png(digits_data.test.images[0])
    for bad in (b"", b"GIF89a-not-really", good[:30]):
        files = [("images", ("good.png", good, "image/png")), ("images", ("bad.png", bad, "image/png"))]
        assert_json_error(client.post("/items", files=files), 400, "bad.png")
    assert_json_error(client.post("/items", files=[("images", ("x.png", good, "image/png"))],
                                  data={"label": "x" * 201}), 422, "label")
    assert len(store) == n and store.manifest.generation == gen
    with IndexStore.open(index_copy) as again:
        assert len(again) == n and again.manifest.generation == gen
        with pytest.raises(KeyError):
            again.get_items([n])
    assert client.post("/items", files=[("images", ("ok.png", good, "image/png"))]).status_code == 201


def test_add_to_a_read_only_server_is_403(reader, digits_data, png):
    files = [("images", ("a.png", png(digits_data.test.images[0]), "image/png"))]
    assert_json_error(reader.post("/items", files=files), 403, "read-only")
    assert_json_error(reader.post("/items", files=files, headers=AUTH), 403, "write-key")


def test_health_and_stats(reader):
    assert reader.get("/health").json() == {"status": "ok", "items": 1438}
    s = reader.get("/stats").json()
    assert s["items"] == 1438 and s["bits"] == 16 and s["backend"] in list_indexes()
    assert s["model"]["method"] == "dlbhc" and len(s["model"]["sha256"]) == 64
    assert s["model"]["image_shape"] == [8, 8, 1] and s["writable"] is False and s["max_k"] == 500


def test_the_page_and_its_files_are_served(reader):
    page = reader.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "script-src 'self'" in page.headers["content-security-policy"]
    for name in ("static/app.js", "static/style.css"):
        assert reader.get(f"/{name}").status_code == 200 and name in page.text


def test_openapi_schema_describes_every_route(reader):
    spec = reader.get("/openapi.json").json()
    routes = {(m.upper(), p) for p, ops in spec["paths"].items() for m in ops}
    assert routes == {("POST", "/search"), ("GET", "/items/{item_id}"), ("GET", "/items/{item_id}/image"),
                      ("POST", "/items"), ("GET", "/health"), ("GET", "/stats")}
    schemas = spec["components"]["schemas"]
    for name in ("SearchResponse", "Hit", "QueryCode", "Item", "AddResponse", "Health", "Stats",
                 "ErrorResponse"):
        assert schemas[name]["properties"], name
    for path, ops in spec["paths"].items():
        for method, op in ops.items():
            ok = op["responses"].get("200") or op["responses"].get("201")
            assert ok and ok["content"], (method, path)
            if path != "/health" and path != "/stats":
                assert op["responses"]["422"]["content"]["application/json"]["schema"] == {
                    "$ref": "#/components/schemas/ErrorResponse"}, (method, path)
    search = spec["paths"]["/search"]["post"]
    form = search["requestBody"]["content"]["multipart/form-data"]["schema"]
    props = schemas[form["$ref"].rsplit("/", 1)[-1]]["properties"] if "$ref" in form else form["properties"]
    assert {"image", "id", "k", "rerank"} <= set(props)
    assert props["k"]["maximum"] == 500 and props["k"]["minimum"] == 1
