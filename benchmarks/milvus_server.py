"""A real Milvus server (standalone 2.3.5) against Milvus Lite 2.5, the index directory and faiss.

The same ``--n`` 64-bit codes with 64-d float32 features (codes = signs of a random
projection of the features, so both kinds of distance agree roughly, as with a trained
model) go into:

* ``milvus-server 2.3.5``: a server started here (``hashret.index.milvus_server``), one
  vector field per collection, so the features are in the ``"array"`` layout and the
  re-rank runs in the client;
* ``milvus-lite vector``: Milvus Lite 2.5, features as a FLOAT_VECTOR, re-rank inside
  Milvus (and, for comparison, in the client);
* ``milvus-lite array``: Milvus Lite 2.5 in the layout the 2.3 server gets;
* ``index directory``: :class:`hashret.store.directory.IndexStore` (popcount backend,
  float32 features), the reference every ratio is taken against;
* ``faiss-flat``: the codes in faiss plus the features in memory
  (:class:`hashret.search.HierarchicalSearcher`).

Measured per engine: load throughput (items/s, codes + features, in batches of 20,000);
Hamming top-``--k`` queries/s (``--queries`` queries in one call) and whether the answer
is identical (ids and distances, hashret's tie order) to the numpy reference; hierarchical
search latency p50 / p99 (one query per call: top-1000 Hamming pool re-ranked to the top
``--k``) and whether its ids equal the reference's.

    python benchmarks/milvus_server.py          # writes benchmarks/results/milvus-server-cpu2.{json,md}
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from _machine import cpu_name

# benchmarks/milvus.py would shadow the `milvus` package (the server) for a script run from here
sys.path[:] = [x for x in sys.path if Path(x or ".").resolve() != Path(__file__).resolve().parent]

os.environ.setdefault("OMP_NUM_THREADS", "2")

import numpy as np  # noqa: E402

from hashret.io import write_json  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
BITS, DIM, POOL, BATCH = 64, 64, 1000, 20_000


def data(n: int, n_queries: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``codes uint8[n, 8]``, ``features float32[n, 64]`` and the queries' (noisy database copies)."""
    rng = np.random.default_rng(0)
    feats = rng.standard_normal((n, DIM), dtype=np.float32)
    proj = rng.standard_normal((DIM, BITS), dtype=np.float32)
    qf = feats[rng.integers(0, n, n_queries)] + 0.3 * rng.standard_normal((n_queries, DIM), dtype=np.float32)

    def encode(f: np.ndarray) -> np.ndarray:
        return np.packbits((f @ proj > 0).astype(np.uint8), axis=1, bitorder="little")

    return encode(feats), feats, encode(qf), qf.astype(np.float32)


def load(add, codes: np.ndarray, feats: np.ndarray) -> float:
    """Seconds to add everything in batches of ``BATCH``."""
    t0 = time.perf_counter()
    for lo in range(0, len(codes), BATCH):
        add(codes[lo : lo + BATCH], feats[lo : lo + BATCH])
    return time.perf_counter() - t0


def latencies(fn, q: np.ndarray, qf: np.ndarray) -> tuple[list, np.ndarray]:
    """One call per query: the answers and each call's seconds."""
    fn(q[:1], qf[:1])  # warm-up
    out, secs = [], []
    for i in range(len(q)):
        t0 = time.perf_counter()
        out.append(fn(q[i : i + 1], qf[i : i + 1])[0])
        secs.append(time.perf_counter() - t0)
    return out, np.asarray(secs)


