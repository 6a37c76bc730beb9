"""Small PNG uploads are decoded, and quick searches run, on the event loop (no thread hop); the
answers are those of the worker-thread path, and a busy store or a slow search still goes to a
worker thread, so the loop never waits for the store."""

from __future__ import annotations

import io
import threading
import time

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from hashret.serve import app as app_module
from hashret.serve import retriever as retriever_module
from hashret.serve.app import INLINE_DECODE_BYTES, INLINE_DECODE_PIXELS, _decode_here
from hashret.serve.limits import ServeLimits

LOOPBACK = "http://127.0.0.1"


@pytest.mark.parametrize(("header", "size", "here"), [
    (("PNG", 28, 28), 900, True),
    (("PNG", 128, 128), INLINE_DECODE_BYTES, True),
    (("PNG", 128, 129), 900, False),  # over INLINE_DECODE_PIXELS
    (("PNG", 28, 28), INLINE_DECODE_BYTES + 1, False),
    (("JPEG", 28, 28), 900, False),  # only PNG: a JPEG's decode can cost more than its pixels say
    (None, 900, False),  # the header did not parse: decoding tells what is wrong, on a thread
])
def test_which_uploads_are_decoded_on_the_event_loop(header, size, here):
    assert 128 * 128 == INLINE_DECODE_PIXELS
    assert _decode_here(header, size) is here


def _ready(retriever) -> None:
    """Load the kernels as `hashret serve` does (no first search pays for it), then refresh the
    store (the warm-up may outlast refresh_seconds, and a search due to refresh goes to a thread)."""
    retriever.warm_up()
    retriever.count()


def _answers(client, requests: list[dict]) -> list[dict]:
    out = []
    for req in requests:
        r = client.post("/search", **req)
        assert r.status_code == 200, r.text
        body = r.json()
        body.pop("took_ms")
        out.append(body)
    return out


