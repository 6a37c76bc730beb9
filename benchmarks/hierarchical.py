"""Hierarchical search at scale: latency over 2.5M items, build speed, open time of 10M items.

Part 1 (the seed system's claim: top-1000 of 2.5M images in about a second): an index of
``--n`` items (64-bit codes + ``--dim``-d float16 features) built with
``hashret.store.directory.IndexStore`` in batches, then ``--queries`` single-query searches on
ONE thread: Hamming-only top-1000, and hierarchical (top-1000 and top-5000 Hamming pools,
the top-1000 pool widened to the items tied at its last distance (the default with
``rerank``), and the ball of Hamming radius 8, re-ranked by Euclidean distance, top 1000
kept). p50 / p99 latency per query; the ratio
hierarchical / Hamming-only is measured in the same run.

Part 2: an index of ``--open-n`` items (64-bit codes + ``--open-dim``-d float16 features)
is built and reopened: seconds per million items to build, and the time to open it (warm
page cache; features are memory-mapped, so opening reads the codes and ids only).

The data are synthetic but structured like real codes: items are noisy copies of 10,000
cluster centres in Hamming space (10% of bits flipped) and in feature space, so a
query's neighbourhoods hold many ties and many near items, as with trained models.

    python benchmarks/hierarchical.py            # writes benchmarks/results/hierarchical-cpu2.{json,md}
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

from _machine import cpu_name

# One core for the searches: numba's pool (the popcount backend's "all threads") and BLAS
# are sized when first imported, so this comes before any import of numpy / numba / faiss.
os.environ.setdefault("NUMBA_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
BITS = 64


def set_threads(n: int) -> None:
    import faiss
    import numba

    faiss.omp_set_num_threads(n)
    numba.set_num_threads(min(n, numba.config.NUMBA_NUM_THREADS))
    assert numba.config.NUMBA_NUM_THREADS == n, "set NUMBA_NUM_THREADS before starting the benchmark"


def synthetic(n: int, dim: int, seed: int, centres: int = 10_000, batch: int = 500_000):
    """Yield ``(codes uint8[b, 8], features float32[b, dim])`` batches of clustered items."""
    rng = np.random.default_rng(seed)
    c_codes = rng.integers(0, 2, (centres, BITS), dtype=np.uint8)
    c_feats = rng.normal(size=(centres, dim)).astype(np.float32)
    for lo in range(0, n, batch):
        b = min(batch, n - lo)
        which = rng.integers(0, centres, b)
        bits = c_codes[which] ^ (rng.random((b, BITS), dtype=np.float32) < 0.1)
        feats = c_feats[which] + 0.5 * rng.normal(size=(b, dim)).astype(np.float32)
        yield np.packbits(bits.astype(np.uint8), axis=1, bitorder="little"), feats


def build(root: Path, n: int, dim: int, backend: str) -> tuple[float, dict]:
    from hashret.store.directory import IndexStore

    t0 = time.perf_counter()
    with IndexStore.create(root, bits=BITS, feature_dim=dim, feature_storage="float16", backend=backend,
                           overwrite=True) as store:
        for codes, feats in synthetic(n, dim, seed=0):
            store.add(codes, feats)
        info = store.info()
    return time.perf_counter() - t0, info


def percentiles(times: list[float]) -> dict:
    t = np.asarray(times) * 1000
    return {"p50_ms": round(float(np.percentile(t, 50)), 3), "p99_ms": round(float(np.percentile(t, 99)), 3),
            "mean_ms": round(float(t.mean()), 3)}


def latency(store, queries, feats, **search) -> dict:
    store.search(queries[:1], feats[:1], 1000, **search)  # warm-up (JIT, page cache of touched rows)
    times = []
    for i in range(len(queries)):
        t0 = time.perf_counter()
        store.search(queries[i : i + 1], feats[i : i + 1], 1000, **search)
        times.append(time.perf_counter() - t0)
    return percentiles(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=2_500_000)
    ap.add_argument("--dim", type=int, default=256, help="feature dimension (hashret's convnet: 256)")
    ap.add_argument("--queries", type=int, default=300)
    ap.add_argument("--open-n", type=int, default=10_000_000)
    ap.add_argument("--open-dim", type=int, default=64)
    ap.add_argument("--backend", default="popcount")
    ap.add_argument("--work", default=None, help="scratch folder (default: a temporary one)")
    args = ap.parse_args()
    from hashret.store.directory import IndexStore

    work = Path(args.work or tempfile.mkdtemp(prefix="hashret-bench-"))
    set_threads(1)
    out: dict = {"machine": {"cpu": cpu_name(), "cores": os.cpu_count(), "threads": 1,
                             "date": time.strftime("%Y-%m-%d"),
                             "load_average_start": round(os.getloadavg()[0], 2)},
                 "backend": args.backend, "bits": BITS}
    try:
        # ---- part 1: latency over --n items
        root = work / "lat"
        seconds, info = build(root, args.n, args.dim, args.backend)
        out["latency_index"] = {"n": args.n, "dim": args.dim, "build_seconds": round(seconds, 1),
                                "build_s_per_million": round(seconds / args.n * 1e6, 2),
                                "bytes_per_item": round(info["bytes"]["all_files"] / args.n, 1)}
        print(f"built {args.n:,} items ({args.dim}-d float16) in {seconds:.1f}s")
        q_codes, q_feats = next(synthetic(args.queries, args.dim, seed=1, batch=args.queries))
        with IndexStore.open(root) as store:
            runs = {
                "hamming top-1000": {},
                "hierarchical top-1000 pool": {"candidates": 1000, "rerank": True, "ties": False},
                "hierarchical top-1000 pool + ties": {"candidates": 1000, "rerank": True},
                "hierarchical top-5000 pool": {"candidates": 5000, "rerank": True, "ties": False},
                "hierarchical radius-8 pool": {"radius": 8, "rerank": True},
            }
            lat = {}
            for name, kw in runs.items():
                lat[name] = latency(store, q_codes, q_feats, **kw)
                print(f"  {name:<34} p50 {lat[name]['p50_ms']:7.3f} ms  p99 {lat[name]['p99_ms']:7.3f} ms")
            base = lat["hamming top-1000"]["p50_ms"]
            for name in lat:
                lat[name]["p50_vs_hamming_only"] = round(lat[name]["p50_ms"] / base, 2)
            out["latency"] = lat
        shutil.rmtree(root)
        # ---- part 2: build and open --open-n items
        root = work / "open"
        seconds, info = build(root, args.open_n, args.open_dim, args.backend)
        opens = []
        for _ in range(3):
            t0 = time.perf_counter()
            with IndexStore.open(root) as store:
                opens.append(time.perf_counter() - t0)
                assert len(store) == args.open_n
        out["open_index"] = {"n": args.open_n, "dim": args.open_dim, "build_seconds": round(seconds, 1),
                             "build_s_per_million": round(seconds / args.open_n * 1e6, 2),
                             "open_seconds_median": round(float(np.median(opens)), 3),
                             "open_seconds_all": [round(t, 3) for t in opens],
                             "bytes_per_item": round(info["bytes"]["all_files"] / args.open_n, 1)}
        print(f"built {args.open_n:,} items in {seconds:.1f}s; open {np.median(opens):.3f}s (median of 3)")
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)
    out["machine"]["load_average_end"] = round(os.getloadavg()[0], 2)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "hierarchical-cpu2.json").write_text(json.dumps(out, indent=1) + "\n")
    write_markdown(RESULTS / "hierarchical-cpu2.md", out)
    print(f"-> {RESULTS / 'hierarchical-cpu2.md'}")


def write_markdown(path: Path, out: dict) -> None:
    li, oi, m = out["latency_index"], out["open_index"], out["machine"]
    lines = [
        "# Hierarchical search at scale",
        "",
        f"Machine: {m['cpu']}, {m['cores']} cores shared with other jobs (load average "
        f"{m['load_average_start']} at the start, {m['load_average_end']} at the end: above {m['cores']} "
        "the other jobs take CPU time from every figure, mostly from the p99s), searches on 1 thread, "
        f"{m['date']}. Backend `{out['backend']}`, "
        f"{out['bits']}-bit "
        "codes. Synthetic clustered data (10,000 centres, 10% bit noise; see benchmarks/hierarchical.py). "
        "Latency = one query per call of `IndexStore.search` (the path of `hashret search --rerank`), "
        "after one warm-up query; features memory-mapped float16 in the page cache.",
        "",
        f"## {li['n']:,} items, {li['dim']}-d features: top-1000 per query",
        "",
        "| search | p50 ms | p99 ms | mean ms | p50 vs Hamming-only |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, r in out["latency"].items():
        lines.append(f"| {name} | {r['p50_ms']:.3f} | {r['p99_ms']:.3f} | {r['mean_ms']:.3f} | "
                     f"{r['p50_vs_hamming_only']:.2f}x |")
    lines += [
        "",
        f"Build: {li['build_seconds']} s ({li['build_s_per_million']} s per million items), "
        f"{li['bytes_per_item']} bytes per item on disk.",
        "",
        f"## {oi['n']:,} items, {oi['dim']}-d features: build and open",
        "",
        f"Build {oi['build_seconds']} s ({oi['build_s_per_million']} s per million items, batches of "
        f"500,000); open {oi['open_seconds_median']} s (median of {len(oi['open_seconds_all'])}, warm page "
        f"cache); {oi['bytes_per_item']} bytes per item on disk.",
    ]
    path.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
