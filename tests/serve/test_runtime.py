"""The service's query runtime: ONNX Runtime answers uploads with torch fp32's hits, concurrent
uploads are micro-batched, `--runtime` / `--onnx` / `--workers` on the command line."""

from __future__ import annotations

import dataclasses
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid

import numpy as np
import pytest
from fastapi.testclient import TestClient

from hashret.cli import main
from hashret.indexing import load_index_model
from hashret.serve import create_app
from hashret.store.directory import IndexStore

pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

from hashret.onnx_encoder import OnnxEncoder, export_onnx  # noqa: E402

LOCAL = "http://127.0.0.1"


@pytest.fixture(scope="module")
def index_onnx(digits_index, tmp_path_factory):
    with IndexStore.open(digits_index) as store:
        model, sha = load_index_model(store), store.manifest.model["sha256"]
    return export_onnx(model, tmp_path_factory.mktemp("onnx") / "digits.onnx", model_sha256=sha)


def _hits(resp) -> tuple[list[tuple[int, int, float | None]], str]:
    assert resp.status_code == 200, resp.text
    body = resp.json()
    return [(h["id"], h["hamming"], h["euclidean"]) for h in body["results"]], body["query"]["code"]


class _Answer:
    """An http.client answer with TestClient's status_code / json() / text."""

    def __init__(self, status: int, payload: bytes) -> None:
        self.status_code, self.text = status, payload.decode()

    def json(self):
        return json.loads(self.text)


def _post_image(port: int, image: bytes, k: int = 10) -> _Answer:
    """POST /search with an uploaded PNG over real HTTP."""
    b = uuid.uuid4().hex
    body = (f'--{b}\r\nContent-Disposition: form-data; name="k"\r\n\r\n{k}\r\n'
            f'--{b}\r\nContent-Disposition: form-data; name="image"; filename="q.png"\r\n'
            f"Content-Type: image/png\r\n\r\n").encode() + image + f"\r\n--{b}--\r\n".encode()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        ctype = f"multipart/form-data; boundary={b}"
        conn.request("POST", "/search", body=body, headers={"Content-Type": ctype})
        resp = conn.getresponse()
        return _Answer(resp.status, resp.read())
    finally:
        conn.close()


def _get(port: int, path: str) -> _Answer:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        return _Answer(resp.status, resp.read())
    finally:
        conn.close()


def test_onnx_runtime_gives_torch_fp32_hits_for_the_same_upload(digits_index, index_onnx, digits_data, png):
    with IndexStore.open(digits_index) as store:
        model = load_index_model(store)
        torch_app = create_app(store, dataclasses.replace(model, precision="fp32"))
        onnx_app = create_app(store, model, query_encoder=OnnxEncoder(index_onnx))
        with TestClient(torch_app, base_url=LOCAL) as t, TestClient(onnx_app, base_url=LOCAL) as o:
            for i in range(0, 40, 4):
                for rerank in ("false", "true"):
                    files = {"image": ("q.png", png(digits_data.test.images[i]), "image/png")}
                    data = {"k": "10", "rerank": rerank}
                    (want, want_code), (got, got_code) = (
                        _hits(c.post("/search", files=files, data=data)) for c in (t, o))
                    assert got_code == want_code
                    assert [h[:2] for h in got] == [h[:2] for h in want]
                    if rerank == "true":
                        np.testing.assert_allclose([h[2] for h in got], [h[2] for h in want], atol=1e-3)
        for app in (torch_app, onnx_app):
            app.state.retriever.close()


