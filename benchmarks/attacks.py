"""Attack probes against `hashret serve`, loopback only: what the server does, and whether it stays up.

The server is the real thing, ``hashret serve INDEX --write-key-file KEY`` in its own process
on 127.0.0.1, with 256 file descriptors (``RLIMIT_NOFILE``, as in the probe that found the
problems) and an empty numba cache (a fresh install: its kernels compile at start-up). The
index holds ``--items`` (60,000) items: the bundled digits' training images encoded by a
short DLBHC run, and shifted copies of them, each with its thumbnail. It is built once into
``--work`` and reused.

Every attack comes from 127.0.0.1; a monitor polls ``GET /health`` from 127.0.0.2 every
0.1 s all along (a client the attack does not control), and the server's resident memory
(``/proc/PID/status``) and log size are sampled. An attack passes when the server refused or
bounded it as intended, ``/health`` answered every poll within 1 s, and the log grew by a
few lines at most. The probes (all bounded; the script stops by itself):

- ``cross-origin write``: a hostile page's form POST to /items (Origin, Sec-Fetch-Site), with
  and without the key; a write with the key and no browser headers is the control.
- ``dns-rebinding host``: requests naming a hostile Host.
- ``slow headers x500``: request heads sent a line per second.
- ``slow bodies x300``: POST bodies sent 10 bytes per second.
- ``stalled chunked x40``: 15 MB chunked uploads that then stop.
- ``big-pixel rgb x40``: a ~116 KB PNG declaring 39.7 megapixels RGB, 40 at once.
- ``big-pixel grey x40``: the same size in grey (within the decode budget: decoded, queued).
- ``huge ids``: ids of 2**63 and more on every route, on one keep-alive connection.
- ``request flood``: 2,000 requests back to back from one client.
- ``first radius search``: a range search right after start-up.

    python benchmarks/attacks.py          # writes benchmarks/results/attacks-cpu2.{json,md}
"""

from __future__ import annotations

import argparse
import http.client
import io
import json
import os
import platform
import resource
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
KEY = "attacks-benchmark-write-key-" + "0" * 8
HEADER_TIMEOUT, BODY_TIMEOUT = 5.0, 15.0  # shorter than the defaults (10 s, 60 s) to keep the run short


# ---------------------------------------------------------------------------- the index
def build_attack_index(work: Path, items: int) -> Path:
    """The digits' training images plus shifted copies up to ``items``, encoded by a short run."""
    from hashret.indexing import build_index, load_index_model, thumbnail_png
    from hashret.run import load_run_dataset, open_run
    from hashret.store.directory import IndexStore
    from hashret.store.metadata import ItemMeta
    from hashret.training import TrainConfig, train

    out = work / f"digits-{items}"
    if (out / "manifest.json").exists():
        with IndexStore.open(out) as store:
            if len(store) == items:
                return out
    run_dir = work / "digits48"
    try:
        run = open_run(run_dir)
    except (FileNotFoundError, ValueError):
        cfg = TrainConfig(dataset="digits", bits=48, epochs=4, seed=0)
        train(cfg, run_dir, overwrite=True, progress=False)
        run = open_run(run_dir)
    data = load_run_dataset(run)
    store = build_index(run, out, data.train, collection="digits", split="train", overwrite=True)
    with store:
        model = load_index_model(store)
        rng = np.random.default_rng(0)
        extra = items - len(store)
        pick = rng.integers(0, len(data.train), extra)
        shifts = rng.integers(-2, 3, (extra, 2))
        for lo in range(0, extra, 5000):
            hi = min(lo + 5000, extra)
            imgs = np.stack([np.roll(data.train.images[pick[j]], tuple(shifts[j]), axis=(0, 1))
                             for j in range(lo, hi)])
            labels = [int(data.train.labels[pick[j]]) for j in range(lo, hi)]
            metas = [ItemMeta(f"/srv/digits/{pick[j]}+{shifts[j].tolist()}.png", lab, data.train.classes[lab],
                              image=thumbnail_png(img)) for j, lab, img in zip(range(lo, hi), labels, imgs,
                                                                                strict=True)]
            e = model.encode(imgs)
            store.add(e.codes, e.features, metas)
    return out


