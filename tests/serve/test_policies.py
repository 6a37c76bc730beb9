"""The service's policies as plain objects: keys and hosts, token buckets, decode budgets, how
sources are shown, the refusal log; and what a client sees of them through the app."""

from __future__ import annotations

import errno
import logging
import resource
import signal

import numpy as np
import pytest
from fastapi.testclient import TestClient

from hashret.serve import AccessPolicy, SourceView, load_key
from hashret.serve.decode import decode_bytes
from hashret.serve.logs import RefusalLog
from hashret.serve.ratelimit import TokenBuckets
from hashret.serve.retriever import _write_error
from hashret.serve.security import split_host, with_hosts
from hashret.store.directory import IndexStore
from hashret.store.metadata import ItemMeta

KEY = "a-write-key-0123456789abcdef"


def test_keys_are_checked_by_digest_and_never_kept():
    p = AccessPolicy(write_key=KEY, read_key="a-read-key-0123456789")
    assert p.key_matches(KEY, write=True) and p.key_matches(KEY, write=False)  # the write key reads too
    assert p.key_matches("a-read-key-0123456789", write=False)
    assert not p.key_matches("a-read-key-0123456789", write=True)
    assert not p.key_matches(KEY[:-1], write=True) and not p.key_matches("", write=True)
    assert KEY not in repr(p) and p.write_key is None and p.writable and p.read_protected
    assert not AccessPolicy().writable and not AccessPolicy().key_matches(KEY, write=True)


def test_key_files_and_environment(tmp_path, monkeypatch):
    f = tmp_path / "k"
    f.write_text(f"  {KEY}  \nsecond line ignored\n")
    assert load_key(f, "HASHRET_TEST_KEY") == KEY
    monkeypatch.setenv("HASHRET_TEST_KEY", KEY)
    assert load_key(None, "HASHRET_TEST_KEY") == KEY
    monkeypatch.setenv("HASHRET_TEST_KEY", "")
    assert load_key(None, "HASHRET_TEST_KEY") is None
    f.write_text("")
    with pytest.raises(ValueError, match="shorter than 16"):
        load_key(f, "HASHRET_TEST_KEY")


@pytest.mark.parametrize(("header", "name"), [
    ("127.0.0.1:8000", "127.0.0.1"), ("LocalHost", "localhost"), ("[::1]:80", "::1"), ("[::1]", "::1"),
    ("example.com", "example.com"), ("evil.example:1", "evil.example")])
def test_split_host(header, name):
    assert split_host(header) == name


def test_allowed_hosts():
    p = AccessPolicy(allowed_hosts=with_hosts(["search.example", ".corp.example"], "0.0.0.0"))
    for ok in ("127.0.0.1:1", "localhost", "[::1]:9", "search.example:443", "a.corp.example", "corp.example"):
        assert p.host_allowed(ok), ok
    for bad in ("0.0.0.0", "evil.example", "search.example.evil", "xcorp.example", "127.0.0.1.nip.io", ""):
        assert not p.host_allowed(bad), bad
    assert "10.1.2.3" in with_hosts([], "10.1.2.3")
    assert AccessPolicy(allowed_hosts=("*",)).host_allowed("anything:1")


