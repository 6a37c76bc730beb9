"""The codes-only Milvus backend (``MilvusIndex``) against the numpy reference, on real engines:
the embedded Milvus Lite 2.5 and a Milvus 2.3.5 standalone server. (Milvus as a whole collection,
with features and metadata: tests/store/test_milvus_collection.py.)

No mocks: the tests that take ``uri`` run once on a milvus-lite database from a temporary
``.db`` file and once on the session's Milvus 2.3.5 server (``milvus_server``, marked slow).
Milvus's limit of 16,384 results per request is lowered (``MAX_LIMIT``) in some tests so
that the paths which work around it (id windows, distance bands) run on small data.
"""

from __future__ import annotations

import socket
import sys

import numpy as np
import pytest

pytest.importorskip("pymilvus", reason="the milvus extra is not installed: pip install 'hashret[milvus]'")
pytest.importorskip("milvus_lite", reason="milvus-lite 2.5 (the embedded engine) is not installed: "
                                          "pip install 'hashret[milvus]'")

from hashret.index import FlatIndex, create_index  # noqa: E402
from hashret.index import milvus as milvus_mod  # noqa: E402
from hashret.index.milvus import MilvusIndex, MilvusUnavailableError  # noqa: E402


@pytest.fixture(scope="module")
def uri(milvus_uri) -> str:
    return milvus_uri


def _is_server(uri: str) -> bool:
    return uri.startswith("http://")


def _numpy_index(bits: int, codes: np.ndarray) -> FlatIndex:
    index = FlatIndex(bits)
    index.add(codes)
    return index


def _same(a, b) -> None:
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x, y)


def _same_range(got, want) -> None:
    assert len(got) == len(want)
    for (d, i), (rd, ri) in zip(got, want, strict=True):
        assert d.dtype == np.int32 and i.dtype == np.int64
        np.testing.assert_array_equal(i, ri)
        np.testing.assert_array_equal(d, rd)


@pytest.mark.parametrize("bits", [8, 64])
def test_exact_beyond_milvus_result_limit(bits, uri, tied_codes, monkeypatch):
    """Top-k and range results equal the reference when answers exceed Milvus's per-request
    limit (lowered to 40 here): boundary ties, k > limit, range answers asked again with the full
    limit (the first ask: 10) and split by id windows."""
    monkeypatch.setattr(milvus_mod, "MAX_LIMIT", 40)
    monkeypatch.setattr(milvus_mod, "_BAND_LIMIT", 10)
    db, q = tied_codes(bits, 500, bits, n_queries=8)
    ref = FlatIndex(bits)
    ref.add(db)
    index = MilvusIndex(bits, uri=uri)
    index.add(db[:250])
    index.add(db[250:])
    assert len(index) == 500 and index.next_id == 500
    for k in (1, 7, 39, 40, 41, 150, 499, 5000):
        _same(index.search(q, k), ref.search(q, k))
    for radius in (0, 1, bits // 4, np.arange(len(q)) % 3, 10**9):
        _same_range(index.range_search(q, radius), ref.range_search(q, radius))


def test_a_view_searches_and_refuses_writes(uri, random_codes, rng):
    """``MilvusIndex.over`` searches another's collection and never writes into it."""
    db = random_codes(rng, 50, 24)
    own = MilvusIndex(24, uri=uri)
    own.add(db)
    view = MilvusIndex.over(own.client, own.uri, own.collection, 24, lambda: 50, lambda: 50)
    _same(view.search(db[:5], 9), _numpy_index(24, db).search(db[:5], 9))
    with pytest.raises(TypeError, match="add items through the collection that keeps it"):
        view.add(db[:1])
    with pytest.raises(TypeError, match="cannot be reset"):
        view.reset()


def test_bad_uri(tmp_path):
    with pytest.raises(ValueError, match=r"ends in \.db"):
        MilvusIndex(32, uri=str(tmp_path / "index.sqlite"))


def test_unreachable_server_is_a_clear_error():
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(MilvusUnavailableError, match=f"cannot connect to a Milvus server at http://127.0.0.1:{port}"):
        MilvusIndex(64, uri=f"http://127.0.0.1:{port}", timeout=1)


def test_missing_pymilvus_names_the_extra(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "pymilvus", None)  # `import pymilvus` now raises ImportError
    with pytest.raises(ImportError, match=r"pip install 'hashret\[milvus\]'"):
        create_index("milvus", 64, uri=str(tmp_path / "none.db"))


@pytest.mark.parametrize("text, uri, collection", [
    ("milvus://127.0.0.1:19530/hashret", "http://127.0.0.1:19530", "hashret"),
    ("milvus://milvus.example:443/images_v2/", "http://milvus.example:443", "images_v2"),
    ("milvus://localhost", "http://localhost:19530", None),
    ("milvus+https://db.example:19530/c", "https://db.example:19530", "c"),
    ("milvus://[::1]:19531/c", "http://[::1]:19531", "c"),
    ("http://host:19530", "http://host:19530", None),
    ("index.db", "index.db", None),
])
def test_parse_milvus_uri(text, uri, collection):
    assert milvus_mod.parse_milvus_uri(text) == milvus_mod.MilvusLocation(uri, collection)


@pytest.mark.parametrize("text, message", [
    ("milvus://user:secret@host:19530/c", "put the credentials in --token user:password"),
    ("milvus://host:port/c", "bad port"),
    ("milvus://host:19530/bad-name", "'bad-name' is not a valid collection name"),
    ("milvus://host:19530/a/b", "'a/b' is not a valid collection name"),
    ("milvus://host:19530/hashret_collections", "not a valid collection name"),
    ("milvus:///c", "is not a Milvus location: use milvus://HOST:PORT/COLLECTION"),
    ("milvus://host:19530/c?x=1", "is not a Milvus location"),
])
def test_parse_milvus_uri_errors(text, message):
    with pytest.raises(ValueError, match=message.replace("?", r"\?")):
        milvus_mod.parse_milvus_uri(text)