# ---------------------------------------------------------------------------- the server
def start_server(index: Path, port: int, work: Path) -> tuple[subprocess.Popen, Path, float]:
    key_file = work / "write.key"
    key_file.write_text(KEY + "\n")
    key_file.chmod(0o600)
    log = work / "server.log"
    cache = Path(tempfile.mkdtemp(prefix="numba-cache-", dir=work))
    env = {**os.environ, "NUMBA_CACHE_DIR": str(cache), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "hashret.cli", "serve", str(index), "--port", str(port), "--write-key-file",
           str(key_file), "--header-timeout", str(HEADER_TIMEOUT), "--body-timeout", str(BODY_TIMEOUT),
           "--log-level", "warning"]

    def limit_fds() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (256, 256))

    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT,
                            preexec_fn=limit_fds)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited with {proc.returncode}: see {log}")
        try:
            if get(port, "/health", timeout=2)[0] == 200:
                return proc, log, time.perf_counter() - t0
        except OSError:
            time.sleep(0.2)
    proc.kill()
    raise RuntimeError("the server did not answer /health within 300 s")


def rss_mb(pid: int) -> tuple[float, float]:
    """(resident, peak resident) MiB of a process."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        k, _, v = line.partition(":")
        fields[k] = v.strip()
    return int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024


# ---------------------------------------------------------------------------- clients
def multipart(fields: dict[str, str], files: list[tuple[str, str, bytes]]) -> tuple[bytes, str]:
    b = uuid.uuid4().hex
    out = io.BytesIO()
    for k, v in fields.items():
        out.write(f'--{b}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode())
    for name, filename, data in files:
        out.write(f'--{b}\r\nContent-Disposition: form-data; name="{name}"; filename="{filename}"\r\n'
                  f"Content-Type: image/png\r\n\r\n".encode() + data + b"\r\n")
    out.write(f"--{b}--\r\n".encode())
    return out.getvalue(), f"multipart/form-data; boundary={b}"


def get(port: int, path: str, *, method: str = "GET", headers: dict | None = None, body: bytes = b"",
        timeout: float = 30, conn: http.client.HTTPConnection | None = None,
        source: str | None = None) -> tuple[int, bytes]:
    c = conn or http.client.HTTPConnection("127.0.0.1", port, timeout=timeout,
                                           source_address=(source, 0) if source else None)
    try:
        c.request(method, path, body=body or None, headers={"Host": f"127.0.0.1:{port}", **(headers or {})})
        r = c.getresponse()
        return r.status, r.read()
    finally:
        if conn is None:
            c.close()


class Monitor:
    """Polls /health from 127.0.0.2 every 0.1 s and samples the server's memory, until stopped."""

    def __init__(self, port: int, pid: int) -> None:
        self.port, self.pid = port, pid
        self.latencies: list[float] = []
        self.failures = 0
        self.rss: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            t0 = time.perf_counter()
            try:
                ok = get(self.port, "/health", timeout=5, source="127.0.0.2")[0] == 200
            except OSError:
                ok = False
            dt = time.perf_counter() - t0
            if ok:
                self.latencies.append(dt)
            else:
                self.failures += 1
            self.rss.append(rss_mb(self.pid)[0])
            self._stop.wait(max(0.0, 0.1 - dt))

    def __enter__(self) -> Monitor:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)

    def summary(self) -> dict:
        lat = np.array(self.latencies or [np.nan]) * 1e3
        return {"health_polls": len(self.latencies) + self.failures, "health_failures": self.failures,
                "health_p50_ms": round(float(np.nanmedian(lat)), 1),
                "health_max_ms": round(float(np.nanmax(lat)), 1),
                "rss_max_mb": round(max(self.rss or [0.0]), 1)}


def hold_open(port: int, n: int, head: bytes, drip: bytes, seconds: float) -> dict:
    """Open ``n`` connections, send ``head``, then ``drip`` each second; report how the server ended them."""
    socks, opened_at, ended = [], [], {}
    for _ in range(n):
        s = socket.create_connection(("127.0.0.1", port))
        s.setblocking(False)
        try:
            s.send(head)
        except OSError:
            pass
        socks.append(s)
        opened_at.append(time.perf_counter())
    first_line: dict[int, bytes] = {}
    t_end = time.perf_counter() + seconds
    next_drip = time.perf_counter() + 1.0
    while len(ended) < n and time.perf_counter() < t_end:
        now = time.perf_counter()
        for i, s in enumerate(socks):
            if i in ended:
                continue
            try:
                data = s.recv(4096)
                if data:
                    first_line.setdefault(i, data.split(b"\r\n", 1)[0])
                    continue
                ended[i] = now - opened_at[i]
            except BlockingIOError:
                if now >= next_drip:
                    try:
                        s.send(drip)
                    except OSError:
                        ended[i] = now - opened_at[i]
            except OSError:
                ended[i] = now - opened_at[i]
        if now >= next_drip:
            next_drip = now + 1.0
        time.sleep(0.05)
    for s in socks:
        s.close()
    statuses: dict[str, int] = {}
    for i in ended:
        code = first_line.get(i, b"").split(b" ")[1:2]
        key = code[0].decode() if code else "closed, no answer"
        statuses[key] = statuses.get(key, 0) + 1
    times = list(ended.values())
    return {"connections": n, "closed_by_server": len(ended), "still_open_at_end": n - len(ended),
            "answers": statuses, "slowest_close_s": round(max(times), 2) if times else None}


