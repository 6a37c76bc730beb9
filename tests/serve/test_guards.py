"""The service under attack, over real uvicorn on loopback: keys, browser attacks, slow and
many connections, a full decode queue, rate limits, huge images and huge ids.

Every server here has small limits (fractions of a second) so the tests stay fast."""

from __future__ import annotations

import http.client
import json
import socket
import struct
import threading
import time
import uuid
import zlib

import numpy as np
import pytest

from hashret.serve import AccessPolicy, ServeLimits

WRITE_KEY = "write-key-for-tests-0123456789"
READ_KEY = "read-key-for-tests-9876543210"


# ---------------------------------------------------------------------------- helpers
def multipart(fields: dict[str, str], files: list[tuple[str, str, bytes]]) -> tuple[bytes, str]:
    """A multipart/form-data body and its content type."""
    b = uuid.uuid4().hex
    parts = [f'--{b}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode()
             for k, v in fields.items()]
    for name, filename, data in files:
        parts.append(f'--{b}\r\nContent-Disposition: form-data; name="{name}"; filename="{filename}"\r\n'
                     f"Content-Type: application/octet-stream\r\n\r\n".encode() + data + b"\r\n")
    return b"".join(parts) + f"--{b}--\r\n".encode(), f"multipart/form-data; boundary={b}"


def call(port: int, method: str, path: str, *, headers: dict[str, str] | None = None, body: bytes = b"",
         conn: http.client.HTTPConnection | None = None, timeout: float = 10.0):
    """``(status, headers, json body or None)`` of one request (on ``conn`` when given)."""
    c = conn or http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    h = {"Host": f"127.0.0.1:{port}", **(headers or {})}
    c.request(method, path, body=body or None, headers=h)
    r = c.getresponse()
    data = r.read()
    if conn is None:
        c.close()
    try:
        payload = json.loads(data)
    except ValueError:
        payload = None
    return r.status, dict(r.getheaders()), payload


def add_request(port: int, png_bytes: bytes, **headers: str):
    body, ctype = multipart({"label": "7"}, [("images", "new.png", png_bytes)])
    return call(port, "POST", "/items", headers={"Content-Type": ctype, **headers}, body=body)


def health_seconds(port: int) -> float:
    t0 = time.perf_counter()
    status, _, body = call(port, "GET", "/health", timeout=5)
    assert status == 200 and body["status"] == "ok"
    return time.perf_counter() - t0


def png_header(width: int, height: int, color_type: int = 0) -> bytes:
    """A PNG file that declares ``width x height`` pixels and holds none (only decoding would notice)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, color_type, 0, 0, 0)
    chunk = b"IHDR" + ihdr
    return (b"\x89PNG\r\n\x1a\n" + struct.pack(">I", len(ihdr)) + chunk
            + struct.pack(">I", zlib.crc32(chunk)) + b"\x00\x00\x00\x00IEND\xaeB`\x82")


def closed_within(sock: socket.socket, seconds: float) -> tuple[bool, bytes]:
    """Whether the server closed ``sock`` within ``seconds``, and what it sent before."""
    sock.settimeout(seconds)
    got = b""
    try:
        while True:
            chunk = sock.recv(4096)
            if not chunk:
                return True, got
            got += chunk
    except TimeoutError:
        return False, got
    except ConnectionResetError:
        return True, got


@pytest.fixture
def writer(index_copy, make_app, serve_app):
    """A writable server with a write key and short limits; yields its port."""
    app, _ = make_app(index_copy, writable=True, access=AccessPolicy(write_key=WRITE_KEY),
                      limits=ServeLimits(rate=0, header_timeout=0.5, body_timeout=0.5))
    return serve_app(app)[1]


@pytest.fixture
def digit_png(digits_data, png):
    return png(digits_data.test.images[0])


# ---------------------------------------------------------------------------- keys and browsers
def test_writes_need_the_write_key(writer, digit_png):
    bearer = {"Authorization": f"Bearer {WRITE_KEY}"}
    status, headers, body = add_request(writer, digit_png)
    assert status == 401 and body["status"] == 401 and "write key" in body["detail"]
    assert headers["www-authenticate"].startswith("Bearer")
    status, _, body = add_request(writer, digit_png, Authorization="Bearer not-the-key-0123456789")
    assert status == 403 and "wrong key" in body["detail"]
    status, _, body = add_request(writer, digit_png, Authorization=f"Bearer {WRITE_KEY}x")
    assert status == 403
    status, _, body = add_request(writer, digit_png, **bearer)
    assert status == 201 and body["count"] == 1439
    # the server's own page (same origin) may write with the key too
    status, _, _ = add_request(writer, digit_png, Origin=f"http://127.0.0.1:{writer}",
                               **{"Sec-Fetch-Site": "same-origin"}, **bearer)
    assert status == 201
    # behind a proxy that rewrites Host, the browser's Sec-Fetch-Site still vouches for the page
    status, _, _ = add_request(writer, digit_png, Origin="https://search.example",
                               **{"Sec-Fetch-Site": "same-origin"}, **bearer)
    assert status == 201


@pytest.mark.parametrize("browser", [
    {"Origin": "http://evil.example"},
    {"Origin": "null"},
    {"Sec-Fetch-Site": "cross-site"},
    {"Sec-Fetch-Site": "same-site", "Origin": "http://127.0.0.1:1"},
])
def test_cross_site_writes_are_refused_even_with_the_key(writer, digit_png, browser):
    status, _, body = add_request(writer, digit_png, Authorization=f"Bearer {WRITE_KEY}", **browser)
    assert status == 403 and "cross-site" in body["detail"]
    assert call(writer, "GET", "/health")[2]["items"] == 1438  # nothing was stored


def test_a_form_post_from_another_site_stores_nothing(writer, digit_png):
    """What a hostile page's <form method=post> sends: no key, its own Origin."""
    body, ctype = multipart({}, [("images", "x.png", digit_png)])
    status, headers, _ = call(writer, "POST", "/items", body=body, headers={
        "Content-Type": ctype, "Origin": "http://evil.example", "Sec-Fetch-Site": "cross-site"})
    assert status == 403 and "access-control-allow-origin" not in headers
    status, headers, _ = call(writer, "OPTIONS", "/items", headers={
        "Origin": "http://evil.example", "Access-Control-Request-Method": "POST"})
    assert "access-control-allow-origin" not in headers  # no CORS: no preflight passes