def test_concurrent_uploads_are_batched_and_each_gets_its_own_answer(digits_index, index_onnx, digits_data,
                                                                     png, serve_app):
    with IndexStore.open(digits_index) as store:
        model = load_index_model(store)
        ref = create_app(store, dataclasses.replace(model, precision="fp32"))
        app = create_app(store, model, query_encoder=OnnxEncoder(index_onnx),
                         limits=_limits(batch_window=0.05, decode_workers=8, rate=0))
        _, port = serve_app(app)
        images = [png(digits_data.test.images[i]) for i in range(24)]
        answers: list = [None] * len(images)

        def client(i: int) -> None:
            answers[i] = _post_image(port, images[i], k=5)

        threads = [threading.Thread(target=client, args=(i,)) for i in range(len(images))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        with TestClient(ref, base_url=LOCAL) as r:
            for i, resp in enumerate(answers):
                want = r.post("/search", files={"image": ("q.png", images[i], "image/png")}, data={"k": "5"})
                assert _hits(resp) == _hits(want)
        batcher = app.state.retriever.batcher
        assert batcher.encoded == len(images)
        assert batcher.batches < batcher.encoded  # some uploads shared a forward pass
        ref.state.retriever.close()


def _limits(**kw):
    from hashret.serve import ServeLimits

    return ServeLimits(**kw)


def test_auto_runtime_is_onnx_only_for_an_index_encoded_in_fp32(digits_index, index_onnx):
    from hashret.serve.runtime import choose_runtime

    with IndexStore.open(digits_index) as store:
        model, sha = load_index_model(store), store.manifest.model["sha256"]
    fp32, bf16 = (dataclasses.replace(model, precision=p) for p in ("fp32", "bf16"))
    assert choose_runtime("auto", fp32, sha, onnx_file=index_onnx).name == "onnx"
    auto = choose_runtime("auto", bf16, sha, onnx_file=index_onnx)
    assert (auto.name, auto.onnx_file) == ("torch", None) and "encoded in bf16" in auto.note
    forced = choose_runtime("onnx", bf16, sha, onnx_file=index_onnx)
    assert forced.name == "onnx" and "--runtime torch avoids it" in forced.note
    assert choose_runtime("torch", fp32, sha).note == "torch fp32"
    with pytest.raises(ValueError, match="--runtime tensorrt: choose one of auto, torch, onnx"):
        choose_runtime("tensorrt", fp32, sha)


@pytest.fixture
def captured(monkeypatch):
    """uvicorn.Server.run replaced: records the app that would be served."""
    import uvicorn

    apps = []
    monkeypatch.setattr(uvicorn.Server, "run", lambda self, sockets=None: apps.append(self.config.app))
    monkeypatch.delenv("HASHRET_WRITE_KEY", raising=False)
    monkeypatch.delenv("HASHRET_READ_KEY", raising=False)
    return apps


def test_serve_runtime_flags(index_copy, index_onnx, captured, capsys, tmp_path, monkeypatch):
    assert main(["serve", str(index_copy), "--runtime", "onnx", "--onnx", str(index_onnx), "--max-batch", "4",
                 "--batch-window-ms", "1"]) == 0
    retriever = captured[-1].state.retriever
    assert isinstance(retriever.query_encoder, OnnxEncoder)
    assert (retriever.batcher.max_batch, retriever.batcher.window) == (4, 0.001)
    with TestClient(captured[-1], base_url=LOCAL) as client:
        assert client.get("/stats").json()["encoder"] == {
            "runtime": "onnx", "precision": "fp32", "max_batch": 4, "batch_window_ms": 1.0, "batches": 1,
            "encoded": 1}  # the warm-up's blank image
    assert "queries encoded by ONNX Runtime fp32" in capsys.readouterr().out

    assert main(["serve", str(index_copy), "--runtime", "auto"]) == 0
    retriever, out = captured[-1].state.retriever, capsys.readouterr().out
    if retriever.model.precision == "fp32":  # an index encoded in fp32: ONNX Runtime gives its codes
        assert isinstance(retriever.query_encoder, OnnxEncoder)
    else:  # bf16: the index's own model, and why
        assert retriever.query_encoder is retriever.model
        assert "the index was encoded in bf16" in out

    assert main(["serve", str(index_copy), "--runtime", "torch", "--max-batch", "1"]) == 0
    assert captured[-1].state.retriever.query_encoder is captured[-1].state.retriever.model
    stats = captured[-1].state.retriever.stats()["encoder"]
    assert stats["runtime"] == "torch" and stats["max_batch"] == 1

    other = tmp_path / "other.onnx"
    with IndexStore.open(index_copy) as store:
        export_onnx(load_index_model(store), other, model_sha256="0" * 64)
    assert main(["serve", str(index_copy), "--runtime", "onnx", "--onnx", str(other)]) == 2
    assert "exported from another model than the index's" in capsys.readouterr().err

    key = tmp_path / "write.key"
    key.write_text("a-write-key-for-the-runtime-test-0123\n")
    key.chmod(0o600)
    assert main(["serve", str(index_copy), "--workers", "2", "--write-key-file", str(key)]) == 2
    assert "add --read-only" in capsys.readouterr().err
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = str(busy.getsockname()[1])
        assert main(["serve", str(index_copy), "--workers", "2", "--runtime", "torch", "--port", port]) == 2
    assert "choose another --port" in capsys.readouterr().err


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_worker_processes_answer_on_one_port_and_stop_on_sigterm(digits_index, index_onnx, digits_data,
                                                                     png):
    port = _free_port()
    cmd = [sys.executable, "-m", "hashret.cli", "serve", str(digits_index), "--workers", "2", "--read-only",
           "--runtime", "onnx", "--onnx", str(index_onnx), "--port", str(port), "--log-level", "warning"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    try:
        deadline = time.monotonic() + 90
        while True:
            assert proc.poll() is None and time.monotonic() < deadline, "the workers did not start"
            try:
                if _get(port, "/health").status_code == 200:
                    break
            except OSError:
                time.sleep(0.3)
        for i in range(30):  # a new connection each: the kernel spreads them over the workers' sockets
            r = _post_image(port, png(digits_data.test.images[i]))
            assert r.status_code == 200 and len(r.json()["results"]) == 10
        assert _get(port, "/stats").json()["writable"] is False
        assert _get(port, "/health").json()["items"] == 1438
        # each worker counts its own searches: both served some (one shared socket let one take nearly all)
        seen = {sum(_get(port, "/stats").json()["searches"].values()) for _ in range(30)}
        assert min(seen) > 0 and (sum(seen) == 30 or seen == {15}), seen
        # a second server on the port is refused, not let into the workers' SO_REUSEPORT group
        assert main(["serve", str(digits_index), "--workers", "2", "--read-only", "--port", str(port)]) == 2
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, out
    assert "2 worker processes" in out