def concurrent(n: int, fn) -> list:  # noqa: ANN001 - a callable of no arguments
    out: list = [None] * n
    go = threading.Event()

    def worker(i: int) -> None:
        go.wait()
        try:
            out[i] = fn()
        except OSError as e:
            out[i] = (type(e).__name__, b"")

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    go.set()
    for t in threads:
        t.join(300)
    return out


def count(statuses: list) -> dict[str, int]:
    c: dict[str, int] = {}
    for s in statuses:
        c[str(s)] = c.get(str(s), 0) + 1
    return dict(sorted(c.items()))


def png_bytes(mode: str, side: int) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new(mode, (side, side)).save(buf, format="PNG", optimize=True)
    return buf.getvalue()


# ---------------------------------------------------------------------------- the attacks
def attacks(port: int, digit: bytes) -> list[tuple[str, str, callable]]:  # type: ignore[valid-type]
    auth = {"Authorization": f"Bearer {KEY}"}

    def items() -> int:
        return json.loads(get(port, "/health")[1])["items"]

    def cross_origin() -> tuple[dict, bool]:
        body, ctype = multipart({}, [("images", "x.png", digit)])
        before = items()
        tries = {
            "form POST, Origin evil, no key": {"Origin": "http://evil.example",
                                               "Sec-Fetch-Site": "cross-site"},
            "form POST, Origin evil, with key": {"Origin": "http://evil.example", **auth},
            "fetch, Sec-Fetch-Site cross-site, with key": {"Sec-Fetch-Site": "cross-site", **auth},
            "no browser headers, no key": {},
        }
        got = {k: get(port, "/items", method="POST", headers={"Content-Type": ctype, **h}, body=body)[0]
                 for k, h in tries.items()}
        control = get(port, "/items", method="POST", headers={"Content-Type": ctype, **auth}, body=body)[0]
        after = items()
        ok = list(got.values()) == [403, 403, 403, 401] and control == 201 and after == before + 1
        return {"answers": got, "control (key, no browser headers)": control,
                "items_added": after - before}, ok

    def rebinding() -> tuple[dict, bool]:
        got = {}
        for host in ("evil.example", f"evil.example:{port}", "127.0.0.1.attacker.example"):
            for method, path in (("GET", "/stats"), ("GET", "/items/1"), ("POST", "/items")):
                got[f"{method} {path} Host {host}"] = get(port, path, method=method,
                                                          headers={"Host": host, **auth})[0]
        return {"answers": count(list(got.values()))}, set(got.values()) == {400}

    def slow_headers() -> tuple[dict, bool]:
        r = hold_open(port, 500, b"GET /stats HTTP/1.1\r\nHost: 127.0.0.1\r\n", b"X-Slow: 1\r\n",
                      HEADER_TIMEOUT + 10)
        ok = r["still_open_at_end"] == 0 and (r["slowest_close_s"] or 0) < HEADER_TIMEOUT + 2
        return r, ok

    def slow_bodies() -> tuple[dict, bool]:
        head = (b"POST /search HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                b"Content-Type: multipart/form-data; boundary=x\r\nContent-Length: 100000\r\n\r\n--x\r\n")
        r = hold_open(port, 300, head, b"0123456789", BODY_TIMEOUT + 10)
        ok = r["still_open_at_end"] == 0 and (r["slowest_close_s"] or 0) < BODY_TIMEOUT + 2
        return r, ok

    def stalled_chunked() -> tuple[dict, bool]:
        start = (b'--x\r\nContent-Disposition: form-data; name="image"; filename="big.png"\r\n'
                 b"Content-Type: image/png\r\n\r\n")
        mb = bytes(1 << 20)

        def one() -> tuple[str, float]:
            s = socket.create_connection(("127.0.0.1", port))
            t0 = time.perf_counter()
            try:
                s.sendall(b"POST /search HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n"
                          b"Content-Type: multipart/form-data; boundary=x\r\n\r\n")
                s.sendall(b"%x\r\n%s\r\n" % (len(start), start))
                for _ in range(15):
                    s.sendall(b"%x\r\n%s\r\n" % (len(mb), mb))
                s.settimeout(BODY_TIMEOUT + 10)
                data = s.recv(4096)  # stalled: wait for the server
                return (data.split(b" ")[1].decode() if data else "closed"), time.perf_counter() - t0
            except OSError as e:
                return type(e).__name__, time.perf_counter() - t0
            finally:
                s.close()

        out = concurrent(40, one)
        slowest = max(t for _, t in out)
        return ({"uploads": 40, "bytes_each": 15 << 20, "answers": count([a for a, _ in out]),
                 "slowest_end_s": round(slowest, 2)}, slowest < BODY_TIMEOUT + 3)

    def big_pixels(mode: str) -> callable:  # type: ignore[valid-type]
        data = png_bytes(mode, 6300)

        def run() -> tuple[dict, bool]:
            body, ctype = multipart({"k": "5"}, [("image", "big.png", data)])
            t0 = time.perf_counter()
            out = concurrent(40, lambda: get(port, "/search", method="POST", headers={"Content-Type": ctype},
                                             body=body, timeout=120))
            statuses = [o[0] for o in out]
            res = {"uploads": 40, "png_bytes": len(data), "megapixels": round(6300 * 6300 / 1e6, 1),
                   "answers": count(statuses), "seconds_all": round(time.perf_counter() - t0, 2)}
            expected = {413} if mode == "RGB" else {200, 503}
            return res, set(statuses) <= expected
        return run

    def huge_ids() -> tuple[dict, bool]:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        got = {}
        for method, path, fields in (("GET", f"/items/{2**63}", None), ("GET", f"/items/{2**64}/image", None),
                                     ("GET", f"/items/{10**30}", None),
                                     ("POST", "/search", {"id": str(2**70)})):
            body, ctype = multipart(fields, []) if fields else (b"", "")
            status, data = get(port, path, method=method, conn=conn, body=body,
                               headers={"Content-Type": ctype} if ctype else None)
            name = f"{method} {path}" + (f" id={fields['id']}" if fields else "")
            got[name] = (status, json.loads(data)["status"])
        same_conn = get(port, "/items/1", conn=conn)[0]
        conn.close()
        ok = all(s == 404 and j == 404 for s, j in got.values()) and same_conn == 200
        return {"answers": {k: v[0] for k, v in got.items()}, "then on the same connection": same_conn}, ok

    def flood() -> tuple[dict, bool]:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        statuses = []
        for _ in range(2000):
            try:
                statuses.append(get(port, "/items/1", conn=conn)[0])
            except (OSError, http.client.HTTPException):
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        conn.close()
        c = count(statuses)
        return {"requests": 2000, "answers": c}, "429" in c and set(c) <= {"200", "429"}

    def first_radius() -> tuple[dict, bool]:
        body, ctype = multipart({"id": "1", "radius": "3", "rerank": "true", "k": "10"}, [])
        t0 = time.perf_counter()
        status = get(port, "/search", method="POST", headers={"Content-Type": ctype}, body=body)[0]
        dt = time.perf_counter() - t0
        return {"status": status, "seconds": round(dt, 3)}, status == 200 and dt < 1.0

    return [
        ("first radius search", "POST /search radius=3 rerank right after start-up", first_radius),
        ("cross-origin write", "a hostile page's POST /items (Origin / Sec-Fetch-Site), with and without "
         "the key", cross_origin),
        ("dns-rebinding host", "requests with Host evil.example (the attacker's name for 127.0.0.1)",
         rebinding),
        ("huge ids", "ids 2**63, 2**64, 10**30, 2**70 on every route, one keep-alive connection", huge_ids),
        ("slow headers x500", "request heads sent a line per second", slow_headers),
        ("slow bodies x300", "POST bodies (Content-Length 100000) sent 10 bytes per second", slow_bodies),
        ("stalled chunked x40", "15 MiB chunked multipart uploads, then nothing", stalled_chunked),
        ("big-pixel rgb x40", "40 concurrent uploads of a PNG declaring 6300x6300 RGB", big_pixels("RGB")),
        ("big-pixel grey x40", "40 concurrent uploads of a 6300x6300 grey PNG (within the decode budget)",
         big_pixels("L")),
        ("request flood", "2,000 requests back to back from one client", flood),
    ]


# ---------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--work", default="runs/attacks", help="folder for the index, the key and the server log")
    ap.add_argument("--items", type=int, default=60000)
    ap.add_argument("--out", default=str(RESULTS / "attacks-cpu2"))
    a = ap.parse_args(argv)
    work = Path(a.work).resolve()
    work.mkdir(parents=True, exist_ok=True)
    from PIL import Image

    t0 = time.perf_counter()
    index = build_attack_index(work, a.items)
    print(f"index {index} ready ({time.perf_counter() - t0:.0f} s)", flush=True)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    load_before = os.getloadavg()
    proc, log, startup = start_server(index, port, work)
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (8, 8), dtype=np.uint8)).save(buf, format="PNG")
    rows = []
    try:
        for name, sent, probe in attacks(port, buf.getvalue()):
            log_before = log.stat().st_size
            rss_before = rss_mb(proc.pid)[0]
            with Monitor(port, proc.pid) as mon:
                t = time.perf_counter()
                result, ok = probe()
                seconds = time.perf_counter() - t
            health = mon.summary()
            log_bytes = log.stat().st_size - log_before
            responsive = health["health_failures"] == 0 and health["health_max_ms"] < 1000
            passed = bool(ok and responsive and log_bytes < 4096 and proc.poll() is None)
            rows.append({"attack": name, "sent": sent, "result": result, "as_intended": ok, **health,
                         "rss_before_mb": round(rss_before, 1), "log_bytes": log_bytes,
                         "seconds": round(seconds, 1), "pass": passed})
            print(f"{'PASS' if passed else 'FAIL'} {name}: {json.dumps(result)} health max "
                  f"{health['health_max_ms']} ms, failures {health['health_failures']}, rss max "
                  f"{health['rss_max_mb']} MB, log +{log_bytes} B", flush=True)
        stats = get(port, "/stats", headers={"Authorization": f"Bearer {KEY}"}, source="127.0.0.2")[1]
        refused = json.loads(stats)["refused"]  # (from the monitor's address: 127.0.0.1 is rate-limited now)
    finally:
        proc.terminate()
        proc.wait(30)
    report = {
        "machine": {"cpu": cpu_name(), "cores": os.cpu_count(), "python": platform.python_version(),
                    "loadavg_before": [round(x, 2) for x in load_before],
                    "loadavg_after": [round(x, 2) for x in os.getloadavg()]},
        "server": {"items": a.items, "nofile": 256, "header_timeout_s": HEADER_TIMEOUT,
                   "body_timeout_s": BODY_TIMEOUT, "other_limits": "defaults (hashret.serve.ServeLimits)",
                   "startup_s_with_empty_numba_cache": round(startup, 1), "refused_by_class": refused,
                   "log_bytes_total": log.stat().st_size},
        "attacks": rows, "all_pass": all(r["pass"] for r in rows),
    }
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(report, indent=2) + "\n")
    out.with_suffix(".md").write_text(markdown(report))
    print(f"wrote {out}.json / .md; all pass: {report['all_pass']}")
    return 0 if report["all_pass"] else 1