def test_token_buckets_by_hand():
    now = [100.0]
    b = TokenBuckets(rate=2.0, burst=3, clock=lambda: now[0])
    assert [b.take("a") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert b.take("a") == pytest.approx(0.5)  # empty: one token in 1/2 s
    assert b.take("b") == 0.0  # clients are independent
    now[0] += 0.25  # half a token
    assert b.take("a") == pytest.approx(0.25)
    now[0] += 0.25
    assert b.take("a") == 0.0
    now[0] += 100  # refills to the burst, no further
    assert [b.take("a") for _ in range(4)][-1] == pytest.approx(0.5)


def test_token_buckets_stay_bounded():
    now = [0.0]
    b = TokenBuckets(rate=1.0, burst=1, max_clients=100, clock=lambda: now[0])
    for i in range(1000):
        b.take(f"10.0.{i // 256}.{i % 256}")
        now[0] += 0.01
    assert len(b._buckets) <= 100


@pytest.mark.parametrize(("mode", "target", "per_pixel"), [
    ("L", "L", 1), ("P", "RGB", 5), ("RGB", "RGB", 4), ("RGBA", "RGB", 8), ("I;16", "L", 3), ("1", "L", 2)])
def test_decode_memory_by_hand(mode, target, per_pixel):
    assert decode_bytes(mode, (1000, 30), target) == 30_000 * per_pixel


@pytest.mark.parametrize(("source", "shown"), [
    ("/srv/photos/cats/1.jpg", "cats/1.jpg"),
    ("/home/me/secret/dog.png", "dog.png"),
    ("/srv/photos/../etc/x.png", "x.png"),
    ("/srv/photosX/y.png", "y.png"),
    ("/srv/photos/set.zip::train/1.png", "set.zip::train/1.png"),
    ("/data/set.zip::train/1.png", "set.zip::train/1.png"),
    ("C:\\Users\\me\\z.png", "z.png"),
    ("mnist/train/12", "mnist/train/12"),
    ("upload:cat.png", "upload:cat.png"),
    ("", ""),
])
def test_sources_never_show_server_paths(source, shown):
    assert SourceView("/srv/photos")(source) == shown
    assert SourceView("/srv/photos", show_paths=True)(source) == source


def test_refusal_log_writes_one_line_per_class_per_interval(caplog):
    log = RefusalLog(interval=3600)
    with caplog.at_level(logging.WARNING, logger="hashret.serve"):
        for _ in range(1000):
            log.note("rate-limited", "GET /stats from 10.0.0.1")
        log.note("bad-host", "Host evil.example")
    assert len(caplog.records) == 2 and log.counts() == {"rate-limited": 1000, "bad-host": 1}


def test_items_show_file_names_unless_told(index_copy, make_app, tmp_path):
    with IndexStore.open(index_copy, writable=True) as store:
        code, feats = store.item_vectors(0)
        (new_id,) = store.add(code[None], np.zeros((1, store.manifest.feature_dim), np.float32),
                              [ItemMeta("/srv/photos/cats/1.jpg")])
    for sources, shown in ((None, "1.jpg"), (SourceView("/srv/photos"), "cats/1.jpg"),
                           (SourceView(show_paths=True), "/srv/photos/cats/1.jpg")):
        app, _ = make_app(index_copy, sources=sources)
        client = TestClient(app, base_url="http://127.0.0.1")
        assert client.get(f"/items/{new_id}").json()["source"] == shown
        hits = client.post("/search", data={"id": str(new_id), "k": "1", "rerank": "true"}).json()["results"]
        assert {h["source"] for h in hits if h["id"] == new_id} == {shown}


@pytest.mark.parametrize(("err", "status"), [(errno.ENOSPC, 507), (errno.EDQUOT, 507), (errno.EIO, 503)])
def test_os_errors_while_writing_map_to_507_or_503(err, status):
    e = _write_error(OSError(err, "boom"))
    assert e.status == status and "nothing was added" in e.detail


def test_a_full_disk_answers_507_and_keeps_the_committed_state(index_copy, make_app, digits_data, png):
    """A real write failure: the file-size limit (RLIMIT_FSIZE) makes every write past 64 bytes fail."""
    app, store = make_app(index_copy, writable=True, access=AccessPolicy(write_key=KEY))
    client = TestClient(app, base_url="http://127.0.0.1", headers={"Authorization": f"Bearer {KEY}"})
    n, gen = len(store), store.manifest.generation
    files = [("images", ("new.png", png(digits_data.test.images[0]), "image/png"))]
    old_handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    try:
        resource.setrlimit(resource.RLIMIT_FSIZE, (64, hard))
        r = client.post("/items", files=files)
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, old_handler)
    assert r.status_code == 507 and r.json()["status"] == 507 and "nothing was added" in r.json()["detail"]
    assert len(store) == n and store.manifest.generation == gen
    assert client.get("/health").json()["items"] == n
    with IndexStore.open(index_copy) as again:
        assert len(again) == n and again.manifest.generation == gen
    r = client.post("/items", files=files)  # space again: the add goes through
    assert r.status_code == 201 and r.json()["count"] == n + 1