@pytest.mark.parametrize("host", ["evil.example", "evil.example:80", "127.0.0.1.nip.io", "10.0.0.1"])
def test_a_host_that_is_not_allowed_is_refused(writer, host):
    for path in ("/health", "/stats", "/"):
        status, _, body = call(writer, "GET", path, headers={"Host": host})
        assert status == 400 and "Host" in body["detail"], (path, host)
    for ok in ("localhost", f"localhost:{writer}", f"[::1]:{writer}", "127.0.0.1"):
        assert call(writer, "GET", "/health", headers={"Host": ok})[0] == 200


def test_a_read_key_guards_reads_but_not_the_page(digits_index, make_app, serve_app):
    app, _ = make_app(digits_index, access=AccessPolicy(read_key=READ_KEY, write_key=WRITE_KEY,
                                                        allowed_hosts=("127.0.0.1", "search.example")),
                      limits=ServeLimits(rate=0))
    _, port = serve_app(app)
    assert call(port, "GET", "/stats")[0] == 401
    assert call(port, "GET", "/items/3")[0] == 401
    assert call(port, "GET", "/stats", headers={"Authorization": "Bearer wrong-wrong-wrong-wrong"})[0] == 403
    for key in (READ_KEY, WRITE_KEY):
        status, _, body = call(port, "GET", "/stats", headers={"Authorization": f"Bearer {key}"})
        assert status == 200 and body["read_key"] is True and body["writable"] is False  # opened read-only
    assert call(port, "GET", "/health")[0] == 200 and call(port, "GET", "/")[0] == 200
    assert call(port, "GET", "/static/app.js")[0] == 200
    assert call(port, "GET", "/health", headers={"Host": "search.example"})[0] == 200


# ---------------------------------------------------------------------------- connections
def test_slow_headers_are_cut_off_and_health_answers_meanwhile(writer):
    socks = []
    for i in range(40):
        s = socket.create_connection(("127.0.0.1", writer))
        if i % 2:  # half send part of a request head, half send nothing at all
            s.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
        socks.append(s)
    assert max(health_seconds(writer) for _ in range(5)) < 1.0
    t0 = time.perf_counter()
    results = [closed_within(s, 3.0) for s in socks]
    assert all(closed for closed, _ in results), "a slow connection was not closed"
    assert time.perf_counter() - t0 < 3.0
    assert all(b" 408 " in got.split(b"\r\n")[0] for _, got in results)
    for s in socks:
        s.close()
    assert health_seconds(writer) < 1.0


def test_a_keep_alive_connection_cannot_dribble_its_next_request(writer):
    conn = http.client.HTTPConnection("127.0.0.1", writer, timeout=5)
    assert call(writer, "GET", "/health", conn=conn)[0] == 200
    conn.sock.sendall(b"GET /health HTTP/1.1\r\n")
    for _ in range(4):  # a byte every 0.2 s: the head never completes within 0.5 s
        time.sleep(0.2)
        try:
            conn.sock.sendall(b"X")
        except OSError:
            break
    closed, _ = closed_within(conn.sock, 2.0)
    assert closed
    conn.close()