def markdown(r: dict) -> str:
    m, s = r["machine"], r["server"]
    lines = [
        f"# Attack probes against `hashret serve` ({s['items']:,} items, loopback)", "",
        f"Server: `hashret serve INDEX --write-key-file KEY --header-timeout {s['header_timeout_s']:g} "
        f"--body-timeout {s['body_timeout_s']:g}`, other limits at their defaults, 256 file descriptors, "
        f"empty numba cache (start-up with kernel compilation: {s['startup_s_with_empty_numba_cache']} s). "
        "Attacks from 127.0.0.1; `/health` polled every 0.1 s from 127.0.0.2 during each attack. "
        f"Machine: {m['cores']} cores ({m['cpu']}), shared: load average {m['loadavg_before']} before, "
        f"{m['loadavg_after']} after.", "",
        "| attack | what was sent | what the server did | /health p50 / max ms | /health failures | "
        "server RSS max MB | log bytes | pass |",
        "|---|---|---|---:|---:|---:|---:|---|",
    ]
    for a in r["attacks"]:
        did = json.dumps(a["result"]).replace("|", "/")
        lines.append(f"| {a['attack']} | {a['sent']} | `{did}` | {a['health_p50_ms']} / "
                     f"{a['health_max_ms']} | {a['health_failures']} | {a['rss_max_mb']} | "
                     f"{a['log_bytes']} | {'yes' if a['pass'] else '**no**'} |")
    lines += ["", f"Refused by class over the whole run: `{json.dumps(s['refused_by_class'])}`; the server's "
              f"whole log: {s['log_bytes_total']:,} bytes.", "",
              f"All pass: **{'yes' if r['all_pass'] else 'no'}**.", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
