"""Load test of `hashret serve`: 32 concurrent clients for 30 s on a 100,000-item index, loopback only.

The index holds real encodings of real images by a trained model: an MNIST 48-bit run's
database (the 60,000 training images), the 10,000 test images, and 30,000 copies of
training images shifted by one or two pixels (so that 100,000 distinct images are
encoded by the model; each item keeps its 28x28 PNG thumbnail). It is built once into
``--index`` and reused.

The server is the real thing, ``hashret serve INDEX --read-only`` in its own process (one
uvicorn worker) on 127.0.0.1; the clients are ``--clients`` threads in this process, each
with its own keep-alive HTTP connection, sending requests back to back for ``--seconds``
(after a 3 s warm-up that is not counted). The requests cycle through three kinds:

- ``image``: POST /search with an uploaded PNG (an MNIST test image), k=10, Hamming only;
- ``image+rerank``: the same with the hierarchical re-rank (1,000 Hamming candidates);
- ``id+rerank``: POST /search by a random indexed item's id, k=10, re-ranked.

An error is any response other than 200 or any exception (timeouts included). For the
uploads with re-rank, the first result must be the uploaded image's own item (it is in the
index); the share where it is, is reported as ``self_first``, and explained by an
in-process check of the coarse stage's pool (how many items share a query's exact code).

    python benchmarks/load.py --run runs/bench/mnist-48 --data-dir ../shared/data/mnist
    # writes benchmarks/results/load-cpu2.{json,md}; --screenshot docs/serve.png also saves
    # a picture of the web page over the same index (needs Debian's chromium)
"""

from __future__ import annotations

import argparse
import http.client
import io
import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import numpy as np
from _machine import cpu_name

RESULTS = Path(__file__).resolve().parent / "results"
KINDS = ("image", "image+rerank", "id+rerank")


# ---------------------------------------------------------------------------- the index
def build_load_index(run_dir: str, data_dir: str, out: Path, items: int) -> None:
    """Train images (the run's encodings), test images, then shifted train images up to ``items``."""
    from hashret.encodings import load_encoded
    from hashret.index.metadata import ItemMeta
    from hashret.index.store import IndexStore
    from hashret.indexing import build_index, load_index_model, thumbnail_png
    from hashret.run import load_run_dataset, open_run

    if (out / "manifest.json").exists():
        with IndexStore.open(out) as store:
            if len(store) == items:
                print(f"reusing {out} ({items} items)", flush=True)
                return
    t0 = time.perf_counter()
    run = open_run(run_dir)
    data = load_run_dataset(run, data_dir)
    enc = None
    folder = run.encodings_dir("database")
    if (folder / "meta.json").exists():
        enc = load_encoded(folder, mmap=True)
        if enc.meta.get("model_sha256") != run.model_sha256 or len(enc) != len(data.train):
            enc = None
    store = build_index(run, out, data.train, collection=data.source, split="train", encodings=enc,
                        overwrite=True, progress=True)
    with store:
        model = load_index_model(store)
        extra = items - len(store)
        if extra < 0:
            raise ValueError(f"--items {items} is smaller than the training set ({len(store)})")
        rng = np.random.default_rng(0)
        n_test = min(extra, len(data.test))
        pick = rng.integers(0, len(data.train), extra - n_test)
        shifts = rng.choice([-2, -1, 1, 2], size=(extra - n_test, 2))
        batch = 5000
        for lo in range(0, extra, batch):
            hi = min(lo + batch, extra)
            imgs, metas = [], []
            for j in range(lo, hi):
                if j < n_test:
                    img, label, src = data.test.images[j], int(data.test.labels[j]), str(data.test.ids[j])
                else:
                    i, (dy, dx) = int(pick[j - n_test]), shifts[j - n_test]
                    img = np.roll(data.train.images[i], (int(dy), int(dx)), axis=(0, 1))
                    label, src = int(data.train.labels[i]), f"{data.train.ids[i]}+shift({dy},{dx})"
                imgs.append(img)
                metas.append(ItemMeta(src, label, data.train.classes[label], image=thumbnail_png(img)))
            e = model.encode(np.stack(imgs))
            store.add(e.codes, e.features, metas)
            print(f"  added {hi}/{extra}", flush=True)
    print(f"built {out}: {items} items in {time.perf_counter() - t0:.0f} s", flush=True)