def test_a_stalled_body_is_cut_off(writer, digit_png):
    body, ctype = multipart({}, [("images", "x.png", digit_png)])
    s = socket.create_connection(("127.0.0.1", writer))
    s.sendall(f"POST /items HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {WRITE_KEY}\r\n"
              f"Content-Type: {ctype}\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body[:50])
    closed, got = closed_within(s, 3.0)
    assert closed and b" 408 " in got.split(b"\r\n")[0]
    s.close()
    chunked = socket.create_connection(("127.0.0.1", writer))
    chunked.sendall(f"POST /search HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n"
                    f"Content-Type: {ctype}\r\n\r\n10\r\n".encode() + body[:16] + b"\r\n")
    assert closed_within(chunked, 3.0)[0]
    chunked.close()
    assert call(writer, "GET", "/health")[2]["items"] == 1438


def test_connections_over_the_cap_are_refused_at_once(digits_index, make_app, serve_app):
    app, _ = make_app(digits_index, limits=ServeLimits(rate=0, max_connections=10, header_timeout=0.5))
    _, port = serve_app(app)
    socks = [socket.create_connection(("127.0.0.1", port)) for _ in range(16)]
    refused = [s for s in socks if closed_within(s, 0.3)[0]]
    assert len(refused) >= 6
    assert app.state.refusals.counts()["connections"] >= 6
    for s in socks:
        s.close()
    time.sleep(0.6)  # the held ones time out
    assert health_seconds(port) < 1.0


def test_one_client_cannot_take_every_connection(digits_index, make_app, serve_app):
    app, _ = make_app(digits_index, limits=ServeLimits(rate=0, max_client_connections=5, header_timeout=2))
    _, port = serve_app(app)
    socks = [socket.create_connection(("127.0.0.1", port)) for _ in range(8)]
    assert sum(closed_within(s, 0.3)[0] for s in socks) >= 3
    other = http.client.HTTPConnection("127.0.0.1", port, timeout=2, source_address=("127.0.0.2", 0))
    assert call(port, "GET", "/health", conn=other)[0] == 200  # another address is still served
    other.close()
    for s in socks:
        s.close()


# ---------------------------------------------------------------------------- work and rates
def test_a_full_decode_queue_answers_503_with_retry_after(digits_index, make_app, serve_app, png):
    app, _ = make_app(digits_index, limits=ServeLimits(rate=0, decode_workers=1, decode_queue=0,
                                                      max_upload_bytes=64 << 20))
    _, port = serve_app(app)
    rng = np.random.default_rng(0)
    big = png(rng.integers(0, 255, (1500, 1500, 1), dtype=np.uint8))  # a few tens of ms to decode
    body, ctype = multipart({"k": "3"}, [("image", "big.png", big)])
    answers: list[tuple[int, dict]] = []
    go = threading.Event()

    def client() -> None:
        go.wait()
        status, headers, _ = call(port, "POST", "/search", headers={"Content-Type": ctype}, body=body)
        answers.append((status, headers))

    threads = [threading.Thread(target=client) for _ in range(12)]
    for t in threads:
        t.start()
    go.set()
    for t in threads:
        t.join(60)
    statuses = sorted(s for s, _ in answers)
    assert len(statuses) == 12 and set(statuses) <= {200, 503} and 200 in statuses and 503 in statuses
    assert all(h["retry-after"] == "1" for s, h in answers if s == 503)
    assert app.state.refusals.counts()["busy"] == statuses.count(503)


def test_a_client_over_its_rate_gets_429_with_retry_after(digits_index, make_app, serve_app):
    app, _ = make_app(digits_index, limits=ServeLimits(rate=1, burst=3))
    _, port = serve_app(app)
    answers = [call(port, "GET", "/items/5") for _ in range(5)]
    assert [a[0] for a in answers] == [200, 200, 200, 429, 429]
    assert int(answers[3][1]["retry-after"]) >= 1 and "too many requests" in answers[3][2]["detail"]
    assert all(call(port, "GET", "/health")[0] == 200 for _ in range(5))  # liveness is not counted


# ---------------------------------------------------------------------------- images and ids
def test_huge_images_are_refused_before_decoding(digits_index, make_app, serve_app):
    app, _ = make_app(digits_index, limits=ServeLimits(rate=0, max_pixels=40_000_000,
                                                      max_decoded_bytes=16 << 20))
    _, port = serve_app(app)
    # the files declare their size and hold no pixels: decoding them would answer 400 (truncated)
    for data, words in ((png_header(9000, 9000), "pixels"), (png_header(3000, 3000, color_type=2), "MiB")):
        body, ctype = multipart({}, [("image", "huge.png", data)])
        status, _, answer = call(port, "POST", "/search", headers={"Content-Type": ctype}, body=body)
        assert status == 413 and words in answer["detail"], answer
    small = png_header(300, 300)  # within the limits: decoded, and found truncated
    body, ctype = multipart({}, [("image", "small.png", small)])
    assert call(port, "POST", "/search", headers={"Content-Type": ctype}, body=body)[0] == 400


def test_huge_ids_are_404_json_and_keep_the_connection(digits_index, make_app, serve_app):
    app, _ = make_app(digits_index, limits=ServeLimits(rate=0))
    _, port = serve_app(app)
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    body, ctype = multipart({"id": str(2**64)}, [])
    for method, path, extra in (("GET", f"/items/{2**64}", {}), ("GET", f"/items/{2**64}/image", {}),
                                ("POST", "/search", {"Content-Type": ctype})):
        sent = body if method == "POST" else b""
        status, headers, answer = call(port, method, path, headers=extra, body=sent, conn=conn)
        assert status == 404 and headers["content-type"] == "application/json" and answer["status"] == 404
    assert call(port, "GET", "/items/3", conn=conn)[0] == 200  # same keep-alive connection
    conn.close()
