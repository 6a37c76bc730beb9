"""What the integrity checks of an index directory cost: commit time of an add, full verify.

Every commit seals ``metadata.sqlite`` (:mod:`hashret.store.sqlite_image`): it hashes the
64 KiB chunks that the commit's WAL frames touch, twice (the old bytes are checked before
the new ones are sealed), writes the sums file (32 bytes per chunk) and checkpoints the WAL.
This measures, on synthetic indexes of ``--sizes`` items with file-like metadata (a
40-character source, label, class, a 300-byte thumbnail and a file SHA-256 per item --
the SHA-256 index is what scatters a commit's writes over the file):

* an ``add`` of ``--batch`` items (``index add``'s batch), ``--adds`` times: the whole
  commit, and its parts -- the seal, the checkpoint -- so the overhead is a ratio measured
  in the same run;
* ``IndexStore.open(verify=True)``: every checksum, the seal of every chunk and the
  metadata rows of every live item; and a plain open (sizes only) for comparison.

    python benchmarks/commit_cost.py            # writes benchmarks/results/commit-cost-cpu2.{json,md}
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from _machine import cpu_name

os.environ.setdefault("NUMBA_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
BITS, DIM = 64, 32


def items(lo: int, hi: int, rng: np.random.Generator):
    from hashret.store.metadata import ItemMeta

    return [ItemMeta(f"/data/photos/2026/12/01/img_{i:012d}.jpg", i % 10, f"class{i % 10}",
                     image=rng.bytes(300), file_sha256=hashlib.sha256(rng.bytes(8)).hexdigest())
            for i in range(lo, hi)]


def batch(rng: np.random.Generator, n: int):
    return (rng.integers(0, 256, (n, BITS // 8), dtype=np.uint8),
            rng.normal(size=(n, DIM)).astype(np.float32))


def measure(root: Path, n: int, *, build_batch: int, add_batch: int, adds: int, seed: int) -> dict:
    from hashret.store import directory as store_mod
    from hashret.store.directory import IndexStore
    from hashret.store.metadata import MetadataDB

    rng = np.random.default_rng(seed)
    t0 = time.perf_counter()
    with IndexStore.create(root, bits=BITS, feature_dim=DIM, backend="numpy") as s:
        for lo in range(0, n, build_batch):
            hi = min(n, lo + build_batch)
            s.add(*batch(rng, hi - lo), items(lo, hi, rng))
        s.compact()
    build_s = time.perf_counter() - t0

    timings: dict[str, list[float]] = {"seal": [], "checkpoint": [], "dirty_chunks": []}
    real_seal, real_ckpt = store_mod.seal_metadata, MetadataDB.checkpoint

    def timed_seal(root_, prev, sums, gen):
        t = time.perf_counter()
        out = real_seal(root_, prev, sums, gen)
        timings["seal"].append(time.perf_counter() - t)
        if sums is not None:
            new = np.load(root_ / out.sums.name)
            k = min(len(new), len(sums))
            timings["dirty_chunks"].append(int((new[:k] != sums[:k]).any(axis=1).sum()) + len(new) - k)
        return out

    def timed_ckpt(self):
        t = time.perf_counter()
        out = real_ckpt(self)
        timings["checkpoint"].append(time.perf_counter() - t)
        return out

    store_mod.seal_metadata, MetadataDB.checkpoint = timed_seal, timed_ckpt
    commit = []
    try:
        with IndexStore.open(root, writable=True) as s:
            for _ in range(adds):
                codes, feats = batch(rng, add_batch)
                meta = items(s.manifest.next_id, s.manifest.next_id + add_batch, rng)
                t = time.perf_counter()
                s.add(codes, feats, meta)
                commit.append(time.perf_counter() - t)
            m = s.manifest
            db_bytes = m.metadata.bytes
            sums_bytes = m.metadata.sums.bytes
            files_bytes = sum(f.bytes for f in m.files())
    finally:
        store_mod.seal_metadata, MetadataDB.checkpoint = real_seal, real_ckpt

    t = time.perf_counter()
    IndexStore.open(root, verify=False).close()
    open_s = time.perf_counter() - t
    t = time.perf_counter()
    with IndexStore.open(root, verify=True) as s:
        items_n = len(s)
    verify_s = time.perf_counter() - t

    def med(x):
        return float(np.median(x)) if x else float("nan")

    return {
        "items": items_n, "build_s": round(build_s, 2), "metadata_bytes": db_bytes,
        "sums_file_bytes": sums_bytes, "other_files_bytes": files_bytes - sums_bytes,
        "add_batch": add_batch, "adds": adds,
        "commit_ms_median": round(1e3 * med(commit), 1),
        "seal_ms_median": round(1e3 * med(timings["seal"]), 1),
        "checkpoint_ms_median": round(1e3 * med(timings["checkpoint"]), 1),
        "seal_share_of_commit": round(med(timings["seal"]) / med(commit), 3),
        "dirty_chunks_median": med(timings["dirty_chunks"][-adds:]),
        "open_s": round(open_s, 3), "open_verify_s": round(verify_s, 2),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    ap.add_argument("--build-batch", type=int, default=50_000)
    ap.add_argument("--batch", type=int, default=512, help="items per measured add (index add's batch)")
    ap.add_argument("--adds", type=int, default=15)
    ap.add_argument("--workdir", default=None, help="where the indexes are built (default: a temp dir)")
    ap.add_argument("--tag", default="cpu2")
    a = ap.parse_args()
    rows = []
    base = Path(tempfile.mkdtemp(prefix="commit-cost-", dir=a.workdir))
    try:
        for n in a.sizes:
            root = base / f"ix{n}"
            rows.append(measure(root, n, build_batch=a.build_batch, add_batch=a.batch, adds=a.adds, seed=n))
            print(json.dumps(rows[-1]), flush=True)
            shutil.rmtree(root)
    finally:
        shutil.rmtree(base, ignore_errors=True)
    out = {"benchmark": "commit_cost", "machine": cpu_name(), "cpus": os.cpu_count(),
           "loadavg": os.getloadavg(), "date": time.strftime("%Y-%m-%d %H:%M"), "rows": rows}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"commit-cost-{a.tag}.json").write_text(json.dumps(out, indent=2) + "\n")
    lines = [
        "# Commit cost of the index integrity checks",
        "",
        f"{cpu_name()}, {os.cpu_count()} CPUs (shared), load average "
        f"{', '.join(f'{x:.2f}' for x in out['loadavg'])} at the end, {out['date']}. "
        f"`python benchmarks/commit_cost.py{' ' if sys.argv[1:] else ''}{' '.join(sys.argv[1:])}`",
        "",
        "Synthetic items: 64-bit codes, 32-d float16 features, a 40-character source, a 300-byte "
        "thumbnail and a file SHA-256 each. Commit = one `add` of "
        f"{a.batch} items (median of {a.adds}); seal = hashing the 64 KiB chunks it touched (old and new) "
        "and writing the sums; checkpoint = copying SQLite's WAL into the file after the commit.",
        "",
        "| items | metadata.sqlite | sums file | commit | seal | checkpoint | seal share | dirty chunks "
        "| open | open --verify |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['items']:,} | {r['metadata_bytes'] / 2**20:.0f} MiB "
            f"| {r['sums_file_bytes'] / 1024:.0f} KiB "
            f"| {r['commit_ms_median']} ms | {r['seal_ms_median']} ms | {r['checkpoint_ms_median']} ms "
            f"| {100 * r['seal_share_of_commit']:.0f}% | {r['dirty_chunks_median']:.0f} | {r['open_s']} s "
            f"| {r['open_verify_s']} s |")
    (RESULTS / f"commit-cost-{a.tag}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