def pool_check(index: Path, run_dir: str, data_dir: str, n: int = 200) -> dict:
    """How many items share a query's exact code, and whether re-ranked searches find the query
    itself first with the default pool and with ``radius=0`` (in-process, same store)."""
    from hashret.index.store import IndexStore
    from hashret.indexing import load_index_model
    from hashret.run import load_run_dataset, open_run

    test = load_run_dataset(open_run(run_dir), data_dir).test
    idx = np.random.default_rng(2).integers(0, len(test), n)
    with IndexStore.open(index) as store:
        e = load_index_model(store).encode(test.images[idx])
        ties = [len(r) for r in store.search(e.codes, None, len(store), radius=0)]
        default = store.search(e.codes, e.features, 10, rerank=True)
        radius0 = store.search(e.codes, e.features, 10, rerank=True, radius=0)

    def self_first(results: list) -> float:
        return float(np.mean([r.indices[0] == 60000 + i for r, i in zip(results, idx, strict=True)]))

    return {"queries": n, "median_items_at_query_code": float(np.median(ties)),
            "self_first_default": self_first(default), "self_first_radius0": self_first(radius0)}


# ---------------------------------------------------------------------------- the server
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(index: Path, port: int) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "hashret.cli", "serve", str(index), "--host", "127.0.0.1",
           "--port", str(port), "--read-only", "--log-level", "warning",
           "--rate-limit", "0"]  # 32 clients share one address: the per-client rate limit would 429 them
    proc = subprocess.Popen(cmd)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited with {proc.returncode}")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", "/health")
            if conn.getresponse().status == 200:
                return proc
        except OSError:
            time.sleep(0.2)
    proc.kill()
    raise RuntimeError("the server did not answer /health within 120 s")


# ---------------------------------------------------------------------------- the clients
def multipart(fields: dict[str, str], file: bytes | None) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    out = io.BytesIO()
    for k, v in fields.items():
        out.write(f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode())
    if file is not None:
        out.write(f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="q.png"\r\n'
                  f"Content-Type: image/png\r\n\r\n".encode() + file + b"\r\n")
    out.write(f"--{boundary}--\r\n".encode())
    return out.getvalue(), f"multipart/form-data; boundary={boundary}"


def make_requests(data_dir: str, run_dir: str, n_items: int,
                  n: int = 2000) -> list[tuple[str, bytes, str, int]]:
    """``n`` prepared requests ``(kind, body, content_type, expected_first_id or -1)``."""
    from PIL import Image

    from hashret.run import load_run_dataset, open_run

    test = load_run_dataset(open_run(run_dir), data_dir).test
    rng = np.random.default_rng(1)
    reqs = []
    for j in range(n):
        kind = KINDS[j % 3]
        if kind == "id+rerank":
            body, ctype = multipart({"id": str(int(rng.integers(0, n_items))), "k": "10", "rerank": "true"},
                                    None)
            reqs.append((kind, body, ctype, -1))
            continue
        t = int(rng.integers(0, len(test)))
        buf = io.BytesIO()
        Image.fromarray(test.images[t][..., 0]).save(buf, format="PNG")
        body, ctype = multipart({"k": "10", "rerank": "true" if kind == "image+rerank" else "false"},
                                buf.getvalue())
        reqs.append((kind, body, ctype, 60000 + t if kind == "image+rerank" else -1))
    return reqs