def measure(name: str, engine: dict, q, qf, k: int, ref_top, ref_hier) -> dict:
    (d, i), s = _timed(engine["search"], q, k)
    row = {"engine": name, "load_s": engine["load_s"], "items_per_s": engine["n"] / engine["load_s"],
           "search_s": s, "queries_per_s": len(q) / s,
           "identical_top_k": float(np.mean([(a == b).all() and (c == e).all() for a, b, c, e
                                             in zip(i, ref_top[1], d, ref_top[0], strict=True)]))}
    for where, fn in engine["hier"].items():
        got, secs = latencies(fn, q, qf)
        row[f"hier {where}"] = {
            "p50_ms": 1000 * float(np.percentile(secs, 50)), "p99_ms": 1000 * float(np.percentile(secs, 99)),
            "identical_ids": float(np.mean([(g.indices == w.indices).all()
                                            for g, w in zip(got, ref_hier, strict=True)]))}
    print(f"  {name:<22} load {row['items_per_s']:9.0f} items/s  top-{k} {row['queries_per_s']:7.1f} q/s "
          f"identical {row['identical_top_k']:.2f}  " + "  ".join(
              f"{w}: p50 {v['p50_ms']:.1f} ms p99 {v['p99_ms']:.1f} ms (ids {v['identical_ids']:.2f})"
              for w, v in ((w, row[f'hier {w}']) for w in engine["hier"])), flush=True)
    return row


def _timed(fn, *args, **kw):
    t0 = time.perf_counter()
    out = fn(*args, **kw)
    return out, time.perf_counter() - t0


def engines(tmp: Path, codes, feats, k: int, server_uri: str):
    """Each engine built and loaded, as a dict of load seconds, search, hierarchical searches."""
    from hashret.index import create_index
    from hashret.search import HierarchicalSearcher
    from hashret.store.directory import IndexStore
    from hashret.store.milvus import MilvusCollection

    n = len(codes)
    store = IndexStore.create(tmp / "index", bits=BITS, feature_dim=DIM, feature_storage="float32",
                              backend="popcount")
    s = load(lambda c, f: store.add(c, f), codes, feats)
    yield "index directory", {
        "n": n, "load_s": s, "search": lambda q, kk: _pairs(store.search(q, None, kk)),
        "hier": {"rerank": lambda q, qf: store.search(q, qf, k, rerank=True, candidates=POOL, ties=False)}}
    store.close()

    flat = create_index("faiss-flat", BITS)
    mem: list[np.ndarray] = []
    s = load(lambda c, f: (flat.add(c), mem.append(np.array(f))), codes, feats)
    searcher = HierarchicalSearcher(flat, np.concatenate(mem))
    yield "faiss-flat + numpy", {
        "n": n, "load_s": s, "search": flat.search,
        "hier": {"rerank": lambda q, qf: searcher.search(q, qf, k, candidates=POOL)}}

    for name, uri, layout in (("milvus-server 2.3.5", server_uri, None),
                              ("milvus-lite vector", str(tmp / "lite.db"), "vector"),
                              ("milvus-lite array", str(tmp / "lite.db"), "array")):
        name_in = f"bench_{layout or 'auto'}"
        place = (f"milvus://{uri.removeprefix('http://')}/{name_in}" if uri.startswith("http://")
                 else f"{uri}:{name_in}")
        coll = MilvusCollection.create(place, bits=BITS, feature_dim=DIM, layout=layout, overwrite=True,
                                       timeout=120)
        s = load(lambda c, f, ix=coll: ix.add(c, f), codes, feats)
        where = ["milvus", "client"] if coll.layout == "vector" else ["client"]
        hier = {f"rerank in {w}": (lambda q, qf, ix=coll, w=w: ix.search(
            q, qf, k, candidates=POOL, rerank=True, ties=False, rerank_in=w)) for w in where}
        yield f"{name} ({coll.layout})", {"n": n, "load_s": s, "search": coll.index.search, "hier": hier}
        coll.drop()


