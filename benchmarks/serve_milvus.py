"""`hashret serve` over a Milvus collection beside the same service over an index directory.

The load benchmark's index (``benchmarks/load.py``: 100,000 MNIST items of a 48-bit run, with
their thumbnails) is copied item for item (ids, codes, stored features, metadata, thumbnails,
the model record) into a Milvus 2.3.5 server started here (``hashret.index.milvus_server``;
the "array" layout, re-rank in the client) and into a Milvus Lite 2.5 database (the "vector"
layout, re-rank inside Milvus). Then ``hashret serve LOCATION --read-only`` runs on each in
turn, a fresh server process each time, and the load benchmark's clients (32 threads,
keep-alive, back to back) send the same mix of requests for ``--seconds``: uploads (Hamming
only, and re-ranked) and searches by a stored item's id (re-ranked). Every engine serves the
same model with the same options; only the collection differs.

    python benchmarks/serve_milvus.py --run runs/bench/mnist-48 --data-dir ../shared/data/mnist
    # writes benchmarks/results/serve-milvus-cpu2.{json,md}
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from _machine import cpu_name
from load import RESULTS, build_load_index, free_port, load_test, make_requests, start_server

#: the service's options for every engine (the load benchmark's best single-process setting)
OPTIONS = ["--runtime", "onnx"]
COPY_BATCH = 5000


def copy_into(index: Path, location: str) -> dict:
    """Copy every live item of the index directory into a new Milvus collection at ``location``."""
    from hashret.store import IndexStore
    from hashret.store.milvus import MilvusCollection

    t0 = time.perf_counter()
    with IndexStore.open(index) as store:
        ids = store.live_ids()
        coll = MilvusCollection.create(location, bits=store.bits, feature_dim=store.manifest.stored_dim,
                                       model=store.model_record, model_file=store.model_file(),
                                       overwrite=True, timeout=300)
        for lo in range(0, len(ids), COPY_BATCH):
            chunk = ids[lo : lo + COPY_BATCH]
            vecs = [store.item_vectors(int(i)) for i in chunk]
            codes = np.stack([v[0] for v in vecs])
            feats = np.stack([v[1] for v in vecs]).astype(np.float32)
            rows = np.arange(coll.next_id, coll.next_id + len(chunk))
            if not np.array_equal(rows, chunk):  # ids must stay the directory's: copy in id order, no gaps
                raise RuntimeError(f"{index} has removed items: the copy would renumber them")
            coll.add(codes, feats, store.get_items(chunk, image=True))
        info = coll.info()
    return {"location": location, "items": info["items"], "layout": info["layout"],
            "copy_s": round(time.perf_counter() - t0, 1)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", required=True, help="the load benchmark's MNIST run (make bench-load)")
    ap.add_argument("--data-dir", required=True, help="the MNIST IDX files")
    ap.add_argument("--index", default="runs/load-mnist-100k",
                    help="the load benchmark's index (built if missing)")
    ap.add_argument("--items", type=int, default=100_000)
    ap.add_argument("--clients", type=int, default=32)
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--results", default=str(RESULTS))
    ap.add_argument("--name", default="serve-milvus-cpu2")
    ap.add_argument("--copy-into", help=argparse.SUPPRESS)  # (a child process: Milvus Lite is one process's)
    a = ap.parse_args()
    index = Path(a.index)
    if a.copy_into:
        print(json.dumps(copy_into(index, a.copy_into)))
        return 0

    # benchmarks/milvus.py would shadow the `milvus` server package: drop this folder from the path
    # (its modules used here are imported already)
    sys.path[:] = [x for x in sys.path if Path(x or ".").resolve() != Path(__file__).resolve().parent]
    import milvus
    import pymilvus

    from hashret.index.milvus_server import start_milvus_server
    from hashret.store import IndexStore

    build_load_index(a.run, a.data_dir, index, a.items)
    with IndexStore.open(index) as store:
        n_items = len(store)
    tmp = Path(tempfile.mkdtemp(prefix="hashret-serve-milvus-"))
    server = start_milvus_server(tmp / "server", timeout=180)
    engines = {"index directory": str(index),
               "Milvus 2.3.5 server": f"milvus://{server.uri.removeprefix('http://')}/load100k",
               "Milvus Lite 2.5": f"{tmp / 'lite.db'}:load100k"}
    copies = {}
    try:
        for name, loc in list(engines.items())[1:]:
            out = subprocess.run([sys.executable, __file__, "--run", a.run, "--data-dir", a.data_dir,
                                  "--index", str(index), "--copy-into", loc], check=True,
                                 capture_output=True, text=True)
            copies[name] = json.loads(out.stdout.strip().splitlines()[-1])
            print(f"{name}: copied {copies[name]['items']} items in {copies[name]['copy_s']} s "
                  f"({copies[name]['layout']} layout)", flush=True)
        reqs = make_requests(a.data_dir, a.run, n_items)
        rows = []
        for name, loc in engines.items():
            port = free_port()
            proc = start_server(loc, port, OPTIONS)
            try:
                print(f"{name}: {a.clients} clients for {a.seconds:.0f} s ...", flush=True)
                load = load_test(port, reqs, a.clients, a.seconds, server_pid=proc.pid)
            finally:
                proc.terminate()
                proc.wait(60)
            rows.append({"engine": name, "location": loc, "load": load})
            print(f"  uploads {load['uploads']['rps']}/s p99 {load['uploads']['p99_ms']} ms; by id "
                  f"{load['id+rerank']['rps']}/s p99 {load['id+rerank']['p99_ms']} ms; errors "
                  f"{load['all']['errors']}", flush=True)
    finally:
        server.stop()
    res = {"config": {"items": n_items, "clients": a.clients, "seconds": a.seconds, "options": OPTIONS,
                      "index": str(index), "run": a.run, "command": "python " + " ".join(sys.argv)},
           "machine": {"cpus": os.cpu_count(), "cpu": cpu_name(), "python": platform.python_version(),
                       "milvus_server": milvus.__version__, "pymilvus": pymilvus.__version__},
           "copies": copies, "rows": rows}
    write_report(res, Path(a.results), a.name)
    return 0 if all(r["load"]["all"]["errors"] == 0 for r in rows) else 1


def write_report(res: dict, results: Path, name: str) -> None:
    results.mkdir(parents=True, exist_ok=True)
    (results / f"{name}.json").write_text(json.dumps(res, indent=2) + "\n")
    c, m, rows = res["config"], res["machine"], res["rows"]
    base = rows[0]["load"]
    lines = [
        f"# `hashret serve` over Milvus and over an index directory ({c['items']:,} items, {c['clients']} "
        f"clients, {c['seconds']:.0f} s per engine)", "",
        f"`{c['command']}`", "",
        "The load benchmark's 100k MNIST index (48 bits, float16 features, thumbnails), copied item for "
        f"item into a Milvus {m['milvus_server']} server on this machine (pymilvus {m['pymilvus']}) and a "
        f"Milvus Lite 2.5 database; `hashret serve LOCATION --read-only {' '.join(c['options'])}` on each, "
        "a fresh process each time. Clients: the load benchmark's (keep-alive threads, back to back; uploads "
        f"k=10 Hamming only and re-ranked; by id k=10 re-ranked, 1,000 candidates). Machine: {m['cpus']} "
        f"cores ({m['cpu']}), shared: the load average before and after each engine is in the table.", "",
        "| engine | layout | uploads/s | x dir | upload p50 / p99 ms | by id /s | x dir | by id p50 / p99 ms "
        "| errors | self first | load before | load after |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---|",
    ]
    for r in rows:
        ld, u, b = r["load"], r["load"]["uploads"], r["load"]["id+rerank"]
        layout = res["copies"].get(r["engine"], {}).get("layout") or "-"
        lines.append(
            f"| {r['engine']} | {layout} | {u['rps']} | {u['rps'] / base['uploads']['rps']:.2f} | "
            f"{u['p50_ms']} / {u['p99_ms']} | {b['rps']} | {b['rps'] / base['id+rerank']['rps']:.2f} | "
            f"{b['p50_ms']} / {b['p99_ms']} | {ld['all']['errors']} | {ld['self_first']:.1%} | "
            f"{ld['loadavg_before']} | {ld['loadavg_after']} |")
    lines += ["", "Copy into each engine (not timed against anything): " + "; ".join(
        f"{k} {v['items']:,} items in {v['copy_s']} s" for k, v in res["copies"].items()) + ".", ""]
    (results / f"{name}.md").write_text("\n".join(lines))


if __name__ == "__main__":
    sys.exit(main())
