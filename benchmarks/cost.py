"""Cost of exhaustive search: 4096-d float Euclidean against 64-bit Hamming, same n items.

    python benchmarks/cost.py                 # n = 200,000 (3.3 GB of float32 features)
    python benchmarks/cost.py --n 50000 --rounds 1

The DLBHC paper measures one comparison: Euclidean distance of two 4096-d fc7 vectors
22.6 us, Hamming distance of two 64-bit codes 23 ps (one XOR), "~982,600x faster". This
benchmark measures what a search costs instead: the exact top-1000 of a query among the
same ``n`` items, single thread, as float features (random normal ``float32[n, 4096]``;
the arithmetic does not depend on the values) and as random 64-bit codes:

* Euclidean, numpy: ``|x|^2 - 2 q.x + |q|^2`` with the database norms precomputed, the
  ``q.x`` products by BLAS (a batch of queries: one GEMM; one query: a GEMV), then
  ``argpartition`` and a sort of the 1000 kept;
* Euclidean, faiss ``IndexFlatL2`` (BLAS for a batch of 20 or more queries, its own SIMD
  loop below that);
* Hamming: hashret's ``popcount`` backend and faiss ``IndexBinaryFlat``.

Batches: ``--float-queries`` (100: BLAS is more efficient on bigger batches) for the float
searches, ``--hamming-queries`` for the codes;
"one at a time" rows search ``--single-queries`` queries one call each. Each figure is the
fastest of ``--rounds``. The float features live once in memory: faiss's own storage,
viewed by numpy. Results: ``benchmarks/results/cost-<machine>.{json,md}``.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import faiss
import numba
import numpy as np
from _machine import cpu_name
from threadpoolctl import threadpool_limits

from hashret import __version__
from hashret.index import PopcountIndex
from hashret.io import write_json

RESULTS = Path(__file__).resolve().parent / "results"
PAPER_EUCLIDEAN_S = 22.6e-6  # per pair, DLBHC
PAPER_HAMMING_S = 23e-12
ROWS = 20_000  # feature rows generated / normed at a time


def best_seconds(fn: Callable[[], Any], rounds: int) -> float:
    best = float("inf")
    for _ in range(rounds):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def float_index(n: int, dim: int, seed: int) -> tuple[Any, np.ndarray]:
    """A faiss ``IndexFlatL2`` of ``n`` random normal vectors and a numpy view of its storage."""
    index = faiss.IndexFlatL2(dim)
    index.codes.resize(n * dim * 4)  # allocate once; filled in place below
    index.ntotal = n
    x = faiss.rev_swig_ptr(index.get_xb(), n * dim).reshape(n, dim)  # float32 [n, dim], no copy
    rng = np.random.default_rng(seed)
    for lo in range(0, n, ROWS):
        x[lo:lo + ROWS] = rng.standard_normal((min(ROWS, n - lo), dim), dtype=np.float32)
    return index, x


def numpy_l2_top_k(x: np.ndarray, norms: np.ndarray, q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact L2 top-k by BLAS: ``(float32[m, k] squared distances, int64[m, k] ids)``."""
    d = norms[None, :] - 2.0 * (q @ x.T)  # [m, n]; + |q|^2 below, it does not change the order
    d += (q * q).sum(axis=1, keepdims=True)
    part = np.argpartition(d, k - 1, axis=1)[:, :k]  # [m, k] unordered
    dist = np.take_along_axis(d, part, axis=1)
    order = np.lexsort((part, dist), axis=1)
    return np.take_along_axis(dist, order, axis=1), np.take_along_axis(part, order, axis=1)


def row(method: str, kind: str, mode: str, nq: int, seconds: float, n: int) -> dict[str, Any]:
    ms = 1e3 * seconds / nq
    r = {"method": method, "representation": kind, "mode": mode, "queries": nq, "ms_per_query": round(ms, 4),
         "ns_per_comparison": round(ms * 1e6 / n, 4)}
    print(f"  {kind:<22} {method:<28} {mode:<16} {ms:10.3f} ms/query  {r['ns_per_comparison']:9.4f} ns/item",
          flush=True)
    return r


