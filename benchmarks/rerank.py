"""Does DLBHC's hierarchical deep search help? mAP@1000 of Hamming-only vs coarse-to-fine.

For each trained run (``make bench-mnist`` / ``make bench-cifar10`` write them), the
run's saved encodings (database = training set, queries = test set, the DLBHC protocol)
go into a persistent index (``hashret.store.directory.IndexStore``, the code path ``hashret
search --rerank`` uses) and every query is answered in three ways:

* Hamming only: top 1000 by Hamming distance, ties by database order;
* hierarchical, top-N pool: the top N by Hamming distance re-ranked by the Euclidean
  distance of the float features (the fc7 role), top 1000 kept;
* hierarchical + ties: the top-1000 pool widened to every item at its 1000th Hamming
  distance (``IndexStore.search``'s default with ``rerank``: trained codes collide, and a
  strict pool keeps only the lowest ids among the items tied at the cut);
* hierarchical, radius pool: every item within Hamming radius r, re-ranked likewise.

mAP@1000 follows the DLBHC convention (hashret.eval.metrics.average_precision_at_k;
lists shorter than 1000 count as if padded with non-relevant items). The feature storage
of the index (float32, float16, PCA to 64 / 32 dims) is varied on the 48-bit runs.

    python benchmarks/rerank.py --runs runs/bench     # make bench-rerank
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
from _machine import cpu_name

from hashret.encodings import load_encoded
from hashret.eval.metrics import average_precision_at_k
from hashret.store.directory import IndexStore

K = 1000
RESULTS = Path(__file__).resolve().parent / "results"


def map_at_k(results, q_labels: np.ndarray, db_labels: np.ndarray, ids_to_rows: np.ndarray) -> float:
    rel = np.zeros((len(results), K), dtype=bool)  # short lists: padded with non-relevant
    for r, res in enumerate(results):
        rows = ids_to_rows[res.indices[:K]]
        rel[r, : len(rows)] = db_labels[rows] == q_labels[r]
    return float(average_precision_at_k(rel).mean())


def evaluate(store: IndexStore, q, db_labels, *, label: str, **search) -> dict:
    ids_to_rows = np.arange(store.manifest.next_id)  # ids are database rows (one build, no removal)
    t0 = time.perf_counter()
    results = []
    for lo in range(0, len(q), 500):
        results += store.search(q.codes[lo:lo + 500], q.features[lo:lo + 500], K, **search)
    seconds = time.perf_counter() - t0
    pool = search.get("candidates") or (f"r<={search['radius']}" if "radius" in search else K)
    row = {"method": label, "pool": pool, "storage": store.manifest.feature_storage
           + (f"-{store.manifest.stored_dim}" if store.manifest.feature_storage == "pca" else ""),
           "map@1000": round(map_at_k(results, q.labels, db_labels, ids_to_rows), 4),
           "mean_list_length": round(float(np.mean([len(r) for r in results])), 1),
           "ms_per_query": round(1000 * seconds / len(q), 3)}
    print(f"  {row['method']:<22} pool {str(row['pool']):>7}  {row['storage']:<8} "
          f"mAP@1000 {row['map@1000']:.4f}  list {row['mean_list_length']:>7}  "
          f"{row['ms_per_query']:.2f} ms/q")
    return row


def bench_run(run_dir: Path, work: Path, storages: list[tuple[str, int | None]]) -> list[dict]:
    db = load_encoded(run_dir / "encodings" / "database")
    q = load_encoded(run_dir / "encodings" / "queries")
    bits = int(db.meta["bits"])
    rows = []
    for storage, pca_dim in storages:
        root = work / f"{run_dir.name}-{storage}{pca_dim or ''}"
        with IndexStore.create(root, bits=bits, feature_dim=db.features.shape[1], feature_storage=storage,
                               pca_dim=pca_dim, backend="popcount", overwrite=True) as store:
            store.add(db.codes, db.features)
            if storage == "float32":
                rows.append(evaluate(store, q, db.labels, label="hamming only"))
                rows.append(evaluate(store, q, db.labels, label="hierarchical", candidates=K, rerank=True,
                                     ties=False))
                for r in (0, 2):
                    rows.append(evaluate(store, q, db.labels, label="hierarchical", radius=r, rerank=True))
            rows.append(evaluate(store, q, db.labels, label="hierarchical + ties", candidates=K, rerank=True,
                                 ties=True))
            rows.append(evaluate(store, q, db.labels, label="hierarchical", candidates=5 * K, rerank=True,
                                 ties=False))
    for row in rows:
        row |= {"run": run_dir.name, "bits": bits, "queries": len(q), "database": len(db)}
    return rows


def write_markdown(path: Path, dataset: str, rows: list[dict], meta: dict) -> None:
    lines = [
        f"# Hamming-only vs hierarchical deep search, {dataset}",
        "",
        f"Protocol: queries = the {rows[0]['queries']:,} test images, database = the {rows[0]['database']:,} "
        "training images (DLBHC), mAP@1000 in the DLBHC convention (AP over the relevant items found in "
        "the top 1000; shorter lists count as padded with non-relevant items), Hamming ties by database "
        "order, re-rank ties by (Euclidean, Hamming, id). Models: hashret DLBHC runs of "
        "`make bench-*` (seed 0); features = the layer before the hash layer.",
        f"Machine: {meta['cpu']}, {meta['threads']} threads; ms/query = whole pipeline through "
        "IndexStore.search in batches of 500 queries (popcount coarse stage).",
        "",
        "| bits | search | pool | features | mAP@1000 | mean list | ms/query |",
        "|---:|---|---:|---|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(f"| {r['bits']} | {r['method']} | {r['pool']} | {r['storage']} | {r['map@1000']:.4f} | "
                     f"{r['mean_list_length']:g} | {r['ms_per_query']:.2f} |")
    path.write_text("\n".join(lines) + "\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", default="runs/bench", help="folder of run directories (make bench-*)")
    ap.add_argument("--datasets", nargs="+", default=["mnist", "cifar10"])
    args = ap.parse_args()
    runs = Path(args.runs)
    RESULTS.mkdir(exist_ok=True)
    import torch

    meta = {"cpu": cpu_name(), "threads": torch.get_num_threads(), "date": time.strftime("%Y-%m-%d")}
    for dataset in args.datasets:
        run_dirs = sorted(p for p in runs.glob(f"{dataset}-*")
                          if (p / "encodings/queries/meta.json").exists())
        if dataset == "cifar10":  # the 48-bit run the README reports (selected by validation accuracy)
            run_dirs = [p for p in run_dirs if p.name != "cifar10-48"]
        if not run_dirs:
            raise SystemExit(f"no encoded {dataset} runs in {runs}: run `make bench-{dataset}` first")
        rows = []
        with tempfile.TemporaryDirectory() as tmp:
            for run_dir in run_dirs:
                print(f"{run_dir.name}:")
                is48 = run_dir.name.split("-")[1] == "48"
                extra = [("float16", None), ("pca", 64), ("pca", 32)] if is48 else []
                storages = [("float32", None), *extra]
                rows += bench_run(run_dir, Path(tmp), storages)
        stem = RESULTS / f"rerank-{dataset}-cpu2"
        stem.with_suffix(".json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=1) + "\n")
        write_markdown(stem.with_suffix(".md"), dataset, rows, meta)
        print(f"-> {stem}.json / .md")


if __name__ == "__main__":
    main()