def test_the_event_loop_and_the_worker_threads_answer_alike(digits_index, digits_data, make_app, png,
                                                             monkeypatch):
    imgs = digits_data.test.images[:6]
    side = imgs[0].shape[0]
    big = np.kron(imgs[0][..., 0], np.ones((130 // side + 1,) * 2, np.uint8))  # over 128x128: on a thread
    assert big.shape[0] * big.shape[1] > INLINE_DECODE_PIXELS
    requests = [{"files": {"image": ("q.png", png(im), "image/png")},
                 "data": {"k": "7", "rerank": r}} for im in imgs for r in ("true", "false")]
    requests += [{"files": {"image": ("big.png", png(big[..., None]), "image/png")}, "data": {"k": "5"}}]
    requests += [{"data": {"id": str(i), "k": "9", "rerank": "true"}} for i in (0, 5, 700)]
    requests += [{"data": {"id": "3", "k": "5", "rerank": "true", "radius": "3"}}]
    monkeypatch.setattr(retriever_module, "QUICK_SEARCH_SECONDS", 0.5)  # whatever this machine's speed
    app, _ = make_app(digits_index, limits=ServeLimits(rate=0))
    _ready(app.state.retriever)
    with TestClient(app, base_url=LOOPBACK) as client:
        here = _answers(client, requests)
        where = client.get("/stats").json()["searches"]
    assert where["event_loop"] >= len(requests) - 2 and where["worker_thread"] >= 1  # the radius one
    monkeypatch.setattr(app_module, "INLINE_DECODE_BYTES", 0)  # every decode on a thread
    monkeypatch.setattr(retriever_module, "QUICK_SEARCH_SECONDS", -1.0)  # every search on a thread
    app, _ = make_app(digits_index, limits=ServeLimits(rate=0))
    with TestClient(app, base_url=LOOPBACK) as client:
        threads = _answers(client, requests)
        where = client.get("/stats").json()["searches"]
    assert where == {"event_loop": 0, "worker_thread": len(requests)}
    assert here == threads
    assert here[0]["results"][0]["rank"] == 1 and len(here[0]["results"]) == 7


def test_now_searches_only_when_the_store_is_free_and_searches_are_quick(digits_index, make_app,
                                                                         monkeypatch):
    monkeypatch.setattr(retriever_module, "QUICK_SEARCH_SECONDS", 0.5)  # whatever this machine's speed
    app, store = make_app(digits_index, limits=ServeLimits(rate=0))
    retriever = app.state.retriever
    _ready(retriever)
    assert retriever.search_id(4, k=5, rerank=True, now=True).hits[0]["id"] == 4
    assert retriever.search_id(4, k=5, rerank=True, radius=2, now=True) is None  # a ball: any size
    assert retriever.search_id(4, k=5, rerank=True, candidates=1001, now=True) is None
    assert retriever.search_id(4, k=1001, rerank=False, now=True) is None
    held = threading.Event()
    release = threading.Event()

    def hold() -> None:
        with retriever._store_lock:
            held.set()
            release.wait(10)

    t = threading.Thread(target=hold)
    t.start()
    held.wait(10)
    try:
        t0 = time.perf_counter()
        assert retriever.search_id(4, k=5, rerank=True, now=True) is None  # busy store: no waiting
        assert time.perf_counter() - t0 < 0.5
    finally:
        release.set()
        t.join()
    retriever._last_refresh -= retriever.refresh_seconds  # a refresh is due: it may load segments
    assert retriever.search_id(4, k=5, rerank=True, now=True) is None
    assert retriever.search_id(4, k=5, rerank=True).hits[0]["id"] == 4  # the thread path refreshes
    assert retriever.search_id(4, k=5, rerank=True, now=True) is not None
    monkeypatch.setattr(retriever_module, "QUICK_SEARCH_SECONDS", 0.0)  # searches are "slow" now
    assert retriever.search_id(4, k=5, rerank=True, now=True) is None


def test_a_busy_store_keeps_the_event_loop_free(digits_index, make_app):
    app, _ = make_app(digits_index, limits=ServeLimits(rate=0))
    retriever = app.state.retriever
    answers: list[int] = []
    with TestClient(app, base_url=LOOPBACK) as client:
        with retriever._store_lock:  # as an add or a refresh would hold it
            t = threading.Thread(target=lambda: answers.append(
                client.post("/search", data={"id": "3", "k": "5", "rerank": "true"}).status_code))
            t.start()
            time.sleep(0.3)
            t0 = time.perf_counter()
            assert client.get("/health").status_code == 200  # the search waits on a worker thread
            assert time.perf_counter() - t0 < 0.25
            assert not answers
        t.join(10)
    assert answers == [200]


def test_small_pngs_with_alpha_or_exif_turns_are_decoded_alike(digits_index, make_app, monkeypatch):
    """The event-loop decode is the same function: notes and codes match the thread path."""
    rgba = np.zeros((40, 40, 4), np.uint8)
    rgba[8:32, 16:24, 3] = 255  # a '1' drawn in the alpha channel only
    buf = io.BytesIO()
    Image.fromarray(rgba, "RGBA").save(buf, format="PNG")
    req = [{"files": {"image": ("a.png", buf.getvalue(), "image/png")}, "data": {"k": "3"}}]
    app, _ = make_app(digits_index, limits=ServeLimits(rate=0))
    with TestClient(app, base_url=LOOPBACK) as client:
        here = _answers(client, req)
    monkeypatch.setattr(app_module, "INLINE_DECODE_BYTES", 0)
    app, _ = make_app(digits_index, limits=ServeLimits(rate=0))
    with TestClient(app, base_url=LOOPBACK) as client:
        threads = _answers(client, req)
    assert here == threads and here[0]["notes"]


def test_a_search_blocked_in_wall_time_counts_as_slow(digits_index, make_app, monkeypatch):
    """CPU time judges a search (preemption on shared cores is not its cost), but one that waited long
    (a cold disk) counts by its wall time, so the next ones go to worker threads."""
    app, store = make_app(digits_index, limits=ServeLimits(rate=0))
    retriever = app.state.retriever
    _ready(retriever)
    assert retriever.search_id(4, k=5, rerank=True, now=True) is not None
    real = store.search

    def blocked(*a, **kw):
        time.sleep(0.3)  # off the CPU: thread_time does not see it
        return real(*a, **kw)

    monkeypatch.setattr(store, "search", blocked)
    monkeypatch.setattr(retriever_module, "_EMA", 1.0)  # the latest search decides
    monkeypatch.setattr(retriever_module, "QUICK_SEARCH_SECONDS", 0.1)  # whatever this machine's speed
    monkeypatch.setattr(retriever_module, "BLOCKED_SEARCH_SECONDS", 0.2)
    assert retriever.search_id(4, k=5, rerank=True, now=True) is not None
    assert retriever.search_id(4, k=5, rerank=True, now=True) is None  # now judged slow
    monkeypatch.setattr(retriever_module, "BLOCKED_SEARCH_SECONDS", 10.0)
    assert retriever.search_id(4, k=5, rerank=True).hits  # on a thread: 0.3 s of sleep, little CPU
    assert retriever.search_id(4, k=5, rerank=True, now=True) is not None


def test_a_store_busy_for_a_moment_is_waited_for_on_the_event_loop(digits_index, make_app, monkeypatch):
    """A quick search that finds the store held (by a search on a worker thread, a refresh) tries
    again on the loop instead of sending itself to a thread too (which would keep the store busy)."""
    monkeypatch.setattr(retriever_module, "QUICK_SEARCH_SECONDS", 0.5)  # whatever this machine's speed
    app, _ = make_app(digits_index, limits=ServeLimits(rate=0))
    retriever = app.state.retriever
    _ready(retriever)
    held = threading.Event()

    def hold() -> None:
        with retriever._store_lock:
            held.set()
            time.sleep(0.02)

    with TestClient(app, base_url=LOOPBACK) as client:
        before = dict(retriever.searches)
        t = threading.Thread(target=hold)
        t.start()
        held.wait(10)
        r = client.post("/search", data={"id": "3", "k": "5", "rerank": "true"})
        t.join()
    assert r.status_code == 200 and r.json()["results"][0]["id"] == 3
    assert retriever.searches == {"event_loop": before["event_loop"] + 1,
                                  "worker_thread": before["worker_thread"]}