def float_rows(a: argparse.Namespace) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Euclidean searches over ``float32[n, dim]`` features (freed on return)."""
    n, k = a.n, a.k
    print(f"== {n:,} float32[{a.dim}] features ({n * a.dim * 4 / 1e9:.1f} GB), top-{k}, one thread",
          flush=True)
    findex, x = float_index(n, a.dim, a.seed)
    norms = np.concatenate([np.einsum("ij,ij->i", x[lo:lo + ROWS], x[lo:lo + ROWS])
                            for lo in range(0, n, ROWS)])  # [n] |x|^2, part of building the index
    fq = np.random.default_rng(a.seed + 1).standard_normal((a.float_queries, a.dim), dtype=np.float32)
    single = fq[: a.single_queries]
    batch = f"batch of {len(fq)}"
    rows = [
        row("numpy BLAS (GEMM)", "float32 Euclidean", batch, len(fq),
            best_seconds(lambda: numpy_l2_top_k(x, norms, fq, k), a.rounds), n),
        row("numpy BLAS (GEMV)", "float32 Euclidean", "one at a time", len(single),
            best_seconds(lambda: [numpy_l2_top_k(x, norms, q[None], k) for q in single], a.rounds), n),
        row("faiss IndexFlatL2", "float32 Euclidean", batch, len(fq),
            best_seconds(lambda: findex.search(fq, k), a.rounds), n),
        row("faiss IndexFlatL2", "float32 Euclidean", "one at a time", len(single),
            best_seconds(lambda: [findex.search(q[None], k) for q in single], a.rounds), n),
    ]
    _, np_ids = numpy_l2_top_k(x, norms, fq, k)
    _, fa_ids = findex.search(fq, k)
    overlap = float(np.mean([len(np.intersect1d(u, v)) / k for u, v in zip(np_ids, fa_ids, strict=True)]))
    top1 = int((np_ids[:, 0] == fa_ids[:, 0]).sum())
    print(f"  check: numpy and faiss L2 top-{k} share {overlap:.4f} of their ids, "
          f"top-1 equal on {top1}/{len(fq)}", flush=True)
    return rows, {"float_top_k_id_overlap_numpy_faiss": round(overlap, 4), "float_top1_equal": top1,
                  "float_queries": len(fq)}


def hamming_rows(a: argparse.Namespace) -> list[dict[str, Any]]:
    """Hamming searches over random 64-bit codes of the same ``n`` items."""
    n, k = a.n, a.k
    print(f"== {n:,} random 64-bit codes ({n * 8 / 1e6:.1f} MB), top-{k}, one thread", flush=True)
    codes = np.random.default_rng(a.seed + 2).integers(0, 256, size=(n, 8), dtype=np.uint8)
    hq = np.random.default_rng(a.seed + 3).integers(0, 256, size=(a.hamming_queries, 8), dtype=np.uint8)
    single = hq[: 10 * a.single_queries]
    pop = PopcountIndex(64, threads=1)
    pop.add(codes)
    pop.search(hq[:1], k)  # compile (or load numba's cache) outside the timings
    bare = faiss.IndexBinaryFlat(64)
    bare.add(codes)
    batch = f"batch of {len(hq)}"
    return [
        row("hashret popcount", "64-bit Hamming", batch, len(hq),
            best_seconds(lambda: pop.search(hq, k), a.rounds), n),
        row("hashret popcount", "64-bit Hamming", "one at a time", len(single),
            best_seconds(lambda: [pop.search(q[None], k) for q in single], a.rounds), n),
        row("faiss IndexBinaryFlat", "64-bit Hamming", batch, len(hq),
            best_seconds(lambda: bare.search(hq, k), a.rounds), n),
        row("faiss IndexBinaryFlat", "64-bit Hamming", "one at a time", len(single),
            best_seconds(lambda: [bare.search(q[None], k) for q in single], a.rounds), n),
    ]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=200_000, help="items (float32 features take n * dim * 4 bytes)")
    ap.add_argument("--dim", type=int, default=4096)
    ap.add_argument("--k", type=int, default=1000)
    ap.add_argument("--float-queries", type=int, default=100)
    ap.add_argument("--hamming-queries", type=int, default=200)
    ap.add_argument("--single-queries", type=int, default=3,
                    help="float queries searched one call each (ten times as many codes)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--results", default=str(RESULTS))
    a = ap.parse_args(argv)
    if a.k > a.n:
        ap.error("--k must not exceed --n")
    faiss.omp_set_num_threads(1)
    with threadpool_limits(limits=1):  # numpy's and faiss's BLAS: one thread
        rows, checks = float_rows(a)
        rows += hamming_rows(a)

    def ms(method: str, mode: str) -> float:
        return next(r["ms_per_query"] for r in rows if r["method"] == method and r["mode"].startswith(mode))

    ratios = {
        "numpy GEMM / popcount, batches": ms("numpy BLAS (GEMM)", "batch") / ms("hashret popcount", "batch"),
        "faiss IndexFlatL2 / faiss IndexBinaryFlat, batches":
            ms("faiss IndexFlatL2", "batch") / ms("faiss IndexBinaryFlat", "batch"),
        "fastest Euclidean / fastest Hamming, batches":
            min(ms("numpy BLAS (GEMM)", "batch"), ms("faiss IndexFlatL2", "batch"))
            / min(ms("hashret popcount", "batch"), ms("faiss IndexBinaryFlat", "batch")),
        "fastest Euclidean / fastest Hamming, one query at a time":
            min(ms("numpy BLAS (GEMV)", "one"), ms("faiss IndexFlatL2", "one"))
            / min(ms("hashret popcount", "one"), ms("faiss IndexBinaryFlat", "one")),
        "DLBHC paper, one comparison": PAPER_EUCLIDEAN_S / PAPER_HAMMING_S,
    }
    for name, v in ratios.items():
        print(f"  {name}: {v:,.0f}x")
    m = {"cpu": cpu_name(), "cores": os.cpu_count(), "numba": numba.__version__, "faiss": faiss.__version__,
         "numpy": np.__version__, "python": platform.python_version(), "hashret": __version__,
         "date": datetime.date.today().isoformat(), "load_average_at_end": round(os.getloadavg()[0], 2)}
    doc = {"benchmark": "cost", "machine": m,
           "config": {"n": a.n, "dim": a.dim, "bits": 64, "k": a.k, "threads": 1, "rounds": a.rounds,
                      "seed": a.seed},
           "rows": rows, "ratios": {name: round(v, 1) for name, v in ratios.items()}, "checks": checks}
    stem = Path(a.results) / f"cost-cpu{m['cores']}"
    write_json(stem.with_suffix(".json"), doc)
    stem.with_suffix(".md").write_text(markdown(doc))
    print(stem.with_suffix(".md").read_text())
    return 0


def markdown(doc: dict) -> str:
    m, c = doc["machine"], doc["config"]
    lines = [
        f"# Search cost: {c['dim']}-d float Euclidean against {c['bits']}-bit Hamming "
        f"(hashret {m['hashret']})",
        "",
        f"Machine: {m['cpu']}, {m['cores']} cores (shared with other jobs), one thread for everything; "
        f"numba {m['numba']}, faiss {m['faiss']}, numpy {m['numpy']}; {m['date']}; load average "
        f"(1 min) {m['load_average_at_end']} at the end.",
        "",
        f"Exact top-{c['k']} of each query among the same n = {c['n']:,} items: random normal "
        f"float32[{c['dim']}] features ({c['n'] * c['dim'] * 4 / 1e9:.1f} GB) or random {c['bits']}-bit "
        f"codes ({c['n'] * c['bits'] // 8 / 1e6:.1f} MB). Fastest of {c['rounds']} rounds. `ns per item` = "
        "the query's time over n: the cost of one comparison inside a search, selection included.",
        "",
        "| representation | method | queries | ms/query | ns per item |",
        "|---|---|---|---:|---:|",
    ]
    for r in doc["rows"]:
        lines.append(f"| {r['representation']} | {r['method']} | {r['mode']} | {r['ms_per_query']:.3f} | "
                     f"{r['ns_per_comparison']:.4f} |")
    lines += ["", "| ratio (Euclidean time / Hamming time) | x |", "|---|---:|"]
    for name, v in doc["ratios"].items():
        lines.append(f"| {name} | {v:,.0f} |")
    ch = doc["checks"]
    ham = min(r["ns_per_comparison"] for r in doc["rows"] if r["representation"].endswith("Hamming"))
    euc = min(r["ns_per_comparison"] for r in doc["rows"] if r["representation"].endswith("Euclidean"))
    lines += [
        "",
        f"The paper's {doc['ratios']['DLBHC paper, one comparison']:,.0f}x compares one 4096-d distance "
        "(22.6 us) with one XOR (23 ps). Inside a search a 64-bit code costs "
        f"{ham:.2f} ns here (load, XOR, popcount and the top-k bookkeeping), not 23 ps, and a 4096-d "
        f"vector {euc:,.0f} ns (BLAS, a few tens of GFLOP/s on one core here, better on bigger batches), "
        "not 22.6 us: the measured ratio of whole searches, "
        f"{euc / ham:,.0f}x, is the figure to plan with.",
        "",
        f"Check: numpy's and faiss's float top-{c['k']} share {ch['float_top_k_id_overlap_numpy_faiss']:.4f} "
        f"of their ids (float32 rounding reorders near ties); top-1 equal on {ch['float_top1_equal']}/"
        f"{ch['float_queries']} queries.",
    ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