def _pairs(results) -> tuple[np.ndarray, np.ndarray]:
    return np.stack([r.hamming for r in results]), np.stack([r.indices for r in results])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=200_000)
    p.add_argument("--queries", type=int, default=50)
    p.add_argument("--k", type=int, default=100)
    p.add_argument("--out", type=Path, default=RESULTS / "milvus-server-cpu2")
    a = p.parse_args()
    import milvus
    import pymilvus

    from hashret.index import FlatIndex
    from hashret.index.milvus_server import start_milvus_server
    from hashret.search import HierarchicalSearcher

    load_start = os.getloadavg()
    codes, feats, q, qf = data(a.n, a.queries)
    ref = FlatIndex(BITS)
    ref.add(codes)
    ref_top = ref.search(q, a.k)
    ref_hier = HierarchicalSearcher(ref, feats).search(q, qf, a.k, candidates=POOL)
    tmp = Path(tempfile.mkdtemp(prefix="hashret-bench-milvus-"))
    server = start_milvus_server(tmp / "server")
    print(f"Milvus {milvus.__version__} server at {server.uri}: answered after {server.start_seconds:.1f} s",
          flush=True)
    rows = []
    try:
        for name, engine in engines(tmp, codes, feats, a.k, server.uri):
            rows.append(measure(name, engine, q, qf, a.k, ref_top, ref_hier))
    finally:
        server.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    base = rows[0]
    for row in rows:
        row["load_ratio"] = row["items_per_s"] / base["items_per_s"]
        row["qps_ratio"] = row["queries_per_s"] / base["queries_per_s"]
        for key in [x for x in row if x.startswith("hier ")]:
            row[key]["p50_ratio"] = row[key]["p50_ms"] / base["hier rerank"]["p50_ms"]
    result = {"n": a.n, "bits": BITS, "feature_dim": DIM, "queries": a.queries, "k": a.k, "pool": POOL,
              "cpu": cpu_name(), "cores": os.cpu_count(), "loadavg_start": load_start,
              "loadavg_end": os.getloadavg(), "date": time.strftime("%Y-%m-%d"),
              "server_start_s": server.start_seconds, "milvus_server": milvus.__version__,
              "pymilvus": pymilvus.__version__, "rows": rows,
              "command": f"python benchmarks/milvus_server.py --n {a.n} --queries {a.queries} --k {a.k}"}
    a.out.parent.mkdir(parents=True, exist_ok=True)
    write_json(a.out.with_suffix(".json"), result)
    a.out.with_suffix(".md").write_text(report(result))
    print(f"-> {a.out}.json, {a.out}.md")


def report(r: dict) -> str:
    lines = [
        "# A Milvus 2.3.5 server vs Milvus Lite 2.5, the index directory and faiss", "",
        f"Machine: {r['cpu']}, {r['cores']} cores, **shared with other jobs** (load average "
        f"{r['loadavg_start'][0]:.1f} at the start, {r['loadavg_end'][0]:.1f} at the end); {r['date']}. "
        f"Milvus {r['milvus_server']} standalone (PyPI `milvus`, embedded etcd, on this machine, "
        f"started in {r['server_start_s']:.0f} s), Milvus Lite 2.5.1, pymilvus {r['pymilvus']}. "
        f"Command: `{r['command']}`.", "",
        f"{r['n']:,} {r['bits']}-bit codes with {r['feature_dim']}-d float32 features; Hamming "
        f"top-{r['k']} of {r['queries']} queries in one call; hierarchical: top-{r['pool']} Hamming pool "
        f"re-ranked to the top {r['k']}, one query per call. Ratios are against the index directory in "
        "the same run (load and queries/s: higher is faster; latency: lower is faster).", "",
        "| engine (layout) | load items/s | x | top-k q/s | x | identical | hierarchical | p50 ms | p99 ms | "
        "x p50 | identical ids |",
        "|---|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|",
    ]
    for row in r["rows"]:
        hier = [x for x in row if x.startswith("hier ")]
        for j, key in enumerate(hier):
            h = row[key]
            head = (f"| {row['engine']} | {row['items_per_s']:,.0f} | {row['load_ratio']:.2f} | "
                    f"{row['queries_per_s']:.1f} | {row['qps_ratio']:.2f} | {row['identical_top_k']:.2f} "
                    if j == 0 else "| | | | | | ")
            lines.append(head + f"| {key[5:]} | {h['p50_ms']:.1f} | {h['p99_ms']:.1f} | "
                         f"{h['p50_ratio']:.1f} | {h['identical_ids']:.2f} |")
    lines += ["", "*identical*: share of queries whose answer equals the numpy reference's exactly (top-k: "
              "ids and distances in hashret's order, distance then id; hierarchical: ids). The 2.3.5 server "
              "keeps one vector field per collection, so its features are a scalar ARRAY (the 'array' "
              "layout) and the re-rank runs in the client on the fetched features.", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