class Client(threading.Thread):
    def __init__(self, port: int, reqs: list, offset: int, start_at: float, stop_at: float) -> None:
        super().__init__(daemon=True)
        self.port, self.reqs, self.offset = port, reqs, offset
        self.start_at, self.stop_at = start_at, stop_at
        self.records: list[tuple[str, float, bool]] = []  # kind, latency s, ok
        self.errors: list[str] = []
        self.self_first = [0, 0]

    def run(self) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        j = self.offset
        while True:
            now = time.perf_counter()
            if now >= self.stop_at:
                break
            kind, body, ctype, expect = self.reqs[j % len(self.reqs)]
            j += 1
            t0 = time.perf_counter()
            ok = False
            try:
                conn.request("POST", "/search", body=body, headers={"Content-Type": ctype})
                resp = conn.getresponse()
                payload = resp.read()
                ok = resp.status == 200
                if not ok:
                    self.errors.append(f"{resp.status}: {payload[:200]!r}")
            except (OSError, http.client.HTTPException) as e:
                self.errors.append(f"{type(e).__name__}: {e}")
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
            t1 = time.perf_counter()
            if t0 >= self.start_at:  # the warm-up is not counted
                self.records.append((kind, t1 - t0, ok))
                if ok and expect >= 0:
                    self.self_first[1] += 1
                    self.self_first[0] += json.loads(payload)["results"][0]["id"] == expect
        conn.close()


def summarise(lat: np.ndarray, seconds: float, errors: int) -> dict:
    ms = lat * 1e3
    return {"requests": int(len(lat)), "errors": int(errors), "rps": round(len(lat) / seconds, 1),
            "p50_ms": round(float(np.percentile(ms, 50)), 1),
            "p90_ms": round(float(np.percentile(ms, 90)), 1),
            "p99_ms": round(float(np.percentile(ms, 99)), 1), "max_ms": round(float(ms.max()), 1),
            "mean_ms": round(float(ms.mean()), 1)}


def load_test(port: int, reqs: list, clients: int, seconds: float, warmup: float = 3.0) -> dict:
    start_at = time.perf_counter() + warmup
    stop_at = start_at + seconds
    threads = [Client(port, reqs, i * 37, start_at, stop_at) for i in range(clients)]
    load_before = os.getloadavg()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    records = [r for t in threads for r in t.records]
    errors = [e for t in threads for e in t.errors]
    lat = np.array([r[1] for r in records])
    out = {"all": summarise(lat, seconds, sum(not r[2] for r in records))}
    for kind in KINDS:
        sel = [r for r in records if r[0] == kind]
        out[kind] = summarise(np.array([r[1] for r in sel]), seconds, sum(not r[2] for r in sel))
    sf = np.sum([t.self_first for t in threads], axis=0)
    out["self_first"] = round(float(sf[0] / max(sf[1], 1)), 4)
    out["error_samples"] = errors[:5]
    out["loadavg_before"] = [round(x, 2) for x in load_before]
    out["loadavg_after"] = [round(x, 2) for x in os.getloadavg()]
    return out


# ---------------------------------------------------------------------------- the page
def screenshot(port: int, data_dir: str, run_dir: str, path: Path) -> None:
    """A picture of the web page: one MNIST test image uploaded, re-ranked results."""
    from PIL import Image
    from playwright.sync_api import expect, sync_playwright

    from hashret.run import load_run_dataset, open_run

    test = load_run_dataset(open_run(run_dir), data_dir).test
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = tempfile.TemporaryDirectory()
    q = Path(tmp.name) / "query.png"
    Image.fromarray(test.images[8][..., 0]).save(q)
    args = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync"]
    try:
        with sync_playwright() as p:
            b = p.chromium.launch(executable_path=os.environ.get("HASHRET_CHROMIUM", "/usr/bin/chromium"),
                                  args=args)
            page = b.new_page(viewport={"width": 1100, "height": 720})
            page.goto(f"http://127.0.0.1:{port}/")
            expect(page.locator("#stats")).to_contain_text("items")
            page.set_input_files("#file", str(q))
            expect(page.locator("#results li.hit")).to_have_count(12)
            for i in range(12):
                expect(page.locator("#results li.hit img").nth(i)).to_have_js_property("complete", True)
            page.screenshot(path=str(path), full_page=True)
            b.close()
    finally:
        tmp.cleanup()
    print(f"screenshot -> {path}", flush=True)


# ---------------------------------------------------------------------------- report
def write_report(res: dict, name: str, results_dir: Path) -> None:
    results_dir.mkdir(parents=True, exist_ok=True)
    (results_dir / f"{name}.json").write_text(json.dumps(res, indent=2) + "\n")
    c, m = res["config"], res["machine"]
    lines = [
        f"# Load test of `hashret serve` ({c['items']:,} items, {c['bits']} bits, {c['clients']} clients, "
        f"{c['seconds']:.0f} s)", "",
        f"`{c['command']}`", "",
        f"Server: `hashret serve --read-only`, one uvicorn process, 127.0.0.1, backend {c['backend']}. "
        f"Clients: {c['clients']} threads in another process, keep-alive connections, back to back. "
        f"Machine: {m['cpus']} cores ({m['cpu']}), shared: load average {res['load']['loadavg_before']} "
        f"before, {res['load']['loadavg_after']} after.", "",
        "| requests | count | errors | req/s | p50 ms | p90 ms | p99 ms | max ms |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for kind in ("all", *KINDS):
        r = res["load"][kind]
        lines.append(f"| {kind} | {r['requests']:,} | {r['errors']} | {r['rps']} | {r['p50_ms']} | "
                     f"{r['p90_ms']} | {r['p99_ms']} | {r['max_ms']} |")
    lines += ["", f"Uploads with re-rank whose first result is the uploaded image itself: "
                  f"{res['load']['self_first']:.2%}."]
    pool = res.get("pool")
    if pool and res["load"]["self_first"] < 0.99:
        lines += ["", "Why: the coarse stage's default pool is the top 1,000 items by Hamming distance, "
                      f"ties broken by id, and a typical query (median of {pool['queries']}) shares its "
                      f"exact code with {pool['median_items_at_query_code']:,.0f} items (the 48-bit codes "
                      "of a class collapse onto few values). So the pool holds the 1,000 lowest ids among "
                      "the ties, and the query's own item (ids 60,000 and up) is left out. In-process, on "
                      f"{pool['queries']} test images: found first {pool['self_first_default']:.1%} of the "
                      "time with the default pool, "
                      f"{pool['self_first_radius0']:.1%} with `radius=0` (every item at the query's own "
                      "distance; `POST /search` takes `radius` and `candidates`)."]
    lines.append("")
    (results_dir / f"{name}.md").write_text("\n".join(lines))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", required=True,
                    help="a trained MNIST run directory (hashret train / make bench-mnist)")
    ap.add_argument("--data-dir", required=True, help="the MNIST IDX files")
    ap.add_argument("--index", default="runs/load-mnist-100k", help="index directory (built once, reused)")
    ap.add_argument("--items", type=int, default=100_000)
    ap.add_argument("--clients", type=int, default=32)
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--results", default=str(RESULTS))
    ap.add_argument("--name", default="load-cpu2", help="results file name (without suffix)")
    ap.add_argument("--screenshot", help="also save a screenshot of the web page here (e.g. docs/serve.png)")
    a = ap.parse_args()

    import fastapi
    import uvicorn

    from hashret.index.store import IndexStore

    index = Path(a.index)
    build_load_index(a.run, a.data_dir, index, a.items)
    with IndexStore.open(index) as store:
        info = store.info()
    pool = pool_check(index, a.run, a.data_dir)
    reqs = make_requests(a.data_dir, a.run, info["items"])
    port = free_port()
    server = start_server(index, port)
    try:
        print(f"{a.clients} clients for {a.seconds:.0f} s against 127.0.0.1:{port} ...", flush=True)
        load = load_test(port, reqs, a.clients, a.seconds)
        if a.screenshot:  # after the load: the server is warm
            screenshot(port, a.data_dir, a.run, Path(a.screenshot))
    finally:
        server.terminate()
        server.wait(30)
    res = {
        "config": {"items": info["items"], "bits": info["bits"], "backend": info["backend"],
                   "feature_storage": info["feature_storage"], "clients": a.clients, "seconds": a.seconds,
                   "k": 10, "mix": list(KINDS), "index": str(index),
                   "command": "python " + " ".join(sys.argv)},
        "machine": {"cpus": os.cpu_count(), "cpu": cpu_name(), "python": platform.python_version(),
                    "fastapi": fastapi.__version__, "uvicorn": uvicorn.__version__},
        "load": load, "pool": pool,
    }
    write_report(res, a.name, Path(a.results))
    print(json.dumps(load, indent=2))
    return 0 if load["all"]["errors"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
